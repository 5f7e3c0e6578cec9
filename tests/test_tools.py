"""tools/cw_budget.py: the C&W budget study behind the MNIST preset (tiny budgets here)."""

import importlib.util
import json
import pathlib

import pytest

from tfsmooth.evaluation import read_records

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
    # Per-image records of each measurement (the library's record store) ...
    records = sorted((tmp_path / "cw_budget_records").glob("*.jsonl"))
    assert [p.name for p in records][:2] == ["c4__CW__1x2__n4.jsonl", "c4__CW__2x3__n4.jsonl"]
    assert len(records) == 4 and all(len(read_records(p)[1]) == 4 for p in records)
    before = {p: p.read_bytes() for p in records}
    # ... so a rerun measures nothing new.
    assert cw_budget.main(args) == 0
    assert capsys.readouterr().out == ""
    assert {p: p.read_bytes() for p in records} == before
    assert json.loads((tmp_path / "cw_budget.json").read_text())["rows"] == rows


def test_cw_budget_keeps_rows_of_the_legacy_log(tmp_path, capsys):
    cw_budget = _load("cw_budget")
    row = {"model": "c4", "attack": "C&W", "rounds": 1, "steps": 2, "n": 4, "psuc": 0.5}
    (tmp_path / "cw_budget.jsonl").write_text(json.dumps({**row, "mean_l2": 1.0}) + '\n{"cut')
    args = ["--out", str(tmp_path), "--models", "c4", "--n", "4", "--budgets", "1x2"]
    assert cw_budget.main(args) == 0
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["attack"] for r in printed] == ["sC&W"]  # C&W 1x2 comes from the legacy log
    rows = json.loads((tmp_path / "cw_budget.json").read_text())["rows"]
    assert rows[0] == {**row, "mean_l2": 1.0}


def test_cw_budget_rejects_bad_budgets():
    cw_budget = _load("cw_budget")
    with pytest.raises(SystemExit):
        cw_budget.main(["--budgets", "3by100"])
    with pytest.raises(SystemExit):
        cw_budget.main(["--budgets", "0x100"])
    with pytest.raises(SystemExit):
        cw_budget.main(["--n", "0"])
