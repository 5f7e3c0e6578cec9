"""Do the smooth attacks give the same results with a cheaper solve? Psuc, D and seconds per solver.

The smoother's solver changes the cost of sC&W and sPGD2; this benchmark checks that it does not
change what they find. Each attack runs on the same images with several smoothers that differ only
in how :math:`L_\\alpha^{-1}` is applied, next to a *tight* reference solve, and the results are
compared image by image:

- **MNIST** (section ``m``): C4 with the shipped weights on the first ``n`` correctly classified
  digits of the shipped test sample; the MNIST preset's sC&W and sPGD2
  (:data:`tfsmooth.evaluation.presets.MNIST`), α = 0.95. Reference: ``solver="exact"`` (the dense
  inverse). Candidates: ``"auto"`` (the library default: red-black Chebyshev, ``tol=1e-4``) and
  CG (``tol=1e-4``).
- **ImageNet photos** (section ``i``): EfficientNet-Lite0 with its real weights on the first ``n``
  correctly classified foolbox sample photos at 224×224; the photo preset's sC&W
  (:data:`tfsmooth.evaluation.presets.IMAGENET_PHOTOS`, fewer steps with ``--quick``),
  α = 0.997. Reference: red-black CG to ``tol=1e-6``; noise floor: red-black Chebyshev to
  ``tol=1e-6``, a second tight solve (C&W's early abort and binary search turn rounding-level
  differences into different D, so this row says how large "no difference" is). Candidates: ``"auto"`` (default
  ``tol=1e-4``), ``"auto"`` with the backward solve at ``grad_tol=1e-2`` (forward still
  ``1e-4``), ``"auto"`` at ``tol=1e-3`` and ``tol=1e-2`` (both solves), and the paper's 50 CG iterations
  (``solver="cg", max_iter=50``); the preset's C&W without smoother is timed too, for the
  ratio of sC&W's seconds to C&W's.

Reported per configuration: Psuc, mean D (L2) over the successes, the paired relative
difference of D against the reference over images that both fooled (mean and largest), the
number of images whose success differs, and the attack's seconds (MNIST: one call after a
tracing call on the same inputs; ImageNet: the one call, tracing included, which is a few
seconds of a call of minutes). *Within noise* means: same successes, and the mean paired
relative change of D at most 1 %, or at most the noise floor's where one is measured
(computed, see ``goals``).

Usage::

    python benchmarks/solver_fidelity.py --quick
    python benchmarks/solver_fidelity.py            # MNIST 200 digits, 4 photos
    python benchmarks/solver_fidelity.py --render-only benchmarks/results/solver_fidelity.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
#: "Within noise": mean paired relative change of D against the reference below this.
NOISE = 0.01


def _run(
    attack: Any, model: Any, images: np.ndarray, labels: np.ndarray, warmup: bool = True
) -> dict[str, Any]:
    x, y = tf.constant(images), tf.constant(labels)
    if warmup:
        attack(model, x, y)  # traces
    start = time.perf_counter()
    result = attack(model, x, y)
    clipped = result.clipped[0] if isinstance(result.clipped, list) else result.clipped
    adversarials = np.asarray(clipped)
    seconds = time.perf_counter() - start
    success = np.asarray(result.success).reshape(-1)
    l2 = np.linalg.norm((adversarials - images).reshape(len(images), -1), axis=1)
    return {"seconds": seconds, "success": success, "l2": l2}


def _fixed_epsilon_run(
    attack: Any, model: Any, images: np.ndarray, labels: np.ndarray, epsilons: list[float]
) -> dict[str, Any]:
    """Multi-epsilon run as the protocol does it: success if any, D the smallest successful."""
    from tfsmooth.evaluation import metrics

    x, y = tf.constant(images), tf.constant(labels)
    attack(model, x, y, epsilons=epsilons)
    start = time.perf_counter()
    result = attack(model, x, y, epsilons=epsilons)
    clipped = np.stack([np.asarray(c) for c in result.clipped])
    seconds = time.perf_counter() - start
    l2 = np.linalg.norm((clipped - images[None]).reshape(len(epsilons), len(images), -1), axis=2)
    ok, distance = metrics.combine_multi_epsilon(np.asarray(result.success), l2)
    return {"seconds": seconds, "success": np.asarray(ok), "l2": np.asarray(distance)}


def compare(reference: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    both = reference["success"] & other["success"]
    rel = np.abs(other["l2"][both] - reference["l2"][both]) / reference["l2"][both]
    return {
        "psuc": float(other["success"].mean()),
        "mean_l2": float(other["l2"][other["success"]].mean()) if other["success"].any() else None,
        "success_differs": int((reference["success"] != other["success"]).sum()),
        "mean_rel_change_l2": float(rel.mean()) if rel.size else None,
        "max_rel_change_l2": float(rel.max()) if rel.size else None,
        "seconds": other["seconds"],
    }


def section(
    name: str,
    model: Any,
    images: np.ndarray,
    labels: np.ndarray,
    attacks: dict[str, tuple[Any, Any]],
    smoothers: dict[str, Any],
    log: Any,
    warmup: bool = True,
) -> dict[str, Any]:
    """``attacks``: {attack name: (factory(smoother) -> attack, epsilons or None)}; the first
    smoother is the reference."""
    rows = []
    for attack_name, (factory, epsilons) in attacks.items():
        runs = {}
        for label, smoother in smoothers.items():
            attack = factory(smoother)
            if epsilons is None:
                runs[label] = _run(attack, model, images, labels, warmup)
            else:
                runs[label] = _fixed_epsilon_run(attack, model, images, labels, epsilons)
            log(f"  {name} {attack_name} [{label}]: {runs[label]['seconds']:.1f} s")
        reference = runs[next(iter(smoothers))]
        for label in smoothers:
            rows.append(
                {"attack": attack_name, "smoother": label} | compare(reference, runs[label])
            )
    return {"setting": name, "n": int(len(images)), "rows": rows}


def judge(settings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``goals``: is each candidate within noise of its setting's reference?

    Within noise: the same successes, and a mean paired change of D at most :data:`NOISE`, or
    at most the mean change of the setting's *noise floor* row (a second tight solve by another
    solver) where there is one. Sets ``noise_threshold`` on each setting.
    """
    goals = []
    for setting in settings:
        # a second tight solve by another solver: how much D moves for reasons of rounding
        # alone (the optimization's early aborts and binary search amplify tiny differences)
        floors = [
            row["mean_rel_change_l2"] or 0.0
            for row in setting["rows"]
            if "noise floor" in row["smoother"]
        ]
        threshold = max([NOISE, *floors])
        setting["noise_threshold"] = threshold
        for row in setting["rows"]:
            if "reference" in row["smoother"] or "noise floor" in row["smoother"]:
                continue
            met = row["success_differs"] == 0 and (row["mean_rel_change_l2"] or 0.0) <= threshold
            goals.append(
                {
                    "what": f"{setting['setting']} {row['attack']} [{row['smoother']}] within noise",
                    "met": bool(met),
                }
            )
    return goals


