"""Exports the XLA computations of ``smoothing.py``'s comparisons, to time them without TensorFlow.

Usage::

    python benchmarks/xla_export.py                       # -> benchmarks/xla_cases/ (git-ignored)
    python benchmarks/xla_export.py --batches 8 --out /tmp/cases

Why: the GPU machine this workplace lends has JAX (with XLA and CUDA) but no TensorFlow, and
cannot receive it (nothing can be fetched there; the TensorFlow wheel alone is 573 MB against a
64 MiB transfer). tfsmooth's smoother and the networks it is compared with compile to XLA
(``jit_compile=True``), and an XLA computation can be run by JAX's XLA. So this script, run
where TensorFlow is, writes each forward+backward as an HLO module plus the facts needed to feed
it, and ``xla_replay.py`` (JAX only) compiles and times them on whatever backend JAX has.

Cases, each at every ``--batches`` size (same photos and settings as ``smoothing.py``, a):

- ``inception_v3_299``: ``keras.applications.InceptionV3(weights=None)`` forward+backward (the
  gradient of the sum of logits w.r.t. the input), XLA-compiled;
- ``cg50_299``: the paper's smoother, ``Smoother(0.997, solver="cg", max_iter=50, tol=0)``,
  forward+backward of ``sum(ŝ(z) * w)``, cold;
- ``auto_299``: the default solver (red-black Chebyshev) at the accuracy of 50 CG iterations
  (``tol`` = the residual they reach), cold;
- ``efficientnet_lite0_224``: EfficientNet-Lite0 forward+backward (its real weights where the
  ``imagenet`` extra is installed; the replay draws them anew anyway);
- ``photo_preset_224``: the photo preset's sC&W smoother (``auto``, ``grad_tol=1e-2``), cold;
- ``kernels``: ``kernel_variants.py``'s kernel (the cold red-black Chebyshev solve alone) to
  tol 1e-2 with float32 and with float16 vectors, and 8 steps as a ``while_loop`` and unrolled.

Every cost here is independent of the values: the cold solves run a fixed number of steps (the
closed-form Chebyshev count, or exactly 50 CG iterations), the networks are dense. So the replay
feeds random right-hand sides, and network parameters drawn with the mean and standard deviation
of the exported ones (per array, clipped to its range, so that a variance stays positive). The
smoother's own arrays (stencil weights, ``s(1)``) come from the photos, in float16 to halve the
transfer, for the batch of 8; larger batches repeat them.

Files per case: ``<case>_b<B>.hlo.pb`` (the serialized HLO module of the whole
forward+backward) and ``<case>_b<B>.json`` (its parameters in order: shape, dtype, and how to
make each one); ``smoother_<name>.npz`` holds the smoother arrays.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import sys
from collections.abc import Callable
from typing import Any, cast

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from smoothing import (  # noqa: E402
    machine_facts,
    model_function,
    photo_batch,
    smoother_functions,
    white_noise,
)

from tfsmooth.graphs import ImageGraph  # noqa: E402
from tfsmooth.smoothing import Smoother  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
BASE_BATCH = 8
CASES = ("inception", "cg50", "auto", "kernels", "efficientnet", "photo")

_SHAPE = re.compile(r"(f16|bf16|f32|f64|s32|s64|pred)\[([0-9,]*)\]")
_HLO_DTYPES = {
    "f16": "float16",
    "bf16": "bfloat16",
    "f32": "float32",
    "f64": "float64",
    "s32": "int32",
    "s64": "int64",
    "pred": "bool",
}


def entry_parameters(hlo_text: str) -> list[tuple[list[int], str]]:
    """``(shape, dtype)`` of the entry computation's parameters, from the HLO text header."""
    match = re.search(r"entry_computation_layout=\{\((.*?)\)->", hlo_text)
    if match is None:
        raise ValueError("no entry_computation_layout in the HLO text")
    return [
        ([int(d) for d in dims.split(",") if d], _HLO_DTYPES[kind])
        for kind, dims in _SHAPE.findall(match.group(1))
    ]


def export_case(
    fn: Callable[..., Any],
    args: list[tf.Tensor],
    arg_specs: list[dict[str, Any]],
    capture_spec: Callable[[int, tf.Tensor], dict[str, Any]],
    out: pathlib.Path,
    name: str,
) -> dict[str, Any]:
    """Writes ``fn``'s HLO and the recipe of its parameters (explicit args, then captures)."""
    compiled = tf.function(fn, jit_compile=True)
    concrete = compiled.get_concrete_function(*args)
    captures = list(concrete.captured_inputs)
    ir = compiled.experimental_get_compiler_ir(*args)
    parameters = entry_parameters(ir(stage="hlo"))
    if len(parameters) != len(args) + len(captures):
        raise RuntimeError(
            f"{name}: the HLO has {len(parameters)} parameters, expected {len(args)} arguments "
            f"+ {len(captures)} captures"
        )
    specs = list(arg_specs) + [capture_spec(i, c) for i, c in enumerate(captures)]
    for spec, (shape, dtype) in zip(specs, parameters):
        spec["shape"], spec["dtype"] = shape, dtype
    (out / f"{name}.hlo.pb").write_bytes(ir(stage="hlo_serialized"))
    outputs = [list(t.shape) for t in tf.nest.flatten(concrete.structured_outputs)]
    record = {"name": name, "parameters": specs, "outputs": outputs}
    (out / f"{name}.json").write_text(json.dumps(record, indent=1) + "\n")
    return record


