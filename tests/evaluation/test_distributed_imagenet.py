"""Multi-worker ``reproduce imagenet``: a 2-worker CLI job on the photos equals one process.

The job runs on 4 of the shipped ImageNet photos at 32x32 against a tiny Keras classifier
fitted to them (so the attacks have correctly classified images to fool): the workers share the
white-box batches and write the adversarial PNGs into the shared folder; the chief merges the
records, then alone runs the transfer to the bilateral filter (Table 3) and draws Fig. 1 from
the PNGs of both workers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.evaluation.test_distributed import (
    assert_same_records,
    finish,
    free_ports,
    start_cli,
    without_timing,
)
from tfsmooth.cli import main
from tfsmooth.evaluation.distributed import WorkerSpec, worker_folder
from tfsmooth.evaluation.records import read_records

N, BATCH = 4, 2
ATTACKS = ["FGSM", "I-FGSM"]
OVERRIDES = {"I-FGSM": {"steps": 4}}


@pytest.fixture(scope="module")
def photo_model(tmp_path_factory):
    """A ``.keras`` classifier of 32x32 images that labels the first 4 photos correctly.

    Fitted briefly (small margins): FGSM and I-FGSM fool it on photos of both workers' batches,
    so Fig. 1 (the photos every attack fooled) needs the PNGs of both.
    """
    import tensorflow as tf

    from tfsmooth.data import load_samples

    data = load_samples("imagenet", size=(32, 32), limit=N)
    tf.keras.utils.set_random_seed(0)
    net = tf.keras.Sequential(
        [
            tf.keras.Input([32, 32, 3]),
            tf.keras.layers.AveragePooling2D(4),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(1000),
        ]
    )
    net.compile(
        optimizer=tf.keras.optimizers.Adam(0.01),
        loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    net.fit(data.images, data.labels, epochs=10, verbose=0)
    assert (np.argmax(net.predict(data.images, verbose=0), -1) == data.labels).all()
    path = tmp_path_factory.mktemp("photo_model") / "photos32.keras"
    net.save(path)
    return path


def cli_args(model, out):
    args = ["reproduce", "imagenet", "--model", str(model), "--n", str(N)]
    args += ["--batch-size", str(BATCH), "--quick", "--defense", "--no-progress"]
    args += ["--attacks", *ATTACKS, "--out", str(out)]
    for attack, settings in OVERRIDES.items():
        args += [f"--override={attack}:{key}={value}" for key, value in settings.items()]
    return args


def start(model, out, tf_config):
    return start_cli(cli_args(model, out), tf_config)


def pngs(folder):
    root = folder / "adversarials"
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))


def test_two_workers_equal_one_process(photo_model, tmp_path):
    from PIL import Image

    from tfsmooth.evaluation.reproduce_imagenet import reproduce_imagenet

    single, shared = tmp_path / "single", tmp_path / "shared"
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    config = [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(2)]
    chief, worker = start(photo_model, shared, config[0]), start(photo_model, shared, config[1])
    # Meanwhile, the same run in this process.
    reference = reproduce_imagenet(
        single,
        model=str(photo_model),
        n=N,
        batch_size=BATCH,
        quick=True,
        defense=True,
        attacks=ATTACKS,
        overrides=OVERRIDES,
    )
    printed = finish(worker)
    assert "worker 1 of 2" in printed and "worker 0 (the chief) merges" in printed
    printed = finish(chief)
    assert "results.json" in printed

    keys = ("model", "attack", "table", "n0", "n", "n_success", "psuc")
    floats = ("mean_l2", "mean_psnr", "mean_png_adversarial")
    rows = json.loads((shared / "results.json").read_text())["rows"]
    expected = reference["rows"]
    assert [(r["model"], r["attack"], r["table"]) for r in rows] == [
        ("photos32", "FGSM", "1"),
        ("photos32", "I-FGSM", "1"),
        ("photos32->bilateral", "FGSM", "3"),
        ("photos32->bilateral", "I-FGSM", "3"),
    ]
    for row, want in zip(rows, expected):
        assert {k: row[k] for k in keys} == {k: want[k] for k in keys}
        for key in floats:
            if want.get(key) is None:
                assert row.get(key) is None, (key, row)
            else:
                assert row[key] == pytest.approx(want[key], rel=1e-5), (key, row, want)
    assert rows[0]["n_success"] > 0 and rows[0]["mean_psnr"] is not None
    fooled_by_all = set.intersection(
        *(
            {r["index"] for r in read_records(single / "records" / name)[1] if r["success"]}
            for name in ("photos32__FGSM.jsonl", "photos32__I-FGSM.jsonl")
        )
    )
    assert fooled_by_all & {0, 1} and fooled_by_all & {2, 3}  # Fig. 1 needs both workers' PNGs
    for name in ("photos32__FGSM.jsonl", "photos32__I-FGSM.jsonl"):
        assert_same_records(
            without_timing(shared / "records" / name), without_timing(single / "records" / name)
        )
        shares = [len(read_records(worker_folder(shared, i) / "records" / name)[1]) for i in (0, 1)]
        assert shares == [BATCH, N - BATCH]
    # the transfer (Table 3) was run by the chief alone, into the shared folder only
    assert sorted(p.name for p in (shared / "transfer").iterdir()) == sorted(
        p.name for p in (single / "transfer").iterdir()
    )
    assert not any((worker_folder(shared, i) / "transfer").exists() for i in (0, 1))
    # every adversarial PNG once, whole, under the shared folder (written by its worker)
    assert pngs(shared) == pngs(single) and pngs(shared)
    for name in pngs(shared):
        a = np.asarray(Image.open(shared / "adversarials" / name))
        b = np.asarray(Image.open(single / "adversarials" / name))
        assert a.shape == b.shape == (32, 32, 3)
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1  # 8-bit rounding of 1e-5s
    assert not list(shared.rglob("*.tmp-*"))
    # the figures that need every image, drawn by the chief
    written = {p.name for p in shared.iterdir()}
    assert {p.name for p in single.iterdir()} | {"workers"} <= written
    assert {"magnified.png", "oc_photos32.png", "report.md"} <= written
    manifest = json.loads((shared / ".tfsmooth-run.json").read_text())
    assert not any(name.startswith("workers") for name in manifest["files"])


def test_worker_summary_and_bad_workers(photo_model, tmp_path):
    """A worker other than the chief returns its share only; a bad ``workers`` is refused."""
    from tfsmooth.evaluation.reproduce_imagenet import reproduce_imagenet

    with pytest.raises(TypeError, match="`workers` must be a WorkerSpec or None, got int"):
        reproduce_imagenet(tmp_path / "x", model=str(photo_model), n=N, workers=1)
    out = tmp_path / "out"
    summary = reproduce_imagenet(
        out,
        model=str(photo_model),
        n=N,
        batch_size=BATCH,
        quick=True,
        defense=True,
        attacks=["FGSM"],
        workers=WorkerSpec(1, 2),
    )
    assert summary["rows"] == [] and "worker 1 of 2" in summary["table"]
    assert summary["meta"]["experiment"] == "imagenet" and summary["meta"]["worker"] == 1
    assert list(summary["files"]) == ["photos32__FGSM"]
    records = read_records(worker_folder(out, 1) / "records" / "photos32__FGSM.jsonl")[1]
    assert sorted(r["index"] for r in records) == [2, 3]  # batch 1 of 2
    # only its own folder and its PNGs: no results, no transfer, no manifest of the chief
    assert sorted(p.name for p in out.iterdir()) == ["adversarials", "workers"]
    assert all(int(p.stem) in (2, 3) for p in (out / "adversarials").rglob("*.png"))
    # rerun with other arguments: its folder holds another run's records
    with pytest.raises(ValueError, match="another run"):
        reproduce_imagenet(
            out,
            model=str(photo_model),
            n=N,
            batch_size=1,
            quick=True,
            attacks=["FGSM"],
            workers=WorkerSpec(1, 2),
        )


def test_cli_bad_tf_config_is_a_clear_error(photo_model, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1"]}}))
    assert main(cli_args(photo_model, tmp_path / "out")) == 1
    err = capsys.readouterr().err
    assert err.startswith("tfsmooth reproduce: error: TF_CONFIG needs a `task`"), err