def render(result: dict[str, Any]) -> str:
    machine = result["machine"]
    lines = [
        "# Smooth attacks: results and cost per solver",
        "",
        f"Machine: {machine['device']}, {machine['cpus']} CPUs, TensorFlow {machine['tensorflow']};"
        f" {result['date']}, 1-min load average {machine['load_average']:.1f} at start.",
        "",
        "Same images, same attack, only the smoother's solver differs; the first row of each"
        " group is the reference (tight solve). *ΔD*: |D - D_ref| / D_ref per image over the"
        " images both fooled (mean / max). *differs*: images fooled by one and not the other."
        " Seconds: MNIST one call after a tracing call; ImageNet the one call (tracing"
        " included).",
        "",
        "| setting | attack | smoother | Psuc | D | ΔD mean | ΔD max | differs | seconds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]

    def pct(value: float | None) -> str:
        return "–" if value is None else f"{100 * value:.2f} %"

    for setting in result["settings"]:
        for row in setting["rows"]:
            d = "–" if row["mean_l2"] is None else f"{row['mean_l2']:.3f}"
            lines.append(
                f"| {setting['setting']}, n={setting['n']} | {row['attack']} | {row['smoother']} |"
                f" {row['psuc']:.3f} | {d} | {pct(row['mean_rel_change_l2'])} |"
                f" {pct(row['max_rel_change_l2'])} | {row['success_differs']} |"
                f" {row['seconds']:.1f} |"
            )
    for setting in result["settings"]:
        plain = setting.get("plain_cw")
        if plain:
            lines.append(
                f"| {setting['setting']}, n={setting['n']} | C&W (no smoother) | – |"
                f" {plain['psuc']:.3f} | {plain['mean_l2']:.3f} | | | | {plain['seconds']:.1f} |"
            )
    lines += [
        "",
        "Within noise (computed): same successes and mean ΔD at most"
        f" {100 * NOISE:g} % or, where a *noise floor* row is given (a second tight solve by"
        " another solver), at most its mean ΔD: "
        + ", ".join(
            f"{s['setting']}: {100 * s.get('noise_threshold', NOISE):.2f} %"
            for s in result["settings"]
        )
        + ".",
        "",
    ]
    for goal in result["goals"]:
        lines.append(f"- {goal['what']}: {'yes' if goal['met'] else 'NO'}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer images and steps")
    parser.add_argument("--sections", default="mi", help="m: MNIST, i: ImageNet photos")
    parser.add_argument("--mnist-n", type=int, default=None, help="digits (200; 50 quick)")
    parser.add_argument("--photos-n", type=int, default=None, help="photos (4; 2 quick)")
    parser.add_argument("--out", default=None, help="JSON output (results/solver_fidelity.json)")
    parser.add_argument("--render-only", default=None, help="re-render the table from a JSON")
    args = parser.parse_args(argv)
    if args.render_only:
        result = json.loads(pathlib.Path(args.render_only).read_text())
        pathlib.Path(args.render_only).with_suffix(".md").write_text(render(result))
        return 0

    import keras

    from tfsmooth.evaluation import presets
    from tfsmooth.models import Model
    from tfsmooth.smoothing import Smoother

    def log(message: str) -> None:
        print(message, flush=True)

    gpus = tf.config.list_physical_devices("GPU")
    machine = {
        "device": f"GPU ({gpus[0].name})" if gpus else "CPU only",
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "load_average": os.getloadavg()[0],
    }
    settings = []

    def factory_of(preset: Any, name: str) -> tuple[Any, Any]:
        attack_preset = preset.attacks[name]

        def make(smoother: Any) -> Any:
            attack, _ = attack_preset.replace(smoother=None).build()
            return type(attack)(**{**attack_preset.kwargs, "smoother": smoother})

        eps = attack_preset.epsilons
        return make, (list(eps) if isinstance(eps, tuple) else None)

    if "m" in args.sections:
        from tfsmooth.data.mnist import load_mnist
        from tfsmooth.models.zoo import mnist_c4

        n = args.mnist_n or (50 if args.quick else 200)
        model = Model(mnist_c4("mnist"), num_classes=10, name="c4")
        data = load_mnist("test", source="package")
        predicted = np.asarray(model.predict(data.images[: 2 * n], 100))
        keep = np.flatnonzero(predicted == data.labels[: 2 * n])[:n]
        images, labels = data.images[keep], data.labels[keep].astype(np.int64)
        preset = presets.MNIST_QUICK if args.quick else presets.MNIST
        smoothers = {
            "exact (reference)": Smoother(0.95, solver="exact"),
            "auto (rb_chebyshev, tol 1e-4)": Smoother(0.95),
            "cg, tol 1e-4": Smoother(0.95, solver="cg"),
        }
        log(f"MNIST, {len(images)} digits:")
        settings.append(
            section(
                "MNIST C4",
                model,
                images,
                labels,
                {"sC&W": factory_of(preset, "sC&W"), "sPGD2": factory_of(preset, "sPGD2")},
                smoothers,
                log,
            )
        )
    if "i" in args.sections:
        from tfsmooth.data import load_samples
        from tfsmooth.models import efficientnet_lite

        n = args.photos_n or (2 if args.quick else 4)
        model = efficientnet_lite(0)
        data = load_samples("imagenet", size=(224, 224))
        predicted = np.asarray(model.predict(data.images, 10))
        keep = np.flatnonzero(predicted == data.labels)[:n]
        images, labels = data.images[keep], data.labels[keep].astype(np.int64)
        preset = presets.IMAGENET_PHOTOS_QUICK if args.quick else presets.IMAGENET_PHOTOS
        smoothers = {
            "rb_cg, tol 1e-6 (reference)": Smoother(0.997, solver="rb_cg", tol=1e-6, max_iter=2000),
            "rb_chebyshev, tol 1e-6 (noise floor)": Smoother(
                0.997, solver="rb_chebyshev", tol=1e-6, max_iter=2000
            ),
            "auto (rb_chebyshev, tol 1e-4)": Smoother(0.997),
            "auto, grad_tol 1e-2 (the photo preset)": Smoother(0.997, grad_tol=1e-2),
            "auto, tol 1e-3": Smoother(0.997, tol=1e-3),
            "auto, tol 1e-2": Smoother(0.997, tol=1e-2),
            "cg, 50 it. (the paper's)": Smoother(0.997, solver="cg", max_iter=50),
        }
        log(f"ImageNet photos, {len(images)} photos:")
        plain, _ = preset.attacks["C&W"].build()
        plain_run = _run(plain, model, images, labels, warmup=False)
        log(f"  C&W (no smoother, the time reference): {plain_run['seconds']:.1f} s")
        settings.append(
            section(
                "EfficientNet-Lite0 224",
                model,
                images,
                labels,
                {"sC&W": factory_of(preset, "sC&W")},
                smoothers,
                log,
                warmup=False,
            )
        )
        settings[-1]["plain_cw"] = {
            "psuc": float(plain_run["success"].mean()),
            "mean_l2": float(plain_run["l2"][plain_run["success"]].mean()),
            "seconds": plain_run["seconds"],
        }
    goals = judge(settings)
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "quick": bool(args.quick),
        "settings": settings,
        "goals": goals,
    }
    default = "solver_fidelity_quick.json" if args.quick else "solver_fidelity.json"
    out = pathlib.Path(args.out or RESULTS / default)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    out.with_suffix(".md").write_text(render(result))
    log(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
