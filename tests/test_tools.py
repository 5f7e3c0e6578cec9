"""tools/cw_budget.py: the C&W budget study behind the MNIST preset (tiny budgets here)."""

import importlib.util
import json
import pathlib

import pytest

TOOLS = pathlib.Path(__file__).resolve().parents[1] / "tools"


def _load(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cw_budget_writes_rows_and_resumes(tmp_path, capsys):
    cw_budget = _load("cw_budget")
    args = ["--out", str(tmp_path), "--models", "c4", "--n", "4", "--budgets", "1x2", "2x3"]
    assert cw_budget.main(args) == 0
    rows = json.loads((tmp_path / "cw_budget.json").read_text())["rows"]
    assert {(r["attack"], r["rounds"], r["steps"]) for r in rows} == {
        (a, r, s) for a in ("C&W", "sC&W") for r, s in ((1, 2), (2, 3))
    }
    for row in rows:
        assert row["model"] == "c4" and row["n"] == 4 and 0.0 <= row["psuc"] <= 1.0
    table = (tmp_path / "cw_budget.md").read_text()
    assert (
        "| 1 × 2 |" in table and "| 2 × 3 |" in table and "| paper (budget not stated) |" in table
    )
    capsys.readouterr()
    # A rerun measures nothing new: every row is already in the JSONL log.
    assert cw_budget.main(args) == 0
    assert capsys.readouterr().out == ""
    assert len((tmp_path / "cw_budget.jsonl").read_text().splitlines()) == 4


def test_cw_budget_rejects_bad_budgets():
    cw_budget = _load("cw_budget")
    with pytest.raises(SystemExit):
        cw_budget.main(["--budgets", "3by100"])
    with pytest.raises(SystemExit):
        cw_budget.main(["--budgets", "0x100"])
    with pytest.raises(SystemExit):
        cw_budget.main(["--n", "0"])
