"""reproduce_mnist on a few images with tiny iteration counts."""

import json

import pytest

from tfsmooth.evaluation import read_records, read_results, reproduce_mnist

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
    report = (out / "report.md").read_text()
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
