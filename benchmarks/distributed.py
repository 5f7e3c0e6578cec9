"""Scale-out of the evaluation: replicas in one process, and workers over processes.

Two measurements, each in fresh subprocesses with one TensorFlow thread per process
(``TF_NUM_INTRAOP_THREADS=1``, ``TF_NUM_INTEROP_THREADS=1`` for the workers), so that one
replica or one worker uses one core:

- **replicas** (``tf.distribute.MirroredStrategy`` over 2 logical CPU devices): the same
  batches attacked by :func:`tfsmooth.evaluation.protocol._attack_batch` with the replicas'
  chunks dispatched one after the other (``concurrent=False``, the behaviour before) and
  concurrently (one thread per replica, the default), plus no strategy at all. The attack is
  I-FGSM (30 steps) on a small conv net, 4 batches of 64 images of 28×28; each configuration is
  timed ``--reps`` times after a warm-up (median). The start and end of each replica's chunk
  are recorded to show the overlap.
- **workers**: ``python -m tfsmooth reproduce mnist --quick --n N --models c4 --attacks FGSM
  C&W --batch-size 10`` as one process, then as a 2-worker job (``TF_CONFIG`` on localhost, one
  ``--out``): wall time from the start to the end of the last process (TensorFlow start-up
  included), and a check that the rows (Psuc, D) are the same.

Usage::

    python benchmarks/distributed.py            # both, writes results/distributed.{json,md}
    python benchmarks/distributed.py --n 40 --reps 1 --out /tmp/d.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from typing import Any

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
ROOT = pathlib.Path(__file__).resolve().parent.parent

REPLICAS_SCRIPT = textwrap.dedent(
    """
    import json, statistics, sys, threading, time
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfsmooth.attacks import LinfBasicIterativeAttack
    from tfsmooth.evaluation import protocol
    from tfsmooth.models.base import Model
    reps = int(sys.argv[1])
    tf.keras.utils.set_random_seed(1)
    net = Model(tf.keras.Sequential([
        tf.keras.Input([28, 28, 1]), tf.keras.layers.Conv2D(32, 5, activation="relu"),
        tf.keras.layers.Conv2D(32, 5, activation="relu"), tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(10)]))
    x = np.random.default_rng(0).uniform(size=[256, 28, 28, 1]).astype("float32")
    y = np.argmax(net(x), 1)
    attack = LinfBasicIterativeAttack(steps=30, step_size=0.01)
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    spans, original = [], protocol._attack_chunk
    def timed(*args):
        start = time.perf_counter()
        outputs = tuple(o.numpy() for o in original(*args))
        spans.append([threading.current_thread().name, start, time.perf_counter()])
        return outputs
    protocol._attack_chunk = timed
    configs = {"no strategy": (None, True), "2 replicas, sequential": (strategy, False),
               "2 replicas, concurrent": (strategy, True)}
    def run(config):
        strat, concurrent = configs[config]
        outputs = []
        for i in range(4):
            part = slice(64 * i, 64 * (i + 1))
            outputs.append(protocol._attack_batch(net, attack, x[part], y[part], 0.05, strat, 64,
                                                  concurrent))
        return outputs
    reference = {c: run(c) for c in configs}  # warm-up (traces), and the results
    same = all(all(np.array_equal(a[0], b[0]) and np.allclose(a[1], b[1], rtol=1e-5)
                   for a, b in zip(reference["no strategy"], reference[c])) for c in configs)
    times = {c: [] for c in configs}
    chunk_spans = {}
    for _ in range(reps):
        for c in configs:
            spans.clear()
            t = time.perf_counter()
            run(c)
            times[c].append(time.perf_counter() - t)
            chunk_spans[c] = [[name, round(s - t, 3), round(e - t, 3)] for name, s, e in spans]
    print(json.dumps({"seconds": {c: statistics.median(v) for c, v in times.items()},
                      "all_seconds": times, "spans": chunk_spans, "same_results": same}))
    """
)


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def environment(**extra: str) -> dict[str, str]:
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.pop("TF_CONFIG", None)
    env.update(TF_NUM_INTRAOP_THREADS="1", TF_NUM_INTEROP_THREADS="1", **extra)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def measure_replicas(reps: int) -> dict[str, Any]:
    env = environment()
    env.pop("TF_NUM_INTEROP_THREADS")  # the replica threads' graphs run side by side
    done = subprocess.run(
        [sys.executable, "-c", REPLICAS_SCRIPT, str(reps)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    result = json.loads(done.stdout.strip().splitlines()[-1])
    seconds = result["seconds"]
    result["speedup_concurrent_vs_sequential"] = (
        seconds["2 replicas, sequential"] / seconds["2 replicas, concurrent"]
    )
    result["speedup_concurrent_vs_no_strategy"] = (
        seconds["no strategy"] / seconds["2 replicas, concurrent"]
    )
    return result


def run_job(out: pathlib.Path, workers: int, n: int) -> dict[str, Any]:
    args = [sys.executable, "-m", "tfsmooth", "reproduce", "mnist", "--quick", "--n", str(n)]
    args += ["--models", "c4", "--attacks", "FGSM", "C&W", "--batch-size", "10"]
    args += ["--no-progress", "--out", str(out)]
    cluster = {"worker": [f"localhost:{p}" for p in free_ports(workers)]}
    started = time.perf_counter()
    processes, logs = [], []
    for index in range(workers):
        extra = {}
        if workers > 1:
            config = {"cluster": cluster, "task": {"type": "worker", "index": index}}
            extra["TF_CONFIG"] = json.dumps(config)
        log = tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed below
        logs.append(log)
        processes.append(
            subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=environment(**extra))
        )
    ended, cpu = {}, {}
    while len(ended) < workers:  # wait4: the wall and CPU time of each process
        pid, status, usage = os.wait4(-1, 0)
        number = next((i for i, p in enumerate(processes) if p.pid == pid), None)
        if number is None:
            continue
        ended[number] = time.perf_counter() - started
        cpu[number] = usage.ru_utime + usage.ru_stime
        processes[number].returncode = os.waitstatus_to_exitcode(status)
    for process, log in zip(processes, logs):
        log.seek(0)
        text = log.read()
        log.close()
        if process.returncode != 0:
            raise RuntimeError(f"worker failed: {text[-3000:]}")
    rows = json.loads((out / "results.json").read_text())["rows"]
    return {
        "workers": workers,
        "wall_seconds": max(ended.values()),
        "process_seconds": [ended[i] for i in range(workers)],
        "cpu_seconds": [cpu[i] for i in range(workers)],
        "rows": [
            {k: r[k] for k in ("model", "attack", "n", "n_success", "psuc", "mean_l2", "seconds")}
            for r in rows
        ],
    }


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def render(data: dict[str, Any]) -> str:
    replicas = data["replicas"]
    lines = [
        "# Scale-out: replicas and workers (`benchmarks/distributed.py`)",
        "",
        f"Run {data['date']} on {data['machine']['cpus']} CPU cores "
        f"({data['machine']['platform']}), TensorFlow {data['machine']['tensorflow']}. "
        "**The cores are shared with other jobs** (load average "
        f"{data['load_before']} before, {data['load_after']} after: 1/5/15 min), so the "
        "speed-ups below are lower bounds of what two free cores give; one TF thread per "
        "replica / worker.",
        "",
        "## Replicas in one process (MirroredStrategy over 2 logical CPUs)",
        "",
        "I-FGSM (30 steps) on a small conv net, 4 batches of 64 images (2 chunks of 32), "
        f"median of {data['reps']} run(s) after a warm-up; results identical in all three: "
        f"**{replicas['same_results']}**.",
        "",
        "| dispatch | seconds |",
        "|---|---:|",
    ]
    for name, seconds in replicas["seconds"].items():
        lines.append(f"| {name} | {seconds:.2f} |")
    lines += [
        "",
        f"Concurrent vs sequential dispatch: **{replicas['speedup_concurrent_vs_sequential']:.2f}"
        f"×**; vs no strategy: {replicas['speedup_concurrent_vs_no_strategy']:.2f}×.",
        "",
        "Chunks of the concurrent run (thread, start, end in seconds from the run's start):",
        "",
        "| thread | start | end |",
        "|---|---:|---:|",
    ]
    for name, start, end in replicas["spans"]["2 replicas, concurrent"]:
        lines.append(f"| {name} | {start:.3f} | {end:.3f} |")
    jobs = data["workers"]
    lines += [
        "",
        "## Workers over processes (TF_CONFIG, one shared `--out`)",
        "",
        f"`tfsmooth reproduce mnist --quick --n {data['n']} --models c4 --attacks FGSM C&W "
        "--batch-size 10`; wall time from the start to the end of the last process, "
        "TensorFlow start-up (per process) and the chief's report and figures included.",
        "",
        "CPU seconds are each process's own (user + system, TensorFlow start-up included); "
        "with a free core per worker, the wall time is about the largest of them.",
        "",
        "| workers | wall seconds | CPU seconds per process | Psuc, D (FGSM) | Psuc, D (C&W) |",
        "|---:|---:|---|---|---|",
    ]
    for job in jobs:
        cells = [f"{r['psuc']:.3f}, {r['mean_l2']:.3f}" for r in job["rows"]]
        cpu = ", ".join(f"{c:.1f}" for c in job["cpu_seconds"])
        lines.append(
            f"| {job['workers']} | {job['wall_seconds']:.1f} | {cpu} | {' | '.join(cells)} |"
        )
    lines += [
        "",
        f"Speed-up of 2 workers: **{data['speedup_workers']:.2f}×** in wall time (on the "
        f"shared cores), **{data['speedup_workers_cpu']:.2f}×** in the largest CPU time of a "
        f"process (what two free cores would give); same rows: **{data['same_rows']}**.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="MNIST images of the worker jobs")
    parser.add_argument("--reps", type=int, default=3, help="repetitions of the replica timing")
    parser.add_argument("--out", default=str(RESULTS / "distributed.json"))
    args = parser.parse_args(argv)
    import tensorflow as tf

    data: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "tensorflow": tf.__version__,
        },
        "load_before": load_average(),
        "n": args.n,
        "reps": args.reps,
    }
    data["replicas"] = measure_replicas(args.reps)
    print("replicas:", json.dumps(data["replicas"]["seconds"]), file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        data["workers"] = [run_job(pathlib.Path(tmp) / f"w{k}", k, args.n) for k in (1, 2)]
    data["load_after"] = load_average()
    one, two = data["workers"]
    data["speedup_workers"] = one["wall_seconds"] / two["wall_seconds"]
    data["speedup_workers_cpu"] = max(one["cpu_seconds"]) / max(two["cpu_seconds"])
    strip = [
        [{k: v for k, v in r.items() if k != "seconds"} for r in j["rows"]] for j in (one, two)
    ]
    data["same_rows"] = strip[0] == strip[1]
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    out.with_suffix(".md").write_text(render(data), encoding="utf-8")
    print(render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