def model_fb(model: Callable[[tf.Tensor], tf.Tensor]) -> Callable[[tf.Tensor], tf.Tensor]:
    """The gradient of the sum of logits w.r.t. the input: ``smoothing.py``'s own function."""
    function: Any = model_function(model)
    return function.python_function


def smoother_fb(bound: Any) -> Callable[..., tuple[tf.Tensor, ...]]:
    """Cold forward+backward of ``sum(ŝ(z) * w)``: ``smoothing.py``'s own function (output,
    gradient, iterations, residual)."""
    cold: Any = smoother_functions(bound)[0]
    return cold.python_function


def _no_capture(index: int, capture: tf.Tensor) -> dict[str, Any]:
    raise RuntimeError(f"the kernel captured tensor {index} {capture.shape}: pass it as argument")


def variable_spec(variables: list[tf.Variable]) -> Callable[[int, tf.Tensor], dict[str, Any]]:
    """Captures of a network: its variables, drawn anew from each one's mean and std."""
    by_handle = {id(v.handle): v for v in variables}

    def spec(index: int, capture: tf.Tensor) -> dict[str, Any]:
        variable = by_handle.get(id(capture))
        value = (variable if variable is not None else capture).numpy()
        return {
            "make": "normal",
            "name": getattr(variable, "path", variable.name)
            if variable is not None
            else f"capture_{index}",
            "mean": float(np.mean(value)),
            "std": float(np.std(value)),
            "low": float(np.min(value)),
            "high": float(np.max(value)),
        }

    return spec


