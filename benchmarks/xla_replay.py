"""Compiles and times the HLO modules of ``xla_export.py`` with JAX's XLA (no TensorFlow needed).

Usage (on a machine with JAX, e.g. the lent GPU machine, whose image has JAX but no TensorFlow)::

    python benchmarks/xla_replay.py benchmarks/xla_cases --out $OUT/xla_replay.json
    python benchmarks/xla_replay.py benchmarks/xla_cases --platform cpu --reps 3
    python benchmarks/xla_replay.py --render-only benchmarks/results/xla_replay_gpu.json

For every case: the HLO module is converted to StableHLO and compiled for the platform; its
parameters are made as the case's JSON says (random inputs; network parameters drawn with the
exported mean and std; the smoother's arrays from the npz, repeated for larger batches); it is
run once (compile and first run timed apart), then ``--reps`` times, each call waited for
(``block_until_ready``); the median is kept. Ratios (:data:`PAIRS`): each smoother case's
median over the network's of the same size and batch (``auto_299`` and ``cg50_299`` to
``inception_v3_299``, ``photo_preset_224`` to ``efficientnet_lite0_224``), the same
computations as ``smoothing.py``'s section a, only compiled by this JAX's XLA instead of
TensorFlow's; and ``kernel_variants.py``'s float16-vector and unrolled kernels over their float32
``while_loop`` form.

``--check-cpu`` also runs every case of the base batch on JAX's CPU backend with the same
parameters, and reports the largest relative difference of each output (the GPU compile
computes what the CPU compile does).

This uses jaxlib internals (``_jax.mlir.hlo_to_stablehlo``, ``Client.compile_and_load``,
``execute_sharded``); they were tried with jax 0.10.2.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import sys
import time
from typing import Any

import numpy as np

#: Each case's time is reported as a ratio to this reference's, at the same batch.
PAIRS = {
    "auto_299": "inception_v3_299",
    "cg50_299": "inception_v3_299",
    "photo_preset_224": "efficientnet_lite0_224",
    "rbcheb_f16vec_37": "rbcheb_f32_37",
    "rbcheb_unrolled_8": "rbcheb_while_8",
}


def _jax() -> Any:
    try:
        import jax
    except ImportError as err:
        raise SystemExit("xla_replay.py needs JAX (pip install jax)") from err
    return jax


def make_parameters(case: dict[str, Any], folder: pathlib.Path, seed: int) -> list[np.ndarray]:
    """The case's parameters, in order, as numpy arrays."""
    rng = np.random.default_rng(seed)
    arrays: dict[str, Any] = {}
    out = []
    for spec in case["parameters"]:
        shape, dtype = tuple(spec["shape"]), np.dtype(spec["dtype"])
        if spec["make"] == "normal":
            value = rng.normal(spec["mean"], spec["std"], size=shape)
            if "low" in spec:
                value = np.clip(value, spec["low"], spec["high"])
        elif spec["make"] == "uniform":
            value = rng.uniform(spec["low"], spec["high"], size=shape)
        elif spec["make"] == "array":
            if spec["file"] not in arrays:
                arrays[spec["file"]] = np.load(folder / spec["file"])
            value = arrays[spec["file"]][spec["key"]].astype(np.float32)
            if "tile_axis" in spec:
                reps = [1] * value.ndim
                reps[spec["tile_axis"]] = spec["tile"]
                value = np.tile(value, reps)
        else:
            raise ValueError(f"{case['name']}: unknown parameter recipe {spec['make']!r}")
        if value.shape != shape:
            raise ValueError(
                f"{case['name']}: parameter {spec.get('name', spec.get('key'))} has shape "
                f"{value.shape}, the HLO expects {shape}"
            )
        out.append(np.asarray(value, dtype=dtype))
    return out


class Compiled:
    """One HLO module compiled for one device."""

    def __init__(self, hlo: bytes, device: Any) -> None:
        jax = _jax()
        from jax._src.lib import xla_client

        try:
            from jax._src.lib import _jax as jaxlib_ext
        except ImportError:  # older jaxlib
            jaxlib_ext = xla_client._xla

        self.jax, self.device = jax, device
        module = jaxlib_ext.mlir.hlo_to_stablehlo(hlo)
        backend = device.client
        try:
            self.executable = backend.compile_and_load(
                module, xla_client.DeviceList((device,)), xla_client.CompileOptions()
            )
        except TypeError:
            self.executable = backend.compile_and_load(
                module, [device], xla_client.CompileOptions()
            )

    def put(self, arrays: list[np.ndarray]) -> list[Any]:
        return [self.jax.device_put(a, self.device) for a in arrays]

    def __call__(self, buffers: list[Any]) -> list[Any]:
        results = self.executable.execute_sharded(buffers)
        outputs = [shards[0] for shards in results.disassemble_into_single_device_arrays()]
        for output in outputs:
            output.block_until_ready()
        return outputs


