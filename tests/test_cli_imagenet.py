"""``tfsmooth reproduce imagenet`` and ``tfsmooth attack`` end to end, offline, and bad input."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tests.test_imagenet_e2e import (
    export_tiny_classifier,
    install_in_hub_cache,
    make_nips17_folder,
    save_photos,
)
from tfsmooth.cli import main
from tfsmooth.evaluation import read_records, read_results

QUICKER = ["--override", "sC&W:steps=4", "--override", "sC&W:binary_search_steps=1"]


class _NoSignature(tf.Module):
    def __init__(self) -> None:
        self.kernel = tf.Variable(tf.zeros([3, 1001]))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_imagenet")
    model = export_tiny_classifier(root / "tiny")
    cache = root / "hub"
    install_in_hub_cache(model, cache)
    make_nips17_folder(root / "nips17", model)
    save_photos(root / "photos", (40, 40))
    fixed = export_tiny_classifier(root / "fixed32", fixed_size=(32, 32))
    tf.saved_model.save(_NoSignature(), str(root / "no_signature"))
    ten = tf.keras.Sequential(
        [
            tf.keras.Input([None, None, 3]),
            tf.keras.layers.GlobalAveragePooling2D(),
            tf.keras.layers.Dense(10),
        ]
    )
    ten.save(root / "ten_classes.keras")
    other = tf.train.Checkpoint(dense=tf.Variable(tf.zeros([4, 4])))
    other_prefix = other.write(str(root / "resnet" / "model.ckpt"))
    return {
        "root": root,
        "model": model,
        "cache": cache,
        "data": root / "nips17",
        "photos": root / "photos",
        "fixed": fixed,
        "no_signature": root / "no_signature",
        "other_checkpoint": other_prefix,
        "ten_classes": root / "ten_classes.keras",
    }


def test_reproduce_imagenet_cli(files, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TFHUB_CACHE_DIR", str(files["cache"]))
    out = tmp_path / "out"
    argv = ["reproduce", "imagenet", "--data", str(files["data"]), "--model", "inception_v3"]
    argv += ["--n", "4", "--out", str(out), "--attacks", "FGSM", "sC&W", "--quick"]
    argv += QUICKER + ["--override", "sC&W:smoother.max_iter=10", "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| inception_v3 | sC&W | 4 |" in printed and "results.json" in printed
    payload = read_results(out / "results.json")
    assert [(r["model"], r["attack"], r["table"]) for r in payload["rows"]] == [
        ("inception_v3", "FGSM", "1"),
        ("inception_v3", "sC&W", "1"),
    ]
    for row in payload["rows"]:
        assert {"n", "n_success", "psuc", "mean_l2", "seconds"} <= set(row) and row["n"] == 4
    meta = payload["meta"]
    assert meta["n_test_images"] == 4 and meta["clean_accuracy"]["inception_v3"] == 1.0
    assert meta["overrides"]["sC&W"] == {
        "steps": 4,
        "binary_search_steps": 1,
        "smoother.max_iter": 10,
    }
    assert meta["preset"]["attacks"]["sC&W"]["kwargs"]["initial_const"] == 100.0
    assert "QUICK" in (out / "report.md").read_text()
    header, records, _ = read_records(out / "records" / "inception_v3__FGSM.jsonl")
    assert header["epsilons"] == 0.1255 and len(records) == 4
    # --resume continues (here: nothing left to do) and gives the same table
    assert main(argv + ["--resume"]) == 0
    again = read_results(out / "results.json")["rows"]
    assert [r["n_success"] for r in again] == [r["n_success"] for r in payload["rows"]]


def test_attack_cli_on_own_model_and_images(files, tmp_path, capsys):
    out = tmp_path / "attacked"
    argv = ["attack", "--model", str(files["model"]), "--images", str(files["photos"])]
    argv += ["--attack", "scw", "--out", str(out), "--no-progress", "--preset", "imagenet"]
    argv += QUICKER + ["--override", "sC&W:steps=30"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "own predictions" in printed and "sC&W on tiny: 4 images of 40x40" in printed
    summary = read_results(out / "summary.json")
    row = summary["rows"][0]
    assert row["n"] == 4 and row["n_success"] >= 3
    header, records, _ = read_records(out / "records.jsonl")
    assert len(records) == 4
    for record in records:
        if record["success"]:
            adversarial = np.asarray(Image.open(out / record["adversarial"]))
            assert adversarial.shape == (40, 40, 3) and adversarial.dtype == np.uint8
            assert (out / record["perturbation"]).is_file()
            assert record["adv_label"] != record["label"] and record["l2"] > 0
    # resume: all recorded, nothing attacked again
    assert main(argv + ["--resume"]) == 0
    assert read_results(out / "summary.json")["rows"][0]["n_success"] == row["n_success"]
    # without --resume an existing run is not overwritten
    assert main(argv) == 1
    assert "--resume" in capsys.readouterr().err


def test_attack_cli_default_writes_only_deliverable_adversarials(files, tmp_path, capsys):
    """The default preset counts an adversarial only if it survives the 8-bit PNG it is written
    as: every success's PNG, read back, still fools the model."""
    out = tmp_path / "bits"
    argv = ["attack", "--model", str(files["model"]), "--images", str(files["photos"])]
    argv += ["--attack", "ifgsm", "--out", str(out), "--no-progress", "--quick"]
    assert main(argv) == 0
    _, records, _ = read_records(out / "records.jsonl")
    successes = [r for r in records if r["success"]]
    assert successes and all(r["png_success"] for r in successes)
    assert read_results(out / "summary.json")["meta"]["attack"]["kwargs"]["quantize_bits"] == 8
    assert "still adversarial as 8-bit PNG" in capsys.readouterr().out


