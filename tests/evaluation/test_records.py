"""The record store and the output folders: locks, overwrite rules, symlinks, resume, checks."""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from PIL import Image

import tfsmooth
from tfsmooth import _io
from tfsmooth._io import LOCK_NAME, MANIFEST_NAME, OutputDir, RunLockedError, check_out_dir
from tfsmooth.attacks import L2CarliniWagnerAttack
from tfsmooth.evaluation import evaluate_attack
from tfsmooth.evaluation.records import RECORDS_FORMAT, RecordFile, read_records
from tfsmooth.evaluation.reproduce_imagenet import attack_images
from tfsmooth.models import Model

HEADER = {"format": RECORDS_FORMAT, "model": "m", "attack": "a", "n_images": 4, "batch_size": 2}


def _record(index, **changes):
    record = {
        "index": index,
        "model": "m",
        "attack": "a",
        "label": 0,
        "correct": True,
        "success": True,
        "l2": 0.5,
        "linf": 0.1,
        "best_epsilon": None,
        "adv_label": 1,
        "seconds": 0.01,
    }
    return record | changes


def _write(path, batches=(0, 1)):
    with RecordFile(path, HEADER) as store:
        for batch in store.batches(2):
            if batch.id in batches:
                store.append([_record(int(i)) for i in batch.indices], batch=batch.id)
    return store


def _strip(records):
    """Records by index, without the timing field."""
    return {r["index"]: {k: x for k, x in r.items() if k != "seconds"} for r in records}


# -- one writer ----------------------------------------------------------------------------------
def test_second_store_on_the_same_file_is_refused(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordFile(path, HEADER) as first:
        first.append([_record(0), _record(1)], batch=0)
        second = RecordFile(path, HEADER, resume=True)
        with pytest.raises(
            RunLockedError, match=rf"another tfsmooth run is writing to .*\(pid {os.getpid()}"
        ):
            second.open()
        first.append([_record(2), _record(3)], batch=1)
    with RecordFile(path, HEADER, resume=True) as again:  # released on close
        assert again.complete
    assert not (tmp_path / ".r.jsonl.lock").exists()
    with OutputDir(tmp_path / "out", run={"n": 1}), pytest.raises(RunLockedError, match="pid"):
        OutputDir(tmp_path / "out", run={"n": 1}).open()


CHILD = textwrap.dedent(
    """
    import json, os, sys, types
    package = sys.argv[1]
    for name, where in (("tfsmooth", package), ("tfsmooth.evaluation", package + "/evaluation")):
        module = types.ModuleType(name)  # the record store without importing TensorFlow
        module.__path__ = [where]
        sys.modules[name] = module
    from tfsmooth.evaluation.records import RecordFile
    store = RecordFile(sys.argv[2], json.loads(sys.argv[3]), resume=True).open()
    store.append(json.loads(sys.argv[4]), batch=0)
    print("READY", flush=True)
    sys.stdin.readline()
    """
)


def test_second_process_is_refused_and_a_killed_writer_blocks_nothing(tmp_path):
    path = tmp_path / "r.jsonl"
    package = str(pathlib.Path(tfsmooth.__file__).parent)
    args = [json.dumps(HEADER), json.dumps([_record(0), _record(1)])]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, package, str(path), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout.readline().strip() == "READY", child.stderr.read()
        with pytest.raises(RunLockedError, match=rf"writing to .*r\.jsonl \(pid {child.pid}\)"):
            RecordFile(path, HEADER, resume=True).open()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    with RecordFile(path, HEADER, resume=True) as store:  # the lock died with the process
        assert sorted(store.records) == [0, 1]
        store.append([_record(2), _record(3)], batch=1)
    assert len(read_records(path)[1]) == 4


# -- checks on read ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "change, message",
    [
        ({"l2": -1}, "`l2` must be null or a finite number >= 0, got -1"),
        ({"index": 7}, r"`index` must be in 0\.\.3"),
        ({"success": "yes"}, "`success` must be true or false, got 'yes'"),
        ({"index": 0}, "image 0 is recorded twice"),
        ({"run": "0123"}, "`run` is .0123., the header.s run is .*another run"),
    ],
)
def test_bad_records_name_the_line_and_leave_the_file(tmp_path, change, message):
    path = tmp_path / "r.jsonl"
    _write(path)
    lines = path.read_text().splitlines()
    lines[2] = json.dumps(json.loads(lines[2]) | change)  # line 3: the record of image 1
    path.write_text("\n".join(lines) + "\n")
    before = path.read_bytes()
    with pytest.raises(ValueError, match="line 3: not a valid record: " + message):
        read_records(path)
    with pytest.raises(ValueError, match="line 3"):
        RecordFile(path, HEADER, resume=True).open()
    assert path.read_bytes() == before
    with RecordFile(path, HEADER, resume=True, overwrite=True) as store:  # starts over
        assert store.records == {}
    assert not path.exists()  # ... and wrote nothing: no header-only file


