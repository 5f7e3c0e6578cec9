"""Multi-worker runs: TF_CONFIG, the chief's merge, and a 2-worker CLI job equal to one process."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from tfsmooth.evaluation.distributed import (
    WorkerSpec,
    WorkerTimeoutError,
    merge_worker_records,
    worker_folder,
)
from tfsmooth.evaluation.records import RECORDS_FORMAT, RecordFile, read_records


# -- WorkerSpec / TF_CONFIG ----------------------------------------------------------------------
def test_worker_spec_is_exported():
    import tfsmooth.evaluation

    assert tfsmooth.evaluation.WorkerSpec is WorkerSpec
    assert "WorkerSpec" in tfsmooth.evaluation.__all__


def test_worker_spec_from_tf_config():
    cluster = {"worker": ["a:1", "b:1", "c:1"]}
    spec = WorkerSpec.from_tf_config({"cluster": cluster, "task": {"type": "worker", "index": 2}})
    assert (spec.index, spec.count, spec.chief, spec.addresses[2]) == (2, 3, False, "c:1")
    assert [spec.owns(b) for b in range(6)] == [False, False, True, False, False, True]
    # a "chief" task is worker 0, the "worker" tasks follow (as tf.distribute numbers them)
    config = {"cluster": {"chief": ["c:0"], **cluster}, "task": {"type": "worker", "index": 0}}
    assert WorkerSpec.from_tf_config(json.dumps(config)).index == 1
    config["task"] = {"type": "chief", "index": 0}
    assert WorkerSpec.from_tf_config(config, timeout=5).chief
    assert WorkerSpec.from_tf_config("") is None
    assert WorkerSpec.from_tf_config({"task": {"type": "worker", "index": 0}}) is None
    one = WorkerSpec.from_tf_config({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker"}})
    assert one is not None and not one.distributed


@pytest.mark.parametrize(
    "config, message",
    [
        ("{not json", "not valid JSON"),
        ({"cluster": {"worker": ["a:1"]}}, "needs a `task`"),
        ({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 1}}, "not in"),
        ({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}}, "only 'chief'"),
        ({"cluster": {"worker": "a:1"}, "task": {"type": "worker"}}, "must be a list"),
    ],
)
def test_bad_tf_config(config, message):
    with pytest.raises(ValueError, match=message):
        WorkerSpec.from_tf_config(config)


def test_bad_worker_spec():
    with pytest.raises(ValueError, match="index"):
        WorkerSpec(2, 2)
    with pytest.raises(ValueError, match="count"):
        WorkerSpec(0, 0)
    with pytest.raises(TypeError, match="index"):
        WorkerSpec(0.0, 2)
    with pytest.raises(ValueError, match="timeout"):
        WorkerSpec(0, 2, timeout=0)


# -- the merge -----------------------------------------------------------------------------------
HEADER = {"format": RECORDS_FORMAT, "model": "m", "attack": "a", "n_images": 5, "batch_size": 2}


def record(index):
    return {
        "index": index,
        "model": "m",
        "attack": "a",
        "label": 0,
        "correct": True,
        "success": index % 2 == 0,
        "l2": 1.0 + index if index % 2 == 0 else None,
        "linf": 0.5 if index % 2 == 0 else None,
        "best_epsilon": None,
        "adv_label": 1,
        "seconds": 0.1,
    }


def write_share(path, spec):
    with RecordFile(path, HEADER) as store:
        for batch in store.batches(2):
            if spec.owns(batch.id):
                store.append([record(int(i)) for i in batch.indices], batch=batch.id)
    return store.header


def test_merge_equals_a_single_writer(tmp_path):
    parts = [worker_folder(tmp_path, i) / "r.jsonl" for i in range(2)]
    header = [write_share(p, WorkerSpec(i, 2)) for i, p in enumerate(parts)][0]
    merged = tmp_path / "r.jsonl"
    assert merge_worker_records(merged, parts, header, workers=WorkerSpec(0, 2)) == 5
    single = tmp_path / "single.jsonl"
    write_share(single, WorkerSpec(0, 1))
    assert read_records(merged)[:2] == read_records(single)[:2]  # same header, same records
    # resumed: nothing left to write
    assert merge_worker_records(merged, parts, header, workers=WorkerSpec(0, 2), resume=True) == 0


def test_chief_times_out_with_a_clear_message(tmp_path):
    parts = [worker_folder(tmp_path, i) / "r.jsonl" for i in range(3)]
    header = write_share(parts[0], WorkerSpec(0, 3))
    write_share(parts[2], WorkerSpec(2, 3))  # worker 1 never ran
    slept = []
    spec = WorkerSpec(0, 3, timeout=0.05, poll_interval=0.01)
    with pytest.raises(
        WorkerTimeoutError, match=r"missing 2 images \(batches 1\) of worker\(s\) \[1\]"
    ):
        merge_worker_records(tmp_path / "r.jsonl", parts, header, workers=spec, sleep=slept.append)
    assert slept and not (tmp_path / "r.jsonl").exists()


def test_records_of_another_run_are_not_merged(tmp_path, caplog):
    parts = [worker_folder(tmp_path, i) / "r.jsonl" for i in range(2)]
    header = write_share(parts[0], WorkerSpec(0, 2))
    with RecordFile(parts[1], {**HEADER, "model": "other"}) as store:
        store.append([{**record(2), "model": "other"}, {**record(3), "model": "other"}], batch=1)
    spec = WorkerSpec(0, 2, timeout=0.05, poll_interval=0.01)
    with pytest.raises(WorkerTimeoutError, match="worker"):
        merge_worker_records(
            tmp_path / "r.jsonl", parts, header, workers=spec, sleep=lambda s: None
        )
    assert "records another run (differs in ['model'])" in caplog.text


# -- a 2-worker job of the command line ------------------------------------------------------------
ARGS = [
    "reproduce",
    "mnist",
    "--quick",
    "--n",
    "10",
    "--batch-size",
    "5",
    "--models",
    "c4",
    "--attacks",
    "FGSM",
    "C&W",
    "--override",
    "C&W:steps=20",
    "--no-progress",
]


def free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def start_cli(argv, tf_config=None):
    """``python -m tfsmooth *argv`` in a subprocess, one thread, with ``TF_CONFIG`` or none."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1")
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    return subprocess.Popen(
        [sys.executable, "-m", "tfsmooth", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def start(out, tf_config=None):
    return start_cli([*ARGS, "--out", str(out)], tf_config)


def finish(process, timeout=240):
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]
    return out


def without_timing(path):
    header, records, _ = read_records(path)
    return header, sorted(
        ({k: v for k, v in r.items() if k != "seconds"} for r in records), key=lambda r: r["index"]
    )


def assert_same_records(a, b):
    """Equal records; the floats to 1e-5 (the reference runs with other TF thread settings)."""
    (header_a, records_a), (header_b, records_b) = a, b
    assert header_a == header_b and len(records_a) == len(records_b) == header_a["n_images"]
    for x, y in zip(records_a, records_b):
        assert x.keys() == y.keys()
        for key in x:
            if isinstance(x[key], float):
                assert y[key] == pytest.approx(x[key], rel=1e-5), (key, x, y)
            else:
                assert x[key] == y[key], (key, x, y)


def test_two_workers_one_killed_and_rerun_equal_one_process(tmp_path):
    from tfsmooth.evaluation.reproduce import reproduce_mnist

    single, shared = tmp_path / "single", tmp_path / "shared"
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(2)]}
    config = [{"cluster": cluster, "task": {"type": "worker", "index": i}} for i in range(2)]
    chief, worker = start(shared, config[0]), start(shared, config[1])
    rerun: list[subprocess.Popen] = []

    def kill_and_rerun():
        # Kill worker 1 as soon as it has recorded a batch (mid-run: it owns batch 1 of both
        # attacks), then rerun it with the same command: it continues its own records.
        first = worker_folder(shared, 1) / "records" / "c4__FGSM.jsonl"
        deadline = time.monotonic() + 180
        while not first.exists() and worker.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        worker.send_signal(signal.SIGKILL)
        worker.communicate()
        rerun.append(start(shared, config[1]))

    watcher = threading.Thread(target=kill_and_rerun)
    watcher.start()
    # Meanwhile, the same run in this process (the CLI's arguments, no figures).
    reference = reproduce_mnist(
        single,
        n=10,
        quick=True,
        batch_size=5,
        models=["c4"],
        attacks=["FGSM", "C&W"],
        overrides={"C&W": {"steps": 20}},
        figures=False,
    )
    watcher.join()
    left = worker_folder(shared, 1) / "records" / "c4__CW.jsonl"
    assert worker.returncode == -signal.SIGKILL
    assert not left.exists() or len(read_records(left)[1]) < 5, "worker 1 ended before the kill"
    printed = finish(rerun[0])
    assert "worker 1 of 2" in printed and "worker 0 (the chief) merges" in printed
    finish(chief)

    keys = ("model", "attack", "n0", "n", "n_success", "psuc", "mean_l2")
    rows = [
        {k: r[k] for k in keys} for r in json.loads((shared / "results.json").read_text())["rows"]
    ]
    expected = [{k: r[k] for k in keys} for r in reference["rows"]]
    assert [r["n_success"] for r in rows] == [r["n_success"] for r in expected]
    for row, want in zip(rows, expected):
        assert row == {**want, "mean_l2": pytest.approx(want["mean_l2"], rel=1e-5)}
    assert len(rows) == 2 and rows[1]["n_success"] > 0 and np.isfinite(rows[1]["mean_l2"])
    for name in ("c4__FGSM.jsonl", "c4__CW.jsonl"):
        assert_same_records(
            without_timing(shared / "records" / name), without_timing(single / "records" / name)
        )
    # worker 1 wrote only into its own folder; the chief's folder is a single run's + workers/
    written = {p.name for p in shared.iterdir()}
    assert {p.name for p in single.iterdir()} | {"workers"} <= written
    manifest = json.loads((shared / ".tfsmooth-run.json").read_text())
    assert not any(name.startswith("workers") for name in manifest["files"])
    assert sorted(p.name for p in (shared / "workers").iterdir()) == ["worker-0", "worker-1"]
    shares = [
        len(read_records(worker_folder(shared, i) / "records" / "c4__CW.jsonl")[1])
        for i in range(2)
    ]
    assert shares == [5, 5]