def test_attack_cli_labels_csv_and_epsilon(files, tmp_path, capsys):
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nastronaut.png,1\ncoffee.png,2\nchelsea.png,3\nrocket.png,4\n")
    out = tmp_path / "fgsm"
    argv = ["attack", "--model", str(files["fixed"]), "--images", str(files["photos"])]
    argv += ["--attack", "fgsm", "--out", str(out), "--labels", str(labels), "--no-progress"]
    argv += ["--epsilon", "0.05", "0.2"]
    assert main(argv) == 0
    header, records, _ = read_records(out / "records.jsonl")
    assert header["labels"].startswith("CSV") and header["epsilons"] == [0.05, 0.2]
    assert [r["label"] for r in sorted(records, key=lambda r: r["file"])] == [1, 3, 2, 4]
    summary = read_results(out / "summary.json")
    assert summary["meta"]["image_size"] == [32, 32]  # the model's fixed size


def _bad_cases(files, tmp):
    bad_csv = tmp / "bad.csv"
    bad_csv.write_text("file,label,species\nastronaut.png,1,human\n")
    nips_bad = tmp / "nips_bad"
    shutil.copytree(files["data"], nips_bad)
    text = (nips_bad / "dev_dataset.csv").read_text().replace("URL", "Link", 1)
    (nips_bad / "dev_dataset.csv").write_text(text)
    nips_small = tmp / "nips_small"
    shutil.copytree(files["data"], nips_small)
    first = sorted(nips_small.glob("*.png"))[0]
    Image.open(first).resize((200, 200)).save(first)
    attack = ["attack", "--images", str(files["photos"]), "--attack", "scw", "--out", str(tmp)]
    reproduce = ["reproduce", "imagenet", "--n", "2", "--out", str(tmp), "--no-progress"]
    model = ["--model", str(files["model"])]
    return {
        "fixed size": (
            attack + ["--model", str(files["fixed"]), "--input-size", "64", "64"],
            "only accepts images of size (32, 32)",
        ),
        "no signature": (attack + ["--model", str(files["no_signature"])], "neither callable"),
        "not a model": (attack + ["--model", str(files["data"] / "dev_dataset.csv")], "file"),
        "missing model": (attack + ["--model", str(tmp / "nothing")], "neither"),
        "missing images": (
            ["attack", "--model", str(files["model"]), "--images", str(tmp / "none")]
            + ["--attack", "fgsm", "--out", str(tmp)],
            "not found",
        ),
        "labels csv": (attack + model + ["--labels", str(bad_csv)], "unknown: ['species']"),
        "cw epsilon": (
            attack + model + ["--epsilon", "0.1"],
            "takes no `epsilons`",
        ),
        "other architecture": (
            reproduce
            + ["--data", str(files["data"])]
            + model
            + ["--adv-checkpoint", str(files["other_checkpoint"])],
            "not a slim InceptionV3 checkpoint",
        ),
        "nips csv columns": (reproduce + ["--data", str(nips_bad)] + model, "unknown column"),
        "nips image size": (reproduce + ["--data", str(nips_small)] + model, "200x200"),
        "table 2 without the nips labels": (
            reproduce + model + ["--adv-checkpoint", str(files["other_checkpoint"])],
            "needs the NIPS 2017 labels",
        ),
        "batch size 0": (
            reproduce + ["--data", str(files["data"]), "--batch-size", "0"] + model,
            "--batch-size must be at least 1",
        ),
        "override of an attack not run": (
            reproduce
            + ["--data", str(files["data"]), "--attacks", "FGSM", "--override", "C&W:steps=3"]
            + model,
            "does not include",
        ),
        "ten-class model on imagenet labels": (
            reproduce + ["--data", str(files["data"]), "--model", str(files["ten_classes"])],
            "returns 10 logits",
        ),
        "missing data": (reproduce + ["--data", str(tmp / "none")] + model, "not found"),
        "not cached": (
            reproduce
            + ["--data", str(files["data"]), "--model", "resnet_v2_50"]
            + ["--cache-dir", str(tmp / "empty_cache")],
            "not in the TF-Hub cache",
        ),
        "transfer without checkpoint": (
            reproduce + ["--data", str(files["data"]), "--transfer"] + model,
            "adv_checkpoint",
        ),
        "bad override": (reproduce + ["--data", str(files["data"]), "--override", "steps"], "KEY"),
    }