def test_append_checks_records_before_writing(tmp_path):
    path = tmp_path / "r.jsonl"
    with RecordFile(path, HEADER) as store:
        with pytest.raises(ValueError, match="`l2`"):
            store.append([_record(0), _record(1, l2=float("nan"))], batch=0)
        with pytest.raises(ValueError, match="not in batch 1"):
            store.append([_record(0)], batch=1)
        assert store.append([_record(0), _record(1)], batch=0) == 2
        assert store.append([_record(1)], batch=0) == 0  # keyed by index: kept once
    assert len(read_records(path)[1]) == 2


def test_resume_checks_the_run_and_repairs_a_cut_tail(tmp_path):
    path = tmp_path / "r.jsonl"
    _write(path)
    with pytest.raises(ValueError, match="exists: pass resume=True \\(--resume\\)"):
        RecordFile(path, HEADER).open()
    with pytest.raises(ValueError, match=r"differs in \['n_images', 'attack'\]"):
        RecordFile(path, HEADER | {"attack": "b", "n_images": 5}, resume=True).open()
    with pytest.raises(ValueError, match="batch_size"), RecordFile(path, HEADER, resume=True) as s:
        next(s.batches(3))
    text = path.read_text()
    path.write_text(text[: text.rfind("\n", 0, len(text) - 1) + 15])  # last line cut mid-way
    with RecordFile(path, HEADER, resume=True) as store:
        assert sorted(store.records) == [0, 1, 2]
        assert [b.missing.tolist() for b in store.batches(2)] == [[], [3]]
    assert path.read_text() == text[: text.rfind("\n", 0, len(text) - 1) + 1]


def test_a_failed_start_leaves_no_file(tmp_path):
    path = tmp_path / "r.jsonl"
    with pytest.raises(RuntimeError), RecordFile(path, HEADER):
        raise RuntimeError("model failed to load")
    assert sorted(os.listdir(tmp_path)) == []
    out = tmp_path / "new" / "out"
    with pytest.raises(RuntimeError), OutputDir(out, run={}, outputs=["a.json"], subdirs=["r"]):
        raise RuntimeError("failed")
    assert not (tmp_path / "new").exists()
    # a header-only file left by an older version does not block a new run
    path.write_text(json.dumps(HEADER | {"run": "x"}) + "\n")
    _write(path)
    assert len(read_records(path)[1]) == 4


def test_evaluate_attack_failing_at_once_leaves_no_records(tmp_path):
    class Broken(L2CarliniWagnerAttack):
        def __call__(self, *args, **kwargs):
            raise KeyboardInterrupt("killed")

    net, images, labels = _tiny_classifier()
    with pytest.raises(KeyboardInterrupt):
        evaluate_attack(net, Broken(), images, labels, records_path=tmp_path / "r.jsonl")
    assert os.listdir(tmp_path) == []


