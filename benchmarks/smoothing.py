"""Benchmark of the graph smoother: cost relative to the attacked network, CG, memory.

Usage::

    python benchmarks/smoothing.py            # full run (several minutes on a small CPU)
    python benchmarks/smoothing.py --quick    # fewer repetitions, small batches (< 2 minutes)
    python benchmarks/smoothing.py --render-only benchmarks/results/smoothing.json

Everything is measured in one run on one machine, so the ratios are meaningful even where the
absolute times are not. Writes a JSON file (``--out``), a markdown table next to it (same name,
``.md``) and, for a full run, the reStructuredText table included by ``docs/benchmarks.rst``.

Sections (see ``benchmarks/README.md``):

a. 299x299x3, B=8 natural photos: smoother forward+backward, cold (50 iterations, tol 0,
   alpha 0.997) and warm-started, against ``keras.applications.InceptionV3`` forward+backward.
b. 28x28x1, B=100 MNIST digits: smoother (CG alpha 0.95 tol 1e-4, cold and warm; exact) against
   the paper's C4 network.
c. Stencil vs sparse operator: matvec and 50-iteration CG; exact solver bind and apply cost.
d. CG iterations to relative residual 1e-2 / 1e-4, cold and warm, alpha 0.95 and 0.997.
e. Peak memory of forward+backward against ``max_iter`` (one subprocess per setting), with the
   smoother's custom gradient and, for contrast, automatic differentiation through CG.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tfsmooth  # noqa: E402
from tfsmooth.graphs import ImageGraph  # noqa: E402
from tfsmooth.smoothing import (  # noqa: E402
    RedBlackLaplacian,
    Smoother,
    SparseLaplacian,
    StencilLaplacian,
    conjugate_gradient,
)

ROOT = pathlib.Path(__file__).resolve().parent.parent
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
CHANGE = 0.05  # relative size of the change between two attack iterations


# -- data ------------------------------------------------------------------------------------
def photo_batch(size: int, batch: int, seed: int = 0) -> tf.Tensor:
    """``batch`` random crops ``[size, size, 3]`` in [0, 1] of scikit-image's sample photos."""
    try:
        import skimage.data
    except ImportError as err:
        raise ImportError("the benchmark needs scikit-image: pip install scikit-image") from err
    rng = np.random.default_rng(seed)
    crops = []
    for i in range(batch):
        photo = getattr(skimage.data, PHOTOS[i % len(PHOTOS)])().astype(np.float32) / 255.0
        height, width = photo.shape[:2]
        scale = size * rng.uniform(1.05, 1.4) / min(height, width)
        new_size = [max(size, round(height * scale)), max(size, round(width * scale))]
        resized = tf.image.resize(photo, new_size, antialias=True).numpy()
        top = rng.integers(0, resized.shape[0] - size + 1)
        left = rng.integers(0, resized.shape[1] - size + 1)
        crop = resized[top : top + size, left : left + size]
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        crops.append(np.clip(crop, 0.0, 1.0))
    return tf.constant(np.stack(crops))


def digit_batch(batch: int) -> tuple[tf.Tensor, str]:
    """``batch`` MNIST test digits ``[28, 28, 1]`` in [0, 1] (the sample bundled with tfsmooth)."""
    path = pathlib.Path(tfsmooth.__file__).parent / "assets" / "mnist_sample.npz"
    if path.exists():
        with np.load(path) as data:
            digits = data["x_test"][:batch].astype(np.float32)
        if digits.max() > 1.0:
            digits /= 255.0
        if len(digits) == batch:
            return tf.constant(digits[..., None]), "tfsmooth/assets/mnist_sample.npz (x_test)"
    gray = tf.image.rgb_to_grayscale(photo_batch(28, batch, seed=1))
    return gray, "grayscale crops of scikit-image photos (MNIST sample not found)"


def perturbed(x: tf.Tensor, seed: int) -> tf.Tensor:
    """``x`` plus a random change of relative L2 size :data:`CHANGE` per image."""
    noise = tf.random.stateless_normal(tf.shape(x), seed=[seed, 7], dtype=x.dtype)
    axes = list(range(1, x.shape.rank))
    x_norm = tf.sqrt(tf.reduce_sum(tf.square(x), axis=axes, keepdims=True))
    noise_norm = tf.sqrt(tf.reduce_sum(tf.square(noise), axis=axes, keepdims=True))
    return x + CHANGE * x_norm / noise_norm * noise


def white_noise(shape: list[int], seed: int) -> tf.Tensor:
    return tf.random.stateless_normal(shape, seed=[seed, 1])


# -- timing ----------------------------------------------------------------------------------
def _block(out: Any) -> None:
    for t in tf.nest.flatten(out):
        if isinstance(t, tf.Tensor):
            t.numpy()


