"""reproduce_mnist on a few images with tiny iteration counts."""

import json

import pytest

from tfsmooth.evaluation import read_records, read_results, reproduce_mnist
from tfsmooth.evaluation.presets import PAPER_RESULTS
from tfsmooth.evaluation.reproduce import FINDINGS, paper_findings

TINY = {
    "I-FGSM": {"steps": 2},
    "PGD2": {"steps": 2},
    "sPGD2": {"steps": 1},
    "C&W": {"steps": 5, "binary_search_steps": 1},
    "sC&W": {"steps": 5, "binary_search_steps": 1},
}


@pytest.mark.filterwarnings("ignore")
def test_reproduce_mnist_writes_the_files(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "out"
    summary = reproduce_mnist(out, n=8, quick=True, overrides=TINY, batch_size=8)
    payload = read_results(out / "results.json")
    rows = payload["rows"]
    assert {(r["model"], r["attack"]) for r in rows} == {
        (m, a) for m in ("c4", "c4-adv") for a in ("FGSM", "I-FGSM", "PGD2", "C&W", "sPGD2", "sC&W")
    }
    for row in rows:
        assert 0 < row["n"] <= 8 and 0 <= row["n_success"] <= row["n"]
        assert row["psuc"] == pytest.approx(row["n_success"] / row["n"])
        assert row["seconds"] >= 0
    meta = payload["meta"]
    assert meta["n_test_images"] == 8 and meta["quick"] is True
    assert set(meta["clean_accuracy"]) == {"c4", "c4-adv"} and meta["data_source"]
    assert meta["overrides"]["C&W"]["steps"] == 5
    assert [f["finding"] for f in meta["findings"]] == [f[0] for f in FINDINGS]
    report = (out / "report.md").read_text()
    assert "The paper's findings, checked" in report
    assert "QUICK" in report and "| c4-adv | sC&W | " in report and "1.97" in report
    for name in ("oc_c4.png", "oc_c4-adv.png", "worst_cases.png", "results.csv"):
        assert (out / name).stat().st_size > 0
    header, records, _ = read_records(out / "records" / "c4__sCW.jsonl")
    assert header["attack"] == "sC&W" and len(records) == 8
    assert summary["rows"] == json.loads(json.dumps(rows))

    # resume: nothing recomputed, same rows (up to timing)
    again = reproduce_mnist(
        out, n=8, quick=True, overrides=TINY, batch_size=8, resume=True, figures=False
    )
    strip = [{k: x for k, x in r.items() if k != "seconds"} for r in again["rows"]]
    assert strip == [{k: x for k, x in r.items() if k != "seconds"} for r in rows]
    with pytest.raises(ValueError, match="resume"):
        reproduce_mnist(out, n=8, quick=True, overrides=TINY, batch_size=8, attacks=["FGSM"])


def test_reproduce_mnist_bad_input(tmp_path):
    with pytest.raises(ValueError, match="n"):
        reproduce_mnist(tmp_path, n=0)
    with pytest.raises(ValueError, match="at most"):
        reproduce_mnist(tmp_path, n=10**7)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ValueError, match="out_dir"):
        reproduce_mnist(blocker, n=2, attacks=["FGSM"])
    with pytest.raises(ValueError, match="subset"):
        reproduce_mnist(tmp_path, n=2, attacks=["BIM"])
    with pytest.raises(ValueError, match="models"):
        reproduce_mnist(tmp_path, n=2, models=["lenet"])


def _rows(table):
    return [
        {"model": m, "attack": a, "psuc": p, "mean_l2": d}
        for m, attacks in table.items()
        for a, (p, d) in attacks.items()
    ]


def test_paper_findings_all_hold_on_the_papers_own_tables():
    findings = paper_findings(_rows(PAPER_RESULTS["mnist"]))
    assert len(findings) == len(FINDINGS)
    assert all(f["holds"] is True and f["holds_in_paper"] is True for f in findings), findings


def test_paper_findings_flag_what_fails_and_what_is_missing():
    table = {m: dict(a) for m, a in PAPER_RESULTS["mnist"].items()}
    table["c4"]["C&W"] = (1.0, 1.6)  # a stronger C&W: PGD2 and sC&W no longer below it
    table["c4-adv"]["FGSM"] = (0.6, 5.0)  # no collapse under adversarial training
    del table["c4-adv"]["sC&W"]
    by_name = {(f["model"], f["finding"]): f for f in paper_findings(_rows(table))}
    assert by_name[("c4", "D: PGD2 < C&W")]["holds"] is False
    assert by_name[("c4", "D: PGD2 < C&W")]["ours"] == "1.71 vs 1.60"
    assert by_name[("c4", "D: sC&W < C&W")]["holds"] is False
    assert by_name[("c4", "D: I-FGSM > C&W")]["holds"] is True
    drop = by_name[("c4-adv", "adversarial training: Psuc(FGSM) at most half of the plain C4's")]
    assert drop["holds"] is False and drop["ours"] == "0.890 → 0.600"
    missing = by_name[("c4-adv", "adversarial training: Psuc(sC&W) ≥ 0.95")]
    assert missing["holds"] is None and missing["ours"] == "–"
    assert missing["holds_in_paper"] is True
    with pytest.raises(TypeError, match="list of dicts"):
        paper_findings("c4")


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore")
def test_the_papers_findings_hold_on_300_digits(tmp_path):
    """The full MNIST protocol (not --quick) on the first 300 shipped test digits: every finding
    of Tables 1-2 that the report checks holds. About 3 minutes on 2 CPU cores."""
    summary = reproduce_mnist(tmp_path / "out", n=300, figures=False)
    findings = read_results(tmp_path / "out" / "results.json")["meta"]["findings"]
    failed = [(f["model"], f["finding"], f["ours"]) for f in findings if f["holds"] is not True]
    assert not failed, failed
    assert len(summary["rows"]) == 12