# -- output folders ------------------------------------------------------------------------------
def test_out_dir_keeps_foreign_and_earlier_files_unless_asked(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.md").write_text("my notes")
    run = {"attacks": ["FGSM"]}
    outputs = ["results.json", "report.md"]
    with pytest.raises(ValueError, match=r"did not write there \(report\.md.*--overwrite"):
        OutputDir(out, run=run, outputs=outputs).open()
    with pytest.raises(ValueError, match="--resume --overwrite continues its record files"):
        OutputDir(out, run=run, outputs=outputs, resume=True).open()  # e.g. an older version's
    assert (out / "report.md").read_text() == "my notes"
    assert sorted(os.listdir(out)) == ["report.md"]  # no manifest, no lock left
    with OutputDir(out, run=run, outputs=outputs, overwrite=True):
        assert not (out / "report.md").exists()  # replaced by this run
        for name in outputs:
            (out / name).write_text("ours")
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert sorted(manifest["files"]) == sorted(outputs)

    with pytest.raises(ValueError, match="earlier tfsmooth run .*--resume .*--overwrite"):
        OutputDir(out, run=run, outputs=outputs).open()
    with OutputDir(out, run=run, outputs=outputs, resume=True):  # the same run: continued
        assert (out / "results.json").read_text() == "ours"
    other = {"attacks": ["FGSM", "C&W"]}
    with pytest.raises(ValueError, match=r"another run .*differ in \['attacks'\]"):
        OutputDir(out, run=other, outputs=outputs, resume=True).open()
    with OutputDir(out, run=other, outputs=outputs, resume=True, overwrite=True):
        pass
    assert sorted(os.listdir(out)) == [MANIFEST_NAME, "report.md", "results.json"]


def test_symlinks_are_never_followed(tmp_path, monkeypatch):
    target = tmp_path / "precious.txt"
    target.write_text("keep")
    out = tmp_path / "out"
    out.mkdir()
    (out / ".write_test").symlink_to(target)
    check_out_dir(out, "records")
    assert target.read_text() == "keep" and (out / ".write_test").is_symlink()
    # even a symlink at the (random) probe name is not followed
    monkeypatch.setattr(_io.secrets, "token_hex", lambda n: "fixed")
    (out / ".tfsmooth-write-test-fixed").symlink_to(target)
    with pytest.raises(ValueError, match="not writable"):
        check_out_dir(out)
    assert target.read_text() == "keep"
    monkeypatch.undo()
    (out / LOCK_NAME).symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        OutputDir(out, run={}).open()
    assert target.read_text() == "keep"
    (out / LOCK_NAME).unlink()
    (out / "report.md").symlink_to(target)
    with pytest.raises(ValueError, match="symbolic links"):
        OutputDir(out, run={}, outputs=["report.md"]).open()
    with OutputDir(out, run={}, outputs=["report.md"], resume=True, overwrite=True):
        assert not os.path.lexists(out / "report.md")  # the link is removed, not written through
    assert target.read_text() == "keep"


# -- resume equals an uninterrupted run ------------------------------------------------------------
def _tiny_classifier(n=7, size=8, seed=0):
    keras.utils.set_random_seed(seed)
    net = keras.Sequential(
        [keras.Input([size, size, 3]), keras.layers.Flatten(), keras.layers.Dense(5)], name="tiny"
    )
    images = np.random.default_rng(seed).uniform(0.2, 0.8, [n, size, size, 3]).astype("float32")
    labels = np.argmax(net(images), axis=1)
    return net, images, labels


def _kill(path, batch_size):
    """A killed run: the last batch's lines dropped, the last kept line cut mid-way."""
    lines = path.read_text().splitlines(keepends=True)
    n = len(lines) - 1
    kept = lines[: 1 + (n - 1) // batch_size * batch_size]
    path.write_text("".join(kept[:-1]) + kept[-1][:20])


def test_evaluate_attack_cw_resumed_equals_uninterrupted(tmp_path):
    net, images, labels = _tiny_classifier()
    attack = L2CarliniWagnerAttack(binary_search_steps=2, steps=20, initial_const=1.0)
    run = {"batch_size": 3, "attack_name": "C&W"}
    full = evaluate_attack(net, attack, images, labels, records_path=tmp_path / "a.jsonl", **run)
    path = tmp_path / "b.jsonl"
    evaluate_attack(net, attack, images, labels, records_path=path, **run)
    _kill(path, 3)
    assert len(read_records(path)[1]) == 5  # batch 0 whole, batch 1 without its last image
    resumed = evaluate_attack(net, attack, images, labels, records_path=path, resume=True, **run)
    assert _strip(read_records(path)[1]) == _strip(read_records(tmp_path / "a.jsonl")[1])
    np.testing.assert_array_equal(resumed.l2, full.l2)


def _photo_folder(folder, n=5, size=12):
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(n):
        pixels = rng.integers(40, 215, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"photo{i}.png")
    return folder


def test_attack_images_cw_resumed_equals_uninterrupted(tmp_path):
    keras.utils.set_random_seed(2)
    network = keras.Sequential(
        [keras.Input([12, 12, 3]), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    net = Model(network, input_size=(12, 12), name="tiny")
    folder = _photo_folder(tmp_path / "photos")
    settings = {
        "batch_size": 2,
        "quick": True,
        "overrides": {"C&W": {"steps": 12, "binary_search_steps": 2, "initial_const": 1.0}},
    }
    full = attack_images(net, folder, "cw", tmp_path / "a", **settings)
    assert full["row"]["n_success"] >= 1
    out = tmp_path / "b"
    attack_images(net, folder, "cw", out, **settings)
    _kill(out / "records.jsonl", 2)
    with pytest.raises(ValueError, match="--resume"):
        attack_images(net, folder, "cw", out, **settings)
    resumed = attack_images(net, folder, "cw", out, resume=True, **settings)
    assert _strip(resumed["records"]) == _strip(full["records"])
    assert _strip(read_records(out / "records.jsonl")[1]) == _strip(full["records"])
    for record in full["records"]:
        for key in ("adversarial", "perturbation"):
            if record[key] is not None:
                assert (out / record[key]).read_bytes() == (
                    tmp_path / "a" / record[key]
                ).read_bytes()
    # a lost PNG: its image is attacked again (its whole batch), the rest is kept
    lost = next(r for r in full["records"] if r["adversarial"] is not None)
    (out / lost["adversarial"]).unlink()
    again = attack_images(net, folder, "cw", out, resume=True, **settings)
    assert _strip(again["records"]) == _strip(full["records"])
    assert (out / lost["adversarial"]).is_file()


def test_cli_overwrite_flag(tmp_path, capsys):
    from tfsmooth.cli import build_parser, main

    assert build_parser().parse_args(["reproduce", "mnist", "--overwrite"]).overwrite is True
    keras.utils.set_random_seed(3)
    network = keras.Sequential(
        [keras.Input([12, 12, 3]), keras.layers.Flatten(), keras.layers.Dense(4)]
    )
    network.save(tmp_path / "tiny.keras")
    folder = _photo_folder(tmp_path / "photos", n=2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "summary.json").write_text("{}")  # not ours
    argv = ["attack", "--model", str(tmp_path / "tiny.keras"), "--images", str(folder)]
    argv += ["--attack", "fgsm", "--epsilon", "0.1", "--out", str(out), "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "summary.json" in err and "--overwrite" in err and "Traceback" not in err
    assert main(argv + ["--overwrite"]) == 0
    assert json.loads((out / "summary.json").read_text())["rows"][0]["n0"] == 2
    assert main(argv) == 1 and "--resume" in capsys.readouterr().err
    assert main(argv + ["--resume"]) == 0
