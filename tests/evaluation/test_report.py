"""results.json / CSV / markdown."""

import json

import pytest

from tfsmooth.evaluation import report

ROW = dict(
    model="c4", attack="FGSM", n=10, n_success=9, psuc=0.9, mean_l2=float("nan"), seconds=1.5
)


def test_results_roundtrip_and_nan(tmp_path):
    path = report.write_results(
        tmp_path / "r.json", [ROW], {"data_source": "x", "acc": {"c4": 0.99}}
    )
    payload = report.read_results(path)
    assert payload["meta"]["acc"] == {"c4": 0.99}
    assert payload["rows"][0]["mean_l2"] is None and payload["rows"][0]["psuc"] == 0.9


def test_results_reader_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="not JSON"):
        report.read_results(bad)
    bad.write_text(json.dumps({"rows": []}))
    with pytest.raises(ValueError, match="meta"):
        report.read_results(bad)
    bad.write_text(json.dumps({"meta": {}, "rows": [{"model": "c4"}]}))
    with pytest.raises(ValueError, match="misses keys"):
        report.read_results(bad)
    with pytest.raises(TypeError):
        report.write_results(tmp_path / "x.json", [ROW], meta=[])


def test_csv_and_markdown(tmp_path):
    rows = [ROW, dict(ROW, attack="sC&W", psuc=1.0, mean_l2=2.0, extra="e")]
    text = report.write_csv(tmp_path / "r.csv", rows).read_text().splitlines()
    assert text[0] == "model,attack,n,n_success,psuc,mean_l2,seconds,extra"
    assert text[2] == "c4,sC&W,10,9,1.0,2.0,1.5,e"
    table = report.markdown_table(rows, {"c4": {"sC&W": (1.0, 1.97)}}).splitlines()
    assert table[2].startswith("| c4 | FGSM | 10 | 0.90 | – | – | – |")
    assert "| 2.00 | 1.97 | +0.03 |" in table[3]