@pytest.mark.parametrize(
    "argv",
    [
        ["reproduce", "mnist", "--data", "x"],
        ["reproduce", "mnist", "--model", "x"],
        ["reproduce", "imagenet", "--source", "tfds"],
        ["reproduce", "imagenet", "--models", "c4"],
    ],
)
def test_options_of_the_other_dataset_are_refused(argv, capsys):
    """Each of ``reproduce mnist`` / ``reproduce imagenet`` takes only its own options."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


def test_bad_input_exits_nonzero_without_traceback(files, tmp_path, capsys):
    for name, (argv, message) in _bad_cases(files, tmp_path).items():
        status = main(argv)
        err = capsys.readouterr().err
        assert status == 1, name
        assert "Traceback" not in err, name
        # one message (the TF-Hub one puts the directory to use on a line of its own)
        assert len(err.strip().splitlines()) <= 3, (name, err)
        assert message in err, (name, err)
        assert err.startswith(f"tfsmooth {argv[0]}: error:"), name


def test_help_mentions_the_commands(capsys):
    with pytest.raises(SystemExit):
        main(["attack", "--help"])
    text = capsys.readouterr().out
    assert "--labels" in text and "own predictions" in text
    with pytest.raises(SystemExit):
        main(["reproduce", "--help"])
    text = capsys.readouterr().out
    assert "mnist" in text and "imagenet" in text
    with pytest.raises(SystemExit):
        main(["reproduce", "imagenet", "--help"])
    text = capsys.readouterr().out
    assert "--adv-checkpoint" in text and "--quick" in text and "fewer iterations" in text
    assert "--preset" in text and "--models" not in text


def test_results_are_json(files, tmp_path, monkeypatch):
    """The summary written by ``attack`` is valid JSON with the results schema."""
    out = tmp_path / "a"
    argv = ["attack", "--model", str(files["model"]), "--images", str(files["photos"])]
    argv += ["--attack", "fgsm", "--out", str(out), "--no-progress", "--n", "2"]
    assert main(argv) == 0
    payload = json.loads((out / "summary.json").read_text())
    assert set(payload) == {"meta", "rows"} and payload["rows"][0]["n0"] == 2