def export_smoother(
    name: str,
    smoother: Smoother,
    guide: tf.Tensor,
    batches: list[int],
    out: pathlib.Path,
) -> list[dict[str, Any]]:
    """The smoother's forward+backward at each batch; its arrays from the base batch."""
    size = int(guide.shape[1])
    bounds = {b: smoother.bind(tf.tile(guide, [b // BASE_BATCH, 1, 1, 1])) for b in batches}
    base_fn = smoother_fb(bounds[BASE_BATCH])
    shape = [BASE_BATCH, size, size, 3]
    base = tf.function(base_fn, jit_compile=True).get_concrete_function(
        tf.TensorSpec(shape), tf.TensorSpec(shape)
    )
    arrays = {f"capture_{i}": c.numpy() for i, c in enumerate(base.captured_inputs)}
    np.savez(out / f"smoother_{name}.npz", **{k: v.astype(np.float16) for k, v in arrays.items()})
    records = []
    for batch in batches:
        fn = smoother_fb(bounds[batch])
        z = white_noise([batch, size, size, 3], 10)
        w = white_noise([batch, size, size, 3], 11)

        def capture_spec(index: int, capture: tf.Tensor, batch: int = batch) -> dict[str, Any]:
            base_shape = arrays[f"capture_{index}"].shape
            axes = [i for i, (a, b) in enumerate(zip(base_shape, capture.shape)) if a != b]
            if len(axes) > 1 or (batch == BASE_BATCH) != (not axes):
                raise RuntimeError(f"{name}: capture {index} does not scale with the batch")
            spec: dict[str, Any] = {
                "make": "array",
                "file": f"smoother_{name}.npz",
                "key": f"capture_{index}",
            }
            if axes:
                spec["tile_axis"], spec["tile"] = axes[0], batch // BASE_BATCH
            return spec

        records.append(
            export_case(
                fn,
                [z, w],
                [
                    {"make": "normal", "name": "z", "mean": 0.0, "std": 1.0},
                    {"make": "normal", "name": "w", "mean": 0.0, "std": 1.0},
                ],
                capture_spec,
                out,
                f"{name}_b{batch}",
            )
        )
    return records


def export_kernels(guide: tf.Tensor, batches: list[int], out: pathlib.Path) -> list[dict[str, Any]]:
    """``kernel_variants.py``'s questions for the replay: the cold red-black Chebyshev solve
    to tol 1e-2 with float32 and with float16 vectors, and 8 steps as a loop and unrolled.

    Their arrays are the default smoother's (``smoother_auto_299.npz``: the red, black and
    Schur weights are its first three captures), so ``auto`` must be exported too."""
    from kernel_variants import ALPHA, chebyshev_kernel

    from tfsmooth.smoothing import RedBlackLaplacian

    size = int(guide.shape[1])
    rb = RedBlackLaplacian(ImageGraph(guide), ALPHA)
    steps = rb.cold_steps(1e-2, 1000)
    variants = {
        f"rbcheb_f32_{steps}": (steps, "float32", False),
        f"rbcheb_f16vec_{steps}": (steps, "float16", False),
        "rbcheb_while_8": (8, "float32", False),
        "rbcheb_unrolled_8": (8, "float32", True),
    }
    records = []
    for batch in batches:
        rhs = white_noise([batch, size * size, 3], 12)
        weights = [
            tf.tile(w, [1, batch // BASE_BATCH, 1, 1, 1])
            for w in (rb.red_weights, rb.black_weights, rb.schur_weights)
        ]
        for name, (n_steps, vectors, unroll) in variants.items():
            kernel = chebyshev_kernel(size, size, n_steps, vectors, "float32", unroll=unroll)
            specs: list[dict[str, Any]] = []
            for i in range(3):
                spec: dict[str, Any] = {
                    "make": "array",
                    "file": "smoother_auto_299.npz",
                    "key": f"capture_{i}",
                }
                if batch != BASE_BATCH:
                    spec["tile_axis"], spec["tile"] = 1, batch // BASE_BATCH
                specs.append(spec)
            specs.append({"make": "normal", "name": "rhs", "mean": 0.0, "std": 1.0})
            records.append(
                export_case(
                    kernel.python_function,
                    [*weights, rhs],
                    specs,
                    _no_capture,
                    out,
                    f"{name}_b{batch}",
                )
            )
    return records


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="8,32", help="batch sizes, multiples of 8")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "benchmarks" / "xla_cases")
    parser.add_argument("--cases", default=",".join(CASES), help="some of " + ",".join(CASES))
    args = parser.parse_args(argv)
    batches = sorted({int(b) for b in args.batches.split(",")} | {BASE_BATCH})
    if any(b % BASE_BATCH for b in batches):
        raise SystemExit(f"--batches must be multiples of {BASE_BATCH}, got {args.batches!r}")
    cases = set(args.cases.split(","))
    unknown = cases - set(CASES)
    if unknown:
        raise SystemExit(f"unknown cases {sorted(unknown)}")
    tf.get_logger().setLevel("ERROR")
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    manifest: dict[str, Any] = {"machine": machine_facts(), "batches": batches, "cases": []}
    guide_299 = photo_batch(299, BASE_BATCH)
    if "inception" in cases:
        net = keras.applications.InceptionV3(weights=None, classifier_activation=None)
        fn = model_fb(lambda x: net(x * 2.0 - 1.0, training=False))
        for batch in batches:
            x = tf.random.uniform([batch, 299, 299, 3], seed=1)
            spec = {"make": "uniform", "name": "images", "low": 0.0, "high": 1.0}
            manifest["cases"].append(
                export_case(
                    fn, [x], [spec], variable_spec(net.variables), out, f"inception_v3_299_b{batch}"
                )
            )
    if cases & {"cg50", "auto"}:
        paper = Smoother(0.997, solver="cg", max_iter=50, tol=0.0)
        bound = paper.bind(guide_299)
        rhs = bound.to_systems(white_noise(list(guide_299.shape), 10))
        target = float(tf.reduce_max(bound.solve_systems(rhs).residual_norm))
        manifest["target_residual"] = target
        if "cg50" in cases:
            manifest["cases"] += export_smoother("cg50_299", paper, guide_299, batches, out)
        if "auto" in cases:
            auto = Smoother(0.997, solver="rb_chebyshev", max_iter=500, tol=target)
            manifest["cases"] += export_smoother("auto_299", auto, guide_299, batches, out)
    if "kernels" in cases:
        manifest["cases"] += export_kernels(guide_299, batches, out)
    if cases & {"efficientnet", "photo"}:
        from tfsmooth.data import load_samples
        from tfsmooth.evaluation.presets import _PHOTO_SCW_SMOOTHER

        guide_224 = tf.constant(load_samples("imagenet", size=(224, 224)).images[:BASE_BATCH])
        if "efficientnet" in cases:
            from tfsmooth.models import efficientnet_lite

            try:
                model = efficientnet_lite(0)
                manifest["efficientnet_weights"] = "imagenet"
            except (ImportError, FileNotFoundError):
                model = efficientnet_lite(0, weights=None)
                manifest["efficientnet_weights"] = "random"
            network: Any = model.model
            fn = model_fb(model)
            for batch in batches:
                x = tf.random.uniform([batch, 224, 224, 3], seed=1)
                spec = {"make": "uniform", "name": "images", "low": 0.0, "high": 1.0}
                manifest["cases"].append(
                    export_case(
                        fn,
                        [x],
                        [spec],
                        variable_spec(network.variables),
                        out,
                        f"efficientnet_lite0_224_b{batch}",
                    )
                )
        if "photo" in cases:
            photo = Smoother(**cast(dict[str, Any], _PHOTO_SCW_SMOOTHER))
            manifest["cases"] += export_smoother("photo_preset_224", photo, guide_224, batches, out)
    manifest["cases"] = [c["name"] for c in manifest["cases"]]
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"wrote {len(manifest['cases'])} cases to {out} ({total / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