def timed(fn: Callable[..., Any], *args: Any, reps: int, warmup: int = 1) -> dict[str, Any]:
    """Median wall time of ``fn(*args)`` (results fetched to host) after ``warmup`` calls.

    Short calls are repeated more often: at least ``reps`` times and about one second in all
    (at most 100 times).
    """
    first = float("inf")
    for _ in range(warmup):
        start = time.perf_counter()
        _block(fn(*args))
        first = time.perf_counter() - start
    reps = max(reps, min(100, int(1.0 / max(first, 1e-4))))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        _block(fn(*args))
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "min_s": min(times), "reps": reps}


def timed_interleaved(
    calls: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]], *, reps: int
) -> dict[str, dict[str, Any]]:
    """Times several calls in turn, rep after rep, so that they share the machine's conditions.

    Returns each call's median time and, for every call but ``"model"``, ``ratio_to_model``:
    the median over repetitions of (its time / the model's time in the same repetition).
    """
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn, args in calls.values():  # warm-up
        _block(fn(*args))
    for _ in range(reps):
        for name, (fn, args) in calls.items():
            start = time.perf_counter()
            _block(fn(*args))
            times[name].append(time.perf_counter() - start)
    out = {
        name: {"median_s": statistics.median(t), "min_s": min(t), "reps": reps}
        for name, t in times.items()
    }
    for name in calls:
        if name != "model" and "model" in calls:
            ratios = [a / b for a, b in zip(times[name], times["model"])]
            out[name]["ratio_to_model"] = statistics.median(ratios)
    return out


def binder(smoother: Smoother, guide: tf.Tensor) -> Callable[[], tf.Tensor]:
    """A function that binds ``smoother`` to ``guide`` (all of the bind work, eagerly)."""
    return lambda: smoother.bind(guide).ones_response


def timed_eager(fn: Callable[[], Any], reps: int) -> dict[str, Any]:
    """Like :func:`timed` for one-off work (no warm-up beyond the first, discarded, call)."""
    return timed(fn, reps=reps, warmup=1)


