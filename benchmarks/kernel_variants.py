"""Benchmark: variants of the default solver's kernel (16-bit storage, unrolled loop) vs float32.

Usage::

    python benchmarks/kernel_variants.py            # B=8 at 299x299x3, 5 repetitions
    python benchmarks/kernel_variants.py --quick    # B=2, 2 repetitions
    python benchmarks/kernel_variants.py --batch 32 --out /tmp/k32.json   # e.g. on a GPU
    python benchmarks/kernel_variants.py --sections l   # s: storage, l: loop form, m: mode
    python benchmarks/kernel_variants.py --render-only benchmarks/results/kernel_variants.json

The kernel is the default solver's: red-black Chebyshev on the Schur complement
:math:`S = I - \\alpha^2 B B^\\top` at alpha 0.997 on 299x299 natural photos, cold, with the
closed-form step count for the full-system tolerance ``tol``. It is written here (with
tfsmooth's packing and stencil kernels) so that its variants can be chosen; the float32
while-loop form is checked against the library's own ``RedBlackLaplacian.solve``.

s. **Storage** (issue 11: the solve is bound by memory traffic; would 16 bits cut its cost, and
   where does the accuracy allow it?): the residual ``r`` and direction ``d`` (``vectors``) and
   the 9-point weights of :math:`S` (``weights``) stored in float32, float16 or bfloat16, the
   arithmetic and the solution in float32. For 16-bit vectors every system is first scaled to a
   unit reduced right-hand side, so that float16's range holds the residual down to 1e-4 (the
   map is linear; the scale is undone at the end). Per (vectors, weights, tol): median time, its
   ratio to the float32 kernel in the same repetitions, and the *true* relative residual of the
   full system, max over the image x channel systems, for white-noise and photo right-hand
   sides; ``meets_tol`` says whether it is <= ``tol``. A row times the library's solve.
l. **Loop form** (a fixed-degree polynomial can be unrolled, leaving no loop to synchronize
   on): the same float32 steps as a ``tf.while_loop`` and unrolled in Python, for a few step
   counts; first call (trace and XLA compile) and median time.
m. **Smooth mode** (why 16-bit weights fail): :math:`S` on :math:`D^{1/2}\\mathbf{1}`, its
   eigenvector of the smallest eigenvalue :math:`1 - \\alpha^2`, with exact and rounded weights.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from smoothing import machine_facts, photo_batch  # noqa: E402

from tfsmooth.graphs import ImageGraph  # noqa: E402
from tfsmooth.smoothing import RedBlackLaplacian, StencilLaplacian  # noqa: E402
from tfsmooth.smoothing import redblack as rbm  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
ALPHA = 0.997
SIZE = 299
TOLS = (1e-2, 1e-3, 1e-4)
DTYPES = {"float32": tf.float32, "float16": tf.float16, "bfloat16": tf.bfloat16}
#: (vectors, weights) storage types, the float32 reference first.
VARIANTS = (
    ("float32", "float32"),
    ("float16", "float32"),
    ("bfloat16", "float32"),
    ("float32", "float16"),
    ("float32", "bfloat16"),
    ("float16", "float16"),
)


def chebyshev_kernel(
    height: int, width: int, steps: int, vectors: str, weights: str, *, unroll: bool = False
) -> Any:
    """A jit-compiled cold red-black Chebyshev solve with the given storage types, as a
    ``tf.while_loop`` or (``unroll``) as ``steps`` copies of the step."""
    vdt, wdt = DTYPES[vectors], DTYPES[weights]
    lower, upper = 1.0 - ALPHA**2, 1.0
    theta, delta = 0.5 * (upper + lower), 0.5 * (upper - lower)
    sigma = theta / delta
    scaled = vdt != tf.float32

    @tf.function(jit_compile=True)
    def solve(red_w: tf.Tensor, black_w: tf.Tensor, schur_w: tf.Tensor, rhs: tf.Tensor) -> Any:
        even = rbm._even_rows(height)
        shape = tf.stack([tf.shape(rhs)[0], height, width, tf.shape(rhs)[2]])
        c = tf.reshape(rhs, shape) * (1.0 - ALPHA)
        c_r, c_b = rbm._pack(c, height, width)
        reduced = c_r + ALPHA * rbm._cross(c_b, red_w, even, True)
        if scaled:
            scale = tf.sqrt(tf.reduce_sum(tf.square(reduced), axis=[2, 3], keepdims=True))
            scale = tf.where(scale > 0, scale, tf.ones_like(scale))
            reduced = reduced / scale
        stored_w = tf.cast(schur_w, wdt)

        def body(i: tf.Tensor, y: tf.Tensor, r16: tf.Tensor, d16: tf.Tensor, rho: tf.Tensor):
            d = tf.cast(d16, tf.float32)
            w = tf.cast(stored_w, tf.float32)
            y = y + d
            r = tf.cast(r16, tf.float32) - rbm._apply_schur(d, w, even)
            rho_next = 1.0 / (2.0 * sigma - rho)
            d = (rho_next * rho) * d + (2.0 * rho_next / delta) * r
            return i + 1, y, tf.cast(r, vdt), tf.cast(d, vdt), rho_next

        y0 = tf.zeros_like(reduced)
        state = (0, y0, tf.cast(reduced, vdt), tf.cast(reduced / theta, vdt), delta / theta)
        if unroll:
            for _ in range(steps):
                state = body(*state)
        else:
            state = tf.while_loop(lambda i, *_: i < steps, body, state, parallel_iterations=1)
        y = state[1]
        if scaled:
            y = y * scale
        x_b = c_b + ALPHA * rbm._cross(y, black_w, even, False)
        return tf.reshape(rbm._unpack(y, x_b, height, width), tf.shape(rhs))

    return solve


def true_residual(stencil: StencilLaplacian, rhs: tf.Tensor, x: tf.Tensor) -> float:
    """Largest relative residual of the full system over the image x channel systems."""
    r = tf.norm(rhs - stencil.matmul(x), axis=1) / tf.norm(rhs, axis=1)
    return float(tf.reduce_max(r))


def setup(batch: int) -> tuple[ImageGraph, RedBlackLaplacian, dict[str, tf.Tensor]]:
    guide = photo_batch(SIZE, batch)
    graph = ImageGraph(guide)
    n = SIZE * SIZE
    rhs = {
        "white noise": tf.random.stateless_normal([batch, n, 3], seed=[1, 2]),
        "photo": tf.reshape(guide, [batch, n, 3]),
    }
    return graph, RedBlackLaplacian(graph, ALPHA), rhs


def section_storage(batch: int, reps: int) -> dict[str, Any]:
    graph, rb, rhs = setup(batch)
    stencil = StencilLaplacian(graph, ALPHA)
    weights = (rb.red_weights, rb.black_weights, rb.schur_weights)
    rows: list[dict[str, Any]] = []
    for tol in TOLS:
        steps = rb.cold_steps(tol, 1000)
        kernels = {variant: chebyshev_kernel(SIZE, SIZE, steps, *variant) for variant in VARIANTS}

        def library(b: tf.Tensor, tol: float = tol, steps: int = steps) -> tf.Tensor:
            return rb.solve(b, method="chebyshev", max_iter=steps, tol=tol).x

        calls: dict[Any, Any] = {v: (lambda b, k=k: k(*weights, b)) for v, k in kernels.items()}
        calls["library"] = library
        noise = rhs["white noise"]
        for fn in calls.values():  # trace and compile
            fn(noise).numpy()
        times: dict[Any, list[float]] = {key: [] for key in calls}
        for _ in range(reps):
            for key, fn in calls.items():
                start = time.perf_counter()
                fn(noise).numpy()
                times[key].append(time.perf_counter() - start)
        reference = times[VARIANTS[0]]
        library_x = library(noise)
        reference_x = calls[VARIANTS[0]](noise)
        library_gap = float(
            tf.reduce_max(tf.abs(library_x - reference_x)) / tf.reduce_max(tf.abs(library_x))
        )
        for key in calls:
            residuals = {name: true_residual(stencil, b, calls[key](b)) for name, b in rhs.items()}
            ratios = [a / b for a, b in zip(times[key], reference)]
            vectors, weights_type = key if key != "library" else ("float32", "float32")
            rows.append(
                {
                    "tol": tol,
                    "steps": steps,
                    "kernel": "library RedBlackLaplacian.solve" if key == "library" else "here",
                    "vectors": vectors,
                    "weights": weights_type,
                    "median_ms": 1e3 * statistics.median(times[key]),
                    "ratio_to_float32": statistics.median(ratios),
                    "true_residual": residuals,
                    "meets_tol": all(value <= tol for value in residuals.values()),
                    **({"max_rel_diff_to_float32_kernel": library_gap} if key == "library" else {}),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return {"rows": rows}


def section_loop(batch: int, reps: int, step_counts: tuple[int, ...]) -> dict[str, Any]:
    _, rb, rhs = setup(batch)
    weights = (rb.red_weights, rb.black_weights, rb.schur_weights)
    noise = rhs["white noise"]
    rows: list[dict[str, Any]] = []
    for steps in step_counts:
        results = {}
        for unroll in (False, True):
            kernel = chebyshev_kernel(SIZE, SIZE, steps, "float32", "float32", unroll=unroll)
            start = time.perf_counter()
            results[unroll] = kernel(*weights, noise).numpy()
            first = time.perf_counter() - start
            times = []
            for _ in range(reps):
                start = time.perf_counter()
                kernel(*weights, noise).numpy()
                times.append(time.perf_counter() - start)
            rows.append(
                {
                    "steps": steps,
                    "form": "unrolled" if unroll else "while_loop",
                    "first_call_s": first,
                    "median_ms": 1e3 * statistics.median(times),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
        rows[-1]["ratio_to_while_loop"] = rows[-1]["median_ms"] / rows[-2]["median_ms"]
        scale = float(np.abs(results[False]).max())
        rows[-1]["max_rel_diff_to_while_loop"] = (
            float(np.abs(results[True] - results[False]).max()) / scale
        )
    return {"rows": rows}


def section_mode(batch: int) -> dict[str, Any]:
    """How much 16-bit weights change :math:`S` on its smooth mode :math:`D^{1/2}\\mathbf{1}`.

    That vector's red half is an eigenvector of :math:`S` with eigenvalue :math:`1 - \\alpha^2`
    (the smallest); rounding the weights moves :math:`S v` by :math:`(\\tilde S - S) v`."""
    graph, rb, _ = setup(batch)
    mode, _ = rb.pack(tf.sqrt(graph.degree)[..., None])  # [G, 1, H, Wh]
    even = rbm._even_rows(SIZE)
    exact = rbm._apply_schur(mode, rb.schur_weights, even)

    def per_image(x: tf.Tensor) -> np.ndarray:
        return tf.sqrt(tf.reduce_sum(tf.square(x), axis=[1, 2, 3])).numpy()

    out: dict[str, Any] = {
        "eigenvalue_max": float(np.max(per_image(exact) / per_image(mode))),
        "eigenvalue_min": float(np.min(per_image(exact) / per_image(mode))),
        "expected": 1.0 - ALPHA**2,
    }
    for name in ("float16", "bfloat16"):
        rounded = tf.cast(tf.cast(rb.schur_weights, DTYPES[name]), tf.float32)
        shift = per_image(rbm._apply_schur(mode, rounded, even) - exact) / per_image(exact)
        out[name] = {"max": float(np.max(shift)), "mean": float(np.mean(shift))}
    print(json.dumps(out), flush=True)
    return out


def render_markdown(res: dict[str, Any]) -> str:
    machine = res["machine"]
    lines = [
        "# Variants of the red-black Chebyshev kernel",
        "",
        f"`python benchmarks/kernel_variants.py{' --quick' if res['quick'] else ''}`"
        f" — {machine['date']}; {machine['device']}, {machine['cpu_count']} CPUs, TensorFlow"
        f" {machine['tensorflow']}; 1-min load average {machine['load_average_1min_at_start']:.1f}"
        " at start.",
        "",
        f"Cold solve of {res['batch_shape']} at α = {res['alpha']} (photo guides), XLA; time ="
        f" median of {res['reps']} repetitions, results fetched.",
    ]
    if "storage" in res:
        lines += [
            "",
            "## Storage: 16-bit vectors (residual, direction) or weights, float32 arithmetic",
            "",
            "Ratio = to the float32 kernel in the same (interleaved) repetitions; residual = true"
            " relative residual of the full system, max over the image × channel systems.",
            "",
            "| tol | steps | kernel | vectors | weights | ms | ratio | residual (noise) |"
            " residual (photo) | meets tol |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for row in res["storage"]["rows"]:
            residual = row["true_residual"]
            lines.append(
                f"| {row['tol']:g} | {row['steps']} | {row['kernel']} | {row['vectors']} |"
                f" {row['weights']} | {row['median_ms']:.1f} | {row['ratio_to_float32']:.2f} |"
                f" {residual['white noise']:.2e} | {residual['photo']:.2e} |"
                f" {'yes' if row['meets_tol'] else '**no**'} |"
            )
    if "loop" in res:
        lines += [
            "",
            "## Loop form: tf.while_loop or unrolled (float32)",
            "",
            "| steps | form | first call (trace + compile) s | ms | ratio to while_loop |",
            "|---|---|---|---|---|",
        ]
        for row in res["loop"]["rows"]:
            ratio = row.get("ratio_to_while_loop")
            lines.append(
                f"| {row['steps']} | {row['form']} | {row['first_call_s']:.1f} |"
                f" {row['median_ms']:.1f} | {'' if ratio is None else f'{ratio:.1f}×'} |"
            )
    if "mode" in res:
        mode = res["mode"]
        lines += [
            "",
            "## Why 16-bit weights fail: S on its smooth mode",
            "",
            f"`S v = λ v` for `v` = the red half of `D^½1`: λ from {mode['eigenvalue_min']:.6f}"
            f" to {mode['eigenvalue_max']:.6f} over the images (1 − α² ="
            f" {mode['expected']:.6f}). Relative change of `S v` when the 9 weights are"
            " rounded, `‖(S̃ − S) v‖ / ‖S v‖`, per image:",
            "",
            "| weights | mean | max |",
            "|---|---|---|",
        ]
        for name in ("float16", "bfloat16"):
            lines.append(f"| {name} | {mode[name]['mean']:.1%} | {mode[name]['max']:.1%} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="B=2, 2 repetitions")
    parser.add_argument("--batch", type=int, default=None, help="images per solve (8; 2 quick)")
    parser.add_argument("--reps", type=int, default=None, help="timed repetitions (5; 2 quick)")
    parser.add_argument(
        "--sections", default="slm", help="s: storage, l: loop form, m: smooth mode (all)"
    )
    parser.add_argument(
        "--merge-into", type=pathlib.Path, help="add the sections run to this JSON (and its .md)"
    )
    parser.add_argument("--out", type=pathlib.Path, default=None, help="JSON output path")
    parser.add_argument("--render-only", type=pathlib.Path, help="re-render the table of a JSON")
    args = parser.parse_args(argv)
    if args.render_only:
        saved = json.loads(args.render_only.read_text())
        args.render_only.with_suffix(".md").write_text(render_markdown(saved))
        return 0
    batch = args.batch or (2 if args.quick else 8)
    reps = args.reps or (2 if args.quick else 5)
    if batch < 1 or reps < 1:
        raise SystemExit(f"--batch and --reps must be >= 1, got {batch} and {reps}")
    if not args.sections or set(args.sections) - set("slm"):
        raise SystemExit(f"--sections must be made of 's', 'l', 'm', got {args.sections!r}")
    tf.get_logger().setLevel("ERROR")
    res: dict[str, Any] = {
        "machine": machine_facts(),
        "quick": args.quick,
        "batch_shape": [batch, SIZE, SIZE, 3],
        "alpha": ALPHA,
        "reps": reps,
    }
    started = time.perf_counter()
    if "s" in args.sections:
        res["storage"] = section_storage(batch, reps)
    if "l" in args.sections:
        res["loop"] = section_loop(batch, reps, (2, 4) if args.quick else (2, 4, 8))
    if "m" in args.sections:
        res["mode"] = {"date": res["machine"]["date"], **section_mode(batch)}
    res["total_s"] = time.perf_counter() - started
    name = "kernel_variants_quick.json" if args.quick else "kernel_variants.json"
    out = args.out or ROOT / "benchmarks" / "results" / name
    if args.merge_into:
        merged = json.loads(args.merge_into.read_text())
        if merged["batch_shape"] != res["batch_shape"]:
            raise SystemExit(
                f"--merge-into: {args.merge_into} has batch {merged['batch_shape']}, this run "
                f"{res['batch_shape']}"
            )
        merged.update({k: res[k] for k in ("storage", "loop", "mode") if k in res})
        res, out = merged, args.merge_into
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1) + "\n")
    out.with_suffix(".md").write_text(render_markdown(res))
    print(render_markdown(res))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
