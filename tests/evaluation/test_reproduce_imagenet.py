"""reproduce_imagenet / attack_images on a generated NIPS 2017 folder and a tiny SavedModel."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.test_imagenet_e2e import (
    INCEPTION_HANDLE,
    export_tiny_classifier,
    install_in_hub_cache,
    make_nips17_folder,
    save_photos,
)
from tfsmooth.evaluation import read_records, read_results
from tfsmooth.evaluation.presets import IMAGENET
from tfsmooth.evaluation.reproduce_imagenet import (
    IMAGENET_QUICK,
    apply_overrides,
    attack_images,
    load_imagenet_model,
    load_labels_csv,
    reproduce_imagenet,
)

# Few iterations: the test checks the plumbing, not the paper's numbers.
TINY = {
    "C&W": {"steps": 4, "binary_search_steps": 1},
    "sC&W": {"steps": 4, "binary_search_steps": 1, "smoother.max_iter": 10},
}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("imagenet")
    model = export_tiny_classifier(root / "tiny")
    cache = root / "hub"
    install_in_hub_cache(model, cache)
    labels = make_nips17_folder(root / "nips17", model)
    return {"root": root, "model": model, "cache": cache, "data": root / "nips17", "labels": labels}


def test_quick_preset_and_overrides():
    assert IMAGENET_QUICK.quick and list(IMAGENET_QUICK.attacks) == list(IMAGENET.attacks)
    scw = IMAGENET_QUICK.attacks["sC&W"]
    assert scw.kwargs["steps"] < IMAGENET.attacks["sC&W"].kwargs["steps"]
    assert scw.smoother == IMAGENET.attacks["sC&W"].smoother  # alpha 0.997, 50 CG iterations
    assert scw.smoother["alpha"] == 0.997 and scw.smoother["max_iter"] == 50
    assert IMAGENET_QUICK.attacks["FGSM"].epsilons == 0.1255
    changed = apply_overrides(IMAGENET, TINY)
    assert changed.attacks["sC&W"].smoother["max_iter"] == 10
    assert changed.attacks["C&W"].kwargs["initial_const"] == 100.0
    with pytest.raises(ValueError, match="overrides"):
        apply_overrides(IMAGENET, {"BIM": {}})
    with pytest.raises(ValueError, match="no smoother"):
        apply_overrides(IMAGENET, {"C&W": {"smoother.max_iter": 3}})


def test_reproduce_imagenet_through_the_hub_cache(setup, tmp_path):
    out = tmp_path / "out"
    summary = reproduce_imagenet(
        out,
        data_dir=setup["data"],
        model="inception_v3",
        n=4,
        batch_size=4,
        attacks=["FGSM", "C&W"],
        overrides={name: TINY[name] for name in ("FGSM", "C&W") if name in TINY},
        quick=True,
        defense=True,
        cache_dir=setup["cache"],
    )
    payload = read_results(out / "results.json")
    rows = payload["rows"]
    white = [r for r in rows if r["table"] == "1"]
    assert [(r["model"], r["attack"]) for r in white] == [
        ("inception_v3", "FGSM"),
        ("inception_v3", "C&W"),
    ]
    for row in white:
        assert row["n0"] == 4 and row["n"] == 4  # labels are the model's own predictions
        assert 0 <= row["n_success"] <= 4 and row["seconds"] >= 0
        assert row["psuc"] == pytest.approx(row["n_success"] / row["n"])
    assert white[1]["n_success"] >= 1  # C&W fools the tiny model
    transfer = [r for r in rows if r["table"] == "3"]
    assert {r["model"] for r in transfer} == {"inception_v3->bilateral"}
    assert all(r["target"] == "bilateral" and r["n"] <= 4 for r in transfer)
    meta = payload["meta"]
    assert meta["n_test_images"] == 4 and meta["quick"] is True
    assert meta["clean_accuracy"] == {"inception_v3": 1.0}
    assert "NIPS 2017" in meta["data_source"] and meta["version"]
    assert meta["preset"]["attacks"]["C&W"]["kwargs"]["initial_const"] == 100.0
    assert meta["transfer"]["FGSM"]["epsilon"] == 0.1255
    report = (out / "report.md").read_text()
    assert "QUICK" in report and "| inception_v3 | C&W | 4 |" in report
    assert "4.91" in report and "Table 3" in report and "4.75" in report  # the paper's numbers
    header, records, _ = read_records(out / "records" / "inception_v3__CW.jsonl")
    assert header["attack"] == "C&W" and len(records) == 4
    assert [r["label"] for r in sorted(records, key=lambda r: r["index"])] == list(setup["labels"])
    assert summary["rows"] == json.loads(json.dumps(rows))

    # resume: nothing recomputed (the transfer results are read back too)
    again = reproduce_imagenet(
        out,
        data_dir=setup["data"],
        model="inception_v3",
        n=4,
        batch_size=4,
        attacks=["FGSM", "C&W"],
        overrides={name: TINY[name] for name in ("FGSM", "C&W") if name in TINY},
        quick=True,
        defense=True,
        cache_dir=setup["cache"],
        resume=True,
        figures=False,
    )
    strip = [{k: x for k, x in r.items() if k != "seconds"} for r in again["rows"]]
    assert strip == [{k: x for k, x in r.items() if k != "seconds"} for r in rows]
    with pytest.raises(ValueError, match="resume"):
        reproduce_imagenet(
            out, data_dir=setup["data"], n=4, attacks=["FGSM"], cache_dir=setup["cache"]
        )


def test_reproduce_imagenet_bad_input(setup, tmp_path):
    with pytest.raises(ValueError, match="adv_checkpoint"):
        reproduce_imagenet(tmp_path, data_dir=setup["data"], transfer=True)
    with pytest.raises(ValueError, match="at most"):
        reproduce_imagenet(tmp_path, data_dir=setup["data"], n=5, model=str(setup["model"]))
    with pytest.raises(FileNotFoundError, match="not found"):
        reproduce_imagenet(tmp_path, data_dir=tmp_path / "none", model=str(setup["model"]))
    with pytest.raises(FileNotFoundError, match="TF-Hub cache"):
        reproduce_imagenet(
            tmp_path, data_dir=setup["data"], model="resnet_v2_50", cache_dir=setup["cache"]
        )
    with pytest.raises(FileNotFoundError, match="checkpoint"):
        reproduce_imagenet(
            tmp_path,
            data_dir=setup["data"],
            model=str(setup["model"]),
            adv_checkpoint=tmp_path / "adv_inception_v3.ckpt",
            attacks=["FGSM"],
        )
    with pytest.raises(ValueError, match="subset"):
        reproduce_imagenet(tmp_path, data_dir=setup["data"], attacks=["BIM"])


def test_load_imagenet_model_by_path_and_name(setup, monkeypatch):
    name, net = load_imagenet_model(str(setup["model"]))
    assert name == "tiny" and net.num_classes == 1001 and net.label_offset == 0
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(setup["cache"]))
    name, net = load_imagenet_model("inception_v3")
    assert name == "inception_v3" and net.name == INCEPTION_HANDLE and net.input_size == (299, 299)
    with pytest.raises(FileNotFoundError):
        load_imagenet_model(str(setup["root"] / "missing"))


def test_attack_images_writes_pngs_records_and_resumes(setup, tmp_path):
    from PIL import Image

    folder = tmp_path / "photos"
    names = save_photos(folder, (48, 64))
    out = tmp_path / "attack"
    summary = attack_images(
        setup["model"], folder, "fgsm", out, epsilons=[0.02, 0.1, 0.3], batch_size=4
    )
    row = summary["row"]
    assert row["attack"] == "FGSM" and row["n0"] == 4 and row["n"] == 4
    assert row["n_success"] >= 1
    records = summary["records"]
    assert [r["file"] for r in records] == sorted(names)
    for record in records:
        if record["success"]:
            adversarial = np.asarray(Image.open(out / record["adversarial"]), np.float32) / 255
            clean = np.asarray(Image.open(folder / record["file"]), np.float32) / 255
            assert adversarial.shape == (48, 64, 3)
            # FGSM keeps the smallest successful epsilon; the PNG is within it (+ rounding)
            assert np.abs(adversarial - clean).max() <= record["best_epsilon"] + 1.5 / 255
            assert (out / record["perturbation"]).is_file()
        else:
            assert record["adversarial"] is None
    header, on_disk, _ = read_records(out / "records.jsonl")
    assert header["labels"].startswith("predicted") and len(on_disk) == 4
    assert read_results(out / "summary.json")["rows"][0]["n_success"] == row["n_success"]

    # a truncated last line (killed run) is recomputed; the rest is kept
    text = (out / "records.jsonl").read_text()
    (out / "records.jsonl").write_text(text[: text.rstrip("\n").rfind("\n") + 20])
    again = attack_images(
        setup["model"], folder, "fgsm", out, epsilons=[0.02, 0.1, 0.3], batch_size=4, resume=True
    )
    assert again["row"]["n_success"] == row["n_success"]
    assert len(read_records(out / "records.jsonl")[1]) == 4
    with pytest.raises(ValueError, match="resume"):
        attack_images(setup["model"], folder, "fgsm", out, epsilons=[0.02, 0.1, 0.3])
    with pytest.raises(ValueError, match="another run"):
        attack_images(setup["model"], folder, "fgsm", out, epsilons=[0.5], resume=True)


def test_labels_csv(tmp_path):
    good = tmp_path / "labels.csv"
    good.write_text("label,file\n5,a.png\n1000,b.png\n")
    assert load_labels_csv(good, ["b.png", "a.png"], 1001).tolist() == [1000, 5]
    cases = {
        "file,label,extra\na.png,1,x\n": "unknown: \\['extra'\\]",
        "file,label\na.png,cat\n": "integer",
        "file,label\na.png,1001\n": "0..1000",
        "file,label\na.png,1\na.png,2\n": "twice",
        "file,label\nc.png,1\n": "no row",
    }
    for text, message in cases.items():
        good.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_labels_csv(good, ["a.png"], 1001)
    with pytest.raises(FileNotFoundError):
        load_labels_csv(tmp_path / "none.csv", ["a.png"])