def smoother_functions(bound: Any) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """``tf.function``s of forward+backward of ``sum(ŝ(z) * w)``: cold and warm-started."""

    @tf.function
    def cold(z: tf.Tensor, w: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            tape.watch(z)
            result = bound.smooth(z)
            loss = tf.reduce_sum(result.output * w)
        return result.output, tape.gradient(loss, z), result.iterations, result.residual_norm

    @tf.function
    def warm(z: tf.Tensor, w: tf.Tensor, x0: tf.Tensor, g0: tf.Tensor) -> tuple[tf.Tensor, ...]:
        with tf.GradientTape() as tape:
            tape.watch(z)
            result = bound.smooth(z, x0=x0, grad_x0=g0)
            loss = tf.reduce_sum(result.output * w)
        return result.output, tape.gradient(loss, z), result.iterations, result.residual_norm

    return cold, warm


def backward_stats(bound: Any, w: tf.Tensor, g0: tf.Tensor | None) -> tuple[int, float]:
    """Iterations and relative residual of the backward solve (not exposed by ``smooth``)."""
    upstream = bound.to_systems(w) / bound.ones_response
    start = None if g0 is None else bound.to_systems(g0)
    result = bound.solve_systems(upstream, start)
    return int(tf.reduce_max(result.iterations)), float(tf.reduce_max(result.residual_norm))


def model_function(model: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    """``tf.function`` of the gradient of the sum of logits w.r.t. the input."""

    @tf.function
    def forward_backward(x: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(model(x))
        return tape.gradient(loss, x)

    return forward_backward


def cg_function(operator: Any, max_iter: int, tol: float) -> Callable[..., Any]:
    """``tf.function`` ``(rhs, x0) -> CGResult`` for a fixed operator."""

    @tf.function
    def solve(rhs: tf.Tensor, x0: tf.Tensor | None) -> Any:
        return conjugate_gradient(operator, rhs, x0=x0, max_iter=max_iter, tol=tol)

    return solve


def c4_network() -> keras.Model:
    """The paper's MNIST C4 architecture (random weights: only its cost matters here)."""
    layers = keras.layers
    return keras.Sequential(
        [
            keras.Input([28, 28, 1]),
            layers.Conv2D(64, 8, strides=2, padding="same", activation="relu"),
            layers.Conv2D(128, 6, strides=2, padding="valid", activation="relu"),
            layers.Conv2D(128, 5, strides=1, padding="valid", activation="relu"),
            layers.Flatten(),
            layers.Dense(10),
        ],
        name="C4",
    )


def iteration_summary(iterations: tf.Tensor) -> dict[str, float]:
    its = np.asarray(iterations, dtype=float).ravel()
    return {"max": float(its.max()), "mean": float(its.mean())}


# -- sections --------------------------------------------------------------------------------
def reference_output(guide: tf.Tensor, alpha: float, z: tf.Tensor, **config: Any) -> tf.Tensor:
    """A tight :math:`\\hat{s}(z)`: red-black CG to relative residual 1e-6 (float32 floor)."""
    tight = Smoother(alpha, solver="rb_cg", tol=1e-6, max_iter=5000, **config)
    return tight.bind(guide)(z)


def relative_error(output: tf.Tensor, reference: tf.Tensor) -> float:
    """max over images of ``||output - reference|| / ||reference||``."""
    axes = list(range(1, output.shape.rank))
    diff = tf.sqrt(tf.reduce_sum(tf.square(output - reference), axis=axes))
    norm = tf.sqrt(tf.reduce_sum(tf.square(reference), axis=axes))
    return float(tf.reduce_max(diff / norm))


def smoothers_vs_model(
    guide: tf.Tensor,
    smoothers: dict[str, Smoother],
    model_fb: Callable[[tf.Tensor], tf.Tensor],
    model_input: tf.Tensor,
    *,
    reps: int,
    warm_max_iter: int,
    warm_tol: dict[str, float | None],
    seed: int,
    compare_no_xla: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Forward+backward of several smoothers (cold and warm) against a model on the same batch.

    All calls are timed in turn, repetition after repetition (:func:`timed_interleaved`), so the
    ratios share the machine's conditions. ``warm_tol[name] = None``: warm-start to the relative
    residual the cold run reached. Each cold output is compared with a tight solve
    (:func:`reference_output`).
    """
    out: dict[str, Any] = {"batch_shape": list(guide.shape), "solvers": {}}
    z = white_noise(list(guide.shape), seed)
    w = white_noise(list(guide.shape), seed + 1)
    z2, w2 = perturbed(z, seed + 2), perturbed(w, seed + 3)
    first = next(iter(smoothers.values()))
    graph_config = {k: first.get_config()[k] for k in ("kernel", "sigma", "connectivity")}
    reference = reference_output(guide, first.alpha, z, **graph_config)
    calls: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
        "model": (model_fb, (model_input,))
    }
    for name, smoother in smoothers.items():
        entry: dict[str, Any] = {"smoother": smoother.get_config()}
        start = time.perf_counter()
        bound = smoother.bind(guide)
        _block(bound.ones_response)
        entry["bind_s"] = time.perf_counter() - start
        entry["solver"] = bound.solver
        cold, _ = smoother_functions(bound)
        output, gradient, iterations, residual = cold(z, w)  # traces
        stats: dict[str, Any] = {"forward_iterations": iteration_summary(iterations)}
        stats["forward_residual_max"] = float(tf.reduce_max(residual))
        stats["relative_error"] = relative_error(output, reference)
        its, res = backward_stats(bound, w, None)
        stats["backward_iterations_max"], stats["backward_residual_max"] = its, res
        entry["cold"] = stats
        calls[f"{name}/cold"] = (cold, (z, w))
        if bound.solver != "exact":
            # Warm start: the next attack iteration sees z and the upstream gradient moved by 5 %.
            tol = warm_tol.get(name)
            tol = stats["forward_residual_max"] if tol is None else tol
            warm_smoother = Smoother(
                **{**smoother.get_config(), "max_iter": warm_max_iter, "tol": max(tol, 1e-7)}
            )
            warm_bound = warm_smoother.bind(guide)
            _, warm = smoother_functions(warm_bound)
            _, _, iterations, residual = warm(z2, w2, output, gradient)
            warm_stats: dict[str, Any] = {"tol": tol}
            warm_stats["forward_iterations"] = iteration_summary(iterations)
            warm_stats["forward_residual_max"] = float(tf.reduce_max(residual))
            its, res = backward_stats(warm_bound, w2, gradient)
            warm_stats["backward_iterations_max"], warm_stats["backward_residual_max"] = its, res
            entry["warm"] = warm_stats
            calls[f"{name}/warm"] = (warm, (z2, w2, output, gradient))
        if name in compare_no_xla:
            plain = Smoother(**{**smoother.get_config(), "jit_compile": False}).bind(guide)
            calls[f"{name}/cold_no_xla"] = (smoother_functions(plain)[0], (z, w))
            entry["cold_no_xla"] = {}
        out["solvers"][name] = entry
    timings = timed_interleaved(calls, reps=reps)
    out["model"] = timings["model"]
    for name, entry in out["solvers"].items():
        for mode in ("cold", "warm", "cold_no_xla"):
            if mode in entry:
                entry[mode] = {**timings[f"{name}/{mode}"], **entry[mode]}
    return out


def section_a(batch: int, reps: int, *, compare_no_xla: bool = True) -> dict[str, Any]:
    guide = photo_batch(299, batch)
    inception = keras.applications.InceptionV3(weights=None, classifier_activation=None)
    model_fb = model_function(lambda x: inception(x * 2.0 - 1.0, training=False))
    # The paper's setting: 50 CG iterations. The other solvers get the residual it reaches as
    # their tolerance, so that their accuracy is no worse.
    paper = Smoother(0.997, solver="cg", max_iter=50, tol=0.0)
    bound = paper.bind(guide)
    rhs = bound.to_systems(white_noise(list(guide.shape), 10))
    target = float(tf.reduce_max(bound.solve_systems(rhs).residual_norm))
    smoothers = {"cg": paper}
    for solver in ("rb_cg", "rb_chebyshev"):
        smoothers[solver] = Smoother(0.997, solver=solver, max_iter=500, tol=target)
    result = smoothers_vs_model(
        guide,
        smoothers,
        model_fb,
        guide,
        reps=reps,
        warm_max_iter=500,
        warm_tol={name: target for name in smoothers},
        seed=10,
        compare_no_xla=("cg",) if compare_no_xla else (),
    )
    result["target_residual"] = target
    result["auto"] = Smoother(0.997).resolved_solver
    result["model_name"] = "keras.applications.InceptionV3(weights=None)"
    return result


def section_b(batch: int, reps: int, *, big_batch: int) -> dict[str, Any]:
    digits, source = digit_batch(batch)
    c4 = c4_network()
    model_fb = model_function(lambda x: c4(x, training=False))
    out: dict[str, Any] = {"data": source, "model_name": "C4 (paper's MNIST network)"}
    smoothers = {
        solver: Smoother(0.95, solver=solver, max_iter=500, tol=1e-4)
        for solver in ("cg", "rb_cg", "rb_chebyshev")
    }
    smoothers["exact"] = Smoother(0.95, solver="exact")
    out.update(
        smoothers_vs_model(
            digits,
            smoothers,
            model_fb,
            digits,
            reps=10 * reps,
            warm_max_iter=500,
            warm_tol={name: 1e-4 for name in smoothers},
            seed=20,
        )
    )
    out["auto"] = Smoother(0.95).resolved_solver
    # A large batch: what "auto" runs, and what the dense inverse would need.
    many = tf.concat([digits] * (big_batch // batch), axis=0)
    bound = Smoother(0.95, max_iter=500, tol=1e-4).bind(many)
    cold, _ = smoother_functions(bound)
    z = white_noise(list(many.shape), 22)
    w = white_noise(list(many.shape), 23)
    timings = timed_interleaved(
        {
            "model": (model_function(lambda x: c4(x, training=False)), (many,)),
            "auto": (cold, (z, w)),
        },
        reps=max(2, reps // 2),
    )
    n = 28 * 28
    out["big_batch"] = {
        "batch": int(many.shape[0]),
        "model": timings["model"],
        "auto": timings["auto"],
        "exact_inverse_bytes": int(many.shape[0]) * n * n * 4,
    }
    return out


def operator_costs(guide: tf.Tensor, alpha: float, reps: int, seed: int) -> dict[str, Any]:
    graph = ImageGraph(guide)
    rhs_shape = [guide.shape[0], guide.shape[1] * guide.shape[2], guide.shape[3]]
    rhs = white_noise(rhs_shape, seed)
    out: dict[str, Any] = {"batch_shape": list(guide.shape), "alpha": alpha}
    operators = {}
    for name, cls in (("stencil", StencilLaplacian), ("sparse", SparseLaplacian)):
        start = time.perf_counter()
        operators[name] = cls(graph, alpha)
        out[name] = {"build_s": time.perf_counter() - start}
    matvecs = timed_interleaved(
        {name: (tf.function(op.matmul), (rhs,)) for name, op in operators.items()},
        reps=max(reps, 5) * 4,
    )
    solves = timed_interleaved(
        {name: (cg_function(op, 50, 0.0), (rhs, None)) for name, op in operators.items()},
        reps=reps,
    )
    for name in operators:
        out[name].update(matvec=matvecs[name], cg50=solves[name])
    stencil = operators["stencil"]
    if hasattr(stencil, "solve"):  # XLA-compiled CG of the stencil operator

        def xla_solve(b: tf.Tensor) -> Any:
            return stencil.solve(b, max_iter=50, tol=0.0)

        out["stencil"]["cg50_xla"] = timed(xla_solve, rhs, reps=reps)
    out["sparse_over_stencil_matvec"] = (
        out["sparse"]["matvec"]["median_s"] / out["stencil"]["matvec"]["median_s"]
    )
    out["sparse_over_stencil_cg50"] = (
        out["sparse"]["cg50"]["median_s"] / out["stencil"]["cg50"]["median_s"]
    )
    return out


def section_c(batch_photo: int, batch_digit: int, reps: int) -> dict[str, Any]:
    out: dict[str, Any] = {
        "photos": operator_costs(photo_batch(299, batch_photo), 0.997, reps, seed=30),
    }
    digits, _ = digit_batch(batch_digit)
    out["digits"] = operator_costs(digits, 0.95, reps, seed=31)
    exact = Smoother(0.95, solver="exact")
    cg = Smoother(0.95, solver="cg", max_iter=500, tol=1e-4)
    chebyshev = Smoother(0.95, solver="rb_chebyshev", max_iter=500, tol=1e-4)
    z = white_noise(list(digits.shape), 32)
    for name, smoother in (("exact", exact), ("cg", cg), ("rb_chebyshev", chebyshev)):
        out[f"{name}_bind"] = timed_eager(binder(smoother, digits), reps)
        bound = smoother.bind(digits)
        out[f"{name}_apply"] = timed(tf.function(bound.__call__), z, reps=max(reps, 5))
    return out


def section_d(batch: int, max_iter: int) -> dict[str, Any]:
    guide = photo_batch(299, batch)
    graph = ImageGraph(guide)
    rhs = white_noise([batch, 299 * 299, 3], 40)
    rhs2 = perturbed(rhs, 41)
    out: dict[str, Any] = {"batch_shape": list(guide.shape), "max_iter": max_iter, "rows": []}

    for alpha in (0.95, 0.997):
        operator = StencilLaplacian(graph, alpha)
        zeros = tf.zeros_like(rhs)
        for tol in (1e-2, 1e-4):
            solve = cg_function(operator, max_iter, tol)
            cold = solve(rhs, zeros)
            warm = solve(rhs2, cold.x)
            row: dict[str, Any] = {"alpha": alpha, "tol": tol}
            for name, result in (("cold", cold), ("warm", warm)):
                row[name] = iteration_summary(result.iterations)
                row[name]["residual_max"] = float(tf.reduce_max(result.residual_norm))
            for method in ("cg", "chebyshev"):
                red_black = RedBlackLaplacian(graph, alpha)
                cold = red_black.solve(rhs, method=method, max_iter=max_iter, tol=tol)
                warm = red_black.solve(rhs2, x0=cold.x, method=method, max_iter=max_iter, tol=tol)
                for name, result in (("cold", cold), ("warm", warm)):
                    row[f"rb_{method}_{name}"] = iteration_summary(result.iterations)
                    row[f"rb_{method}_{name}"]["residual_max"] = float(
                        tf.reduce_max(result.residual_norm)
                    )
            out["rows"].append(row)
    # Residual reached by the paper's 50 cold iterations at alpha = 0.997.
    fifty = conjugate_gradient(StencilLaplacian(graph, 0.997), rhs, max_iter=50, tol=0.0)
    out["alpha_0.997_residual_after_50"] = float(tf.reduce_max(fifty.residual_norm))
    return out


# -- memory (one subprocess per setting) -----------------------------------------------------
def memory_worker(max_iter: int, mode: str, batch: int, size: int) -> dict[str, Any]:
    """Runs in a fresh process: peak memory of forward+backward of the smoother.

    Ops run one at a time (inter-op parallelism 1): with parallel scheduling the peak varies from
    run to run by a factor of up to ~3, whatever ``max_iter``.
    """
    tf.config.threading.set_inter_op_parallelism_threads(1)
    guide = photo_batch(size, batch)
    z = white_noise(list(guide.shape), 50)
    w = white_noise(list(guide.shape), 51)
    gpus = tf.config.list_physical_devices("GPU")
    smoother = Smoother(0.997, solver="cg", max_iter=max_iter, tol=0.0)
    bound = smoother.bind(guide)
    if mode == "custom_gradient":
        fb, _ = smoother_functions(bound)
    else:  # differentiate through the CG loop (what the custom gradient avoids)

        @tf.function
        def fb(z: tf.Tensor, w: tf.Tensor) -> tf.Tensor:
            with tf.GradientTape() as tape:
                tape.watch(z)
                systems = bound.to_systems(z)
                x = conjugate_gradient(bound.operator, systems, max_iter=max_iter, tol=0.0).x
                loss = tf.reduce_sum(bound.from_systems(x / bound.ones_response, 3) * w)
            return tape.gradient(loss, z)

    _block([z, w, bound.ones_response])
    _block(fb(z, w))  # trace and run once: tracing is not the operation's memory
    device = "GPU:0" if gpus else "CPU:0"
    tf.config.experimental.reset_memory_stats(device)
    base = tf.config.experimental.get_memory_info(device)["current"]
    if base > 0:  # allocator statistics (GPU; CPU with TF_CPU_ALLOCATOR_USE_BFC=true)
        for _ in range(2):
            _block(fb(z, w))
        peak = tf.config.experimental.get_memory_info(device)["peak"]
        return {
            "method": f"TF allocator statistics: get_memory_info('{device}') peak during two "
            "calls minus the bytes in use before them (inputs, graph, s(1))"
            + ("" if gpus else "; CPU via TF_CPU_ALLOCATOR_USE_BFC=true")
            + "; inter-op parallelism 1",
            "peak_increase_mb": (peak - base) / 2**20,
        }
    import psutil  # no allocator statistics: sample the resident set size instead

    process = psutil.Process()
    base = process.memory_info().rss
    peak_rss = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_rss[0] = max(peak_rss[0], process.memory_info().rss)
            time.sleep(0.002)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    for _ in range(2):
        _block(fb(z, w))
    done.set()
    thread.join()
    return {
        "method": "process RSS sampled every 2 ms (psutil) during two calls, minus the RSS "
        "before them (imprecise: malloc keeps freed memory)",
        "peak_increase_mb": (peak_rss[0] - base) / 2**20,
    }


def section_e(batch: int, settings: list[tuple[int, str]]) -> dict[str, Any]:
    rows = []
    for max_iter, mode in settings:
        command = [
            sys.executable,
            str(pathlib.Path(__file__).resolve()),
            "--memory-worker",
            f"{max_iter},{mode},{batch},299",
        ]
        env = {**os.environ, "TF_CPU_ALLOCATOR_USE_BFC": "true"}  # CPU allocator statistics
        done = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            rows.append({"max_iter": max_iter, "mode": mode, "error": done.stderr[-2000:]})
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append({"max_iter": max_iter, "mode": mode, **result})
        print(f"  memory max_iter={max_iter} {mode}: {result['peak_increase_mb']:.0f} MB")
    return {"batch_shape": [batch, 299, 299, 3], "rows": rows}


# -- report ----------------------------------------------------------------------------------
def machine_facts() -> dict[str, Any]:
    gpus = tf.config.list_physical_devices("GPU")
    details = [
        tf.config.experimental.get_device_details(g).get("device_name", g.name) for g in gpus
    ]
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "tfsmooth": tfsmooth.__version__,
        "device": ", ".join(details) if details else "CPU only",
        "load_average_1min_at_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def table_rows(res: dict[str, Any]) -> list[tuple[str, str, str]]:
    """``(quantity, value, note)`` rows summarizing a result dictionary."""
    rows: list[tuple[str, str, str]] = []

    def ms(entry: dict[str, Any]) -> str:
        return f"{1000 * entry['median_s']:.1f} ms"

    def solver_rows(part: dict[str, Any], prefix: str, model: str) -> None:
        for name, entry in part["solvers"].items():
            cold = entry["cold"]
            config = entry["smoother"]
            if entry["solver"] == "exact":
                accuracy = "dense inverse"
            elif config["tol"] == 0:
                accuracy = f"{config['max_iter']} it"
            else:
                accuracy = f"tol {config['tol']:.2e}"
            auto = " (= auto)" if entry["solver"] == part.get("auto") else ""
            rows.append(
                (
                    f"{prefix} {name}{auto} fwd+bwd, cold, {accuracy}",
                    f"{ms(cold)} ({cold['ratio_to_model']:.3f}x {model})",
                    f"{cold['forward_iterations']['max']:.0f} fwd / "
                    f"{cold['backward_iterations_max']} bwd it, residual "
                    f"{cold['forward_residual_max']:.2e}, rel. error of ŝ(z) "
                    f"{cold['relative_error']:.2e}; bind {1000 * entry['bind_s']:.0f} ms",
                )
            )
            if "cold_no_xla" in entry:
                plain = entry["cold_no_xla"]
                rows.append(
                    (
                        f"{prefix} {name}, same, jit_compile=False",
                        f"{ms(plain)} ({plain['ratio_to_model']:.3f}x {model})",
                        "op-by-op execution, for reference",
                    )
                )
            if "warm" in entry:
                warm = entry["warm"]
                rows.append(
                    (
                        f"{prefix} {name}{auto} fwd+bwd, warm start after 5% change",
                        f"{ms(warm)} ({warm['ratio_to_model']:.3f}x {model})",
                        f"{warm['forward_iterations']['max']:.0f} fwd / "
                        f"{warm['backward_iterations_max']} bwd it to {warm['tol']:.2e}",
                    )
                )

    a = res.get("a")
    if a:
        shape = "x".join(map(str, a["batch_shape"]))
        rows.append(
            (f"a. InceptionV3 fwd+bwd, {shape}", ms(a["model"]), "gradient of sum of logits")
        )
        solver_rows(a, "a.", "InceptionV3")
    b = res.get("b")
    if b:
        shape = "x".join(map(str, b["batch_shape"]))
        rows.append((f"b. C4 fwd+bwd, {shape}", ms(b["model"]), b["data"]))
        solver_rows(b, "b.", "C4")
        big = b.get("big_batch")
        if big:
            rows.append(
                (
                    f"b. {big['batch']} digits: C4 fwd+bwd / auto smoother fwd+bwd",
                    f"{ms(big['model'])} / {ms(big['auto'])} "
                    f"({big['auto']['ratio_to_model']:.3f}x C4)",
                    f"the exact solver's dense inverses would take "
                    f"{big['exact_inverse_bytes'] / 1e9:.1f} GB",
                )
            )
    c = res.get("c")
    if c:
        for key, label in (("photos", "299x299x3"), ("digits", "28x28x1")):
            part = c[key]
            shape = "x".join(map(str, part["batch_shape"]))
            for op in ("stencil", "sparse"):
                rows.append(
                    (
                        f"c. {op} matvec / CG 50 it (no XLA), {shape}",
                        f"{ms(part[op]['matvec'])} / {ms(part[op]['cg50'])}",
                        f"operator build {1000 * part[op]['build_s']:.0f} ms",
                    )
                )
            if "cg50_xla" in part["stencil"]:
                rows.append(
                    (
                        f"c. stencil CG 50 it with XLA (StencilLaplacian.solve), {shape}",
                        ms(part["stencil"]["cg50_xla"]),
                        "jit_compile=True, the smoother's default",
                    )
                )
            rows.append(
                (
                    f"c. sparse / stencil, {label}",
                    f"{part['sparse_over_stencil_matvec']:.2f}x / "
                    f"{part['sparse_over_stencil_cg50']:.2f}x",
                    "matvec / CG",
                )
            )
        rows.append(
            (
                "c. exact solver, 28x28: bind / apply",
                f"{ms(c['exact_bind'])} / {ms(c['exact_apply'])}",
                f"CG tol 1e-4: bind {ms(c['cg_bind'])} / apply {ms(c['cg_apply'])}"
                + (
                    f"; rb_chebyshev tol 1e-4: bind {ms(c['rb_chebyshev_bind'])} / apply "
                    f"{ms(c['rb_chebyshev_apply'])}"
                    if "rb_chebyshev_bind" in c
                    else ""
                ),
            )
        )
    d = res.get("d")
    if d:
        shape = "x".join(map(str, d["batch_shape"]))
        for row in d["rows"]:
            value = f"cold {row['cold']['max']:.0f} / warm {row['warm']['max']:.0f}"
            for method in ("cg", "chebyshev"):
                if f"rb_{method}_cold" in row:
                    value += (
                        f"; rb_{method} {row[f'rb_{method}_cold']['max']:.0f} / "
                        f"{row[f'rb_{method}_warm']['max']:.0f}"
                    )
            rows.append(
                (
                    f"d. iterations, alpha={row['alpha']}, tol={row['tol']:.0e}, {shape}",
                    value,
                    "CG on the full system, then on the red-black reduced one; max over "
                    "systems; warm: 5% change of the rhs, x0 = previous solution",
                )
            )
        rows.append(
            (
                "d. relative residual after 50 cold iterations, alpha=0.997",
                f"{d['alpha_0.997_residual_after_50']:.2e}",
                "max over systems",
            )
        )
    e = res.get("e")
    if e:
        shape = "x".join(map(str, e["batch_shape"]))
        for row in e["rows"]:
            value = "error" if "error" in row else f"{row['peak_increase_mb']:.0f} MB"
            rows.append(
                (f"e. peak memory fwd+bwd, max_iter={row['max_iter']}, {shape}", value, row["mode"])
            )
    return rows


def goals(res: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "a" in res:
        auto = res["a"]["solvers"][res["a"]["auto"]]
        cold, warm = auto["cold"]["ratio_to_model"], auto["warm"]["ratio_to_model"]
        out["auto_cold_over_inception_le_0.25"] = {"measured": cold, "met": cold <= 0.25}
        out["auto_warm_over_inception_le_0.1"] = {"measured": warm, "met": warm <= 0.1}
    if "e" in res:
        custom = [
            r["peak_increase_mb"]
            for r in res["e"]["rows"]
            if r["mode"] == "custom_gradient" and "peak_increase_mb" in r
        ]
        if len(custom) >= 2:
            spread = (max(custom) - min(custom)) / max(max(custom), 1e-9)
            out["memory_independent_of_max_iter"] = {
                "measured_relative_spread": spread,
                "met": spread <= 0.25,
            }
    return out


def machine_line(res: dict[str, Any]) -> str:
    facts = res["machine"]
    load = facts.get("load_average_1min_at_start")
    return (
        f"{facts['device']}, {facts['cpu_count']} CPUs, TensorFlow {facts['tensorflow']}, "
        f"Keras {facts['keras']}, {facts['date']}"
        + (f", 1-min load average {load:.1f} at start" if load is not None else "")
        + (" (quick mode)" if res["quick"] else "")
    )


def goal_lines(res: dict[str, Any]) -> list[str]:
    lines = []
    for name, entry in res.get("goals", {}).items():
        value = entry.get("measured", entry.get("measured_relative_spread"))
        lines.append(f"{name}: measured {value:.3g}, {'met' if entry['met'] else 'NOT met'}")
    return lines


def memory_method(res: dict[str, Any]) -> str | None:
    rows = [r for r in res.get("e", {}).get("rows", []) if "method" in r]
    return rows[0]["method"] if rows else None


def render_markdown(res: dict[str, Any]) -> str:
    lines = [
        "# Smoother benchmark",
        "",
        f"Machine: {machine_line(res)}. Times are medians of repeated runs.",
        "",
        "| quantity | value | note |",
        "|---|---|---|",
    ]
    lines += [f"| {q} | {val} | {note} |" for q, val, note in table_rows(res)]
    if memory_method(res):
        lines += ["", f"Memory (section e): {memory_method(res)}."]
    lines += ["", "Goals (computed from the measurements):", ""]
    lines += [f"- {line}" for line in goal_lines(res)]
    return "\n".join(lines) + "\n"


def render_rst(res: dict[str, Any]) -> str:
    lines = [
        f"Measured on: {machine_line(res)}. Times are medians of repeated runs.",
        "",
        ".. list-table::",
        "   :header-rows: 1",
        "   :widths: 40 30 30",
        "",
        "   * - Quantity",
        "     - Value",
        "     - Note",
    ]
    for quantity, value, note in table_rows(res):
        lines += [f"   * - {quantity}", f"     - {value}", f"     - {note}"]
    if memory_method(res):
        lines += ["", f"Memory (section e): {memory_method(res)}."]
    lines += ["", "Goals (computed from the measurements):", ""]
    lines += [f"- {line}" for line in goal_lines(res)]
    return "\n".join(lines) + "\n"


def write_outputs(res: dict[str, Any], out: pathlib.Path, docs_table: pathlib.Path | None) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    out.with_suffix(".md").write_text(render_markdown(res))
    print(f"wrote {out} and {out.with_suffix('.md')}")
    if docs_table is not None:
        docs_table.write_text(render_rst(res))
        print(f"wrote {docs_table}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small batches, few repetitions")
    parser.add_argument("--out", type=pathlib.Path, default=None, help="JSON output path")
    parser.add_argument(
        "--docs-table",
        type=pathlib.Path,
        default=None,
        help="reST table for the docs (default: docs/benchmarks_table.rst on a full run)",
    )
    parser.add_argument("--sections", default="abcde", help="which sections to run, e.g. 'ad'")
    parser.add_argument("--render-only", type=pathlib.Path, help="re-render tables from a JSON")
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    tf.get_logger().setLevel("ERROR")  # retracing notices of the many one-off tf.functions
    if args.memory_worker:
        max_iter, mode, batch, size = args.memory_worker.split(",")
        print(json.dumps(memory_worker(int(max_iter), mode, int(batch), int(size))))
        return 0

    results_dir = ROOT / "benchmarks" / "results"
    out = args.out or results_dir / ("smoothing_quick.json" if args.quick else "smoothing.json")
    default_table = ROOT / "docs" / "benchmarks_table.rst"
    if args.render_only:
        saved = json.loads(args.render_only.read_text())
        table = args.docs_table or (None if saved["quick"] else default_table)
        write_outputs(saved, args.render_only, table)
        return 0

    big, small, reps = (2, 20, 2) if args.quick else (8, 100, 5)
    res: dict[str, Any] = {"machine": machine_facts(), "quick": args.quick, "reps": reps}
    print("machine:", res["machine"])
    started = time.perf_counter()
    sections: dict[str, Callable[[], dict[str, Any]]] = {
        "a": lambda: section_a(big, reps, compare_no_xla=not args.quick),
        "b": lambda: section_b(small, reps, big_batch=20 * small),
        "c": lambda: section_c(big, small, reps),
        "d": lambda: section_d(big, max_iter=1000),
        "e": lambda: section_e(
            big,
            [(10, "custom_gradient"), (50, "custom_gradient")]
            if args.quick
            else [(10, "custom_gradient"), (50, "custom_gradient"), (200, "custom_gradient")]
            + [(10, "autodiff_through_cg"), (50, "autodiff_through_cg")],
        ),
    }
    for key in args.sections:
        t0 = time.perf_counter()
        print(f"section {key} ...", flush=True)
        res[key] = sections[key]()
        print(f"section {key} done in {time.perf_counter() - t0:.0f} s", flush=True)
    res["goals"] = goals(res)
    res["total_s"] = time.perf_counter() - started
    write_outputs(res, out, args.docs_table or (None if args.quick else default_table))
    print(render_markdown(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