def replay(
    folder: pathlib.Path,
    platform_name: str | None,
    reps: int,
    check_cpu: bool,
    batches: set[int] | None = None,
) -> dict[str, Any]:
    jax = _jax()
    manifest = json.loads((folder / "manifest.json").read_text())
    device = jax.devices(platform_name)[0] if platform_name else jax.devices()[0]
    base = min(manifest["batches"])
    rows = []
    for name in manifest["cases"]:
        if batches is not None and int(name.rsplit("_b", 1)[1]) not in batches:
            continue
        case = json.loads((folder / f"{name}.json").read_text())
        hlo = (folder / f"{name}.hlo.pb").read_bytes()
        start = time.perf_counter()
        compiled = Compiled(hlo, device)
        compile_s = time.perf_counter() - start
        arrays = make_parameters(case, folder, seed=0)
        buffers = compiled.put(arrays)
        start = time.perf_counter()
        outputs = compiled(buffers)
        first_s = time.perf_counter() - start
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            compiled(buffers)
            times.append(time.perf_counter() - start)
        family, batch = name.rsplit("_b", 1)
        row: dict[str, Any] = {
            "case": name,
            "family": family,
            "batch": int(batch),
            "compile_s": compile_s,
            "first_run_s": first_s,
            "median_ms": 1e3 * statistics.median(times),
            "min_ms": 1e3 * min(times),
            "reps": reps,
            "finite": all(bool(np.isfinite(np.asarray(o)).all()) for o in outputs),
        }
        if check_cpu and int(batch) == base and device.platform != "cpu":
            cpu = Compiled(hlo, jax.devices("cpu")[0])
            reference = cpu(cpu.put(arrays))
            row["max_rel_diff_to_cpu"] = max(
                float(np.abs(np.asarray(o) - np.asarray(r)).max())
                / max(float(np.abs(np.asarray(r)).max()), 1e-30)
                for o, r in zip(outputs, reference)
            )
        rows.append(row)
        print(json.dumps(row), flush=True)
        del buffers, outputs
    medians = {(r["family"], r["batch"]): r["median_ms"] for r in rows}
    for row in rows:
        network = PAIRS.get(row["family"])
        if network and (network, row["batch"]) in medians:
            row["ratio_to"] = network
            row["ratio"] = row["median_ms"] / medians[(network, row["batch"])]
    return {
        "machine": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "jax": jax.__version__,
            "device": str(getattr(device, "device_kind", device.platform)),
            "backend": device.platform,
            "cpu_count": os.cpu_count(),
        },
        "exported_on": manifest.get("machine"),
        "target_residual": manifest.get("target_residual"),
        "rows": rows,
    }


def render_markdown(res: dict[str, Any]) -> str:
    machine = res["machine"]
    exported = res.get("exported_on") or {}
    lines = [
        "# XLA replay: the smoother against the networks, compiled by JAX's XLA",
        "",
        f"`python benchmarks/xla_replay.py` — {machine['date']}; {machine['device']}"
        f" ({machine['backend']}), jax {machine['jax']}; HLO exported by"
        f" `benchmarks/xla_export.py` with TensorFlow {exported.get('tensorflow', '?')}.",
        "",
        "Forward+backward, cold; median of the repetitions, each call waited for. Ratio = the"
        " case's time over that of the case named under *to*, same batch: the smoothers over"
        " their network; the `rbcheb_*` kernels (the solve alone, `kernel_variants.py`) over"
        " their float32 `while_loop` form.",
        "",
        "| case | batch | compile s | median ms | ratio | to | finite | diff to CPU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in res["rows"]:
        ratio = row.get("ratio")
        diff = row.get("max_rel_diff_to_cpu")
        lines.append(
            f"| {row['family']} | {row['batch']} | {row['compile_s']:.1f} |"
            f" {row['median_ms']:.2f} | {'' if ratio is None else f'{ratio:.3f}×'} |"
            f" {row.get('ratio_to', '')} |"
            f" {'yes' if row['finite'] else '**no**'} | {'' if diff is None else f'{diff:.1e}'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folder", nargs="?", type=pathlib.Path, help="xla_export.py's output")
    parser.add_argument("--platform", default=None, help="JAX platform (default: JAX's first)")
    parser.add_argument("--reps", type=int, default=10, help="timed runs per case (10)")
    parser.add_argument("--batches", default=None, help="only these batch sizes, e.g. 8")
    parser.add_argument("--check-cpu", action="store_true", help="compare base batch with CPU")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="JSON output path")
    parser.add_argument("--render-only", type=pathlib.Path, help="re-render a JSON's table")
    args = parser.parse_args(argv)
    if args.render_only:
        saved = json.loads(args.render_only.read_text())
        args.render_only.with_suffix(".md").write_text(render_markdown(saved))
        return 0
    if args.folder is None or not (args.folder / "manifest.json").exists():
        raise SystemExit(f"expected a folder written by xla_export.py, got {args.folder}")
    if args.reps < 1:
        raise SystemExit(f"--reps must be >= 1, got {args.reps}")
    batches = None if args.batches is None else {int(b) for b in args.batches.split(",")}
    res = replay(args.folder, args.platform, args.reps, args.check_cpu, batches)
    text = render_markdown(res)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=1) + "\n")
        args.out.with_suffix(".md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
