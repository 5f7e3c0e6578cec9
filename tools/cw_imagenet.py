"""C&W on a real ImageNet network: ours against foolbox 3.3, and distortion against budget.

On EfficientNet-Lite0 (real weights, offline) and the ImageNet sample photos of foolbox, at
224x224:

1. **Same algorithm, same budget**: our ``L2CarliniWagnerAttack(parametrization="tanh")`` and
   foolbox's ``L2CarliniWagnerAttack`` (which optimizes in tanh space) with the same rounds,
   steps, learning rate, initial constant and confidence; Psuc and mean L2 of both, measured
   the same way (an image is a success if its output is adversarial and differs from the clean
   image; foolbox returns the clean image where it found nothing).
2. **D against the learning rate**: C&W with the paper's ImageNet setting (lr 0.1, c = 100),
   and with lr 0.01 and 0.003 from c = 1 (clipped parametrization, 3 x 100 steps), the last one
   with and without ``quantize_bits=8`` (the photos preset).

Writes ``reproduction/imagenet/cw_budget.json`` and ``.md`` (override with ``--out``)::

    python tools/cw_imagenet.py --n 5
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

import numpy as np
import tensorflow as tf

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _stats(net: Any, x: np.ndarray, y: np.ndarray, adversarial: np.ndarray) -> dict[str, Any]:
    adversarial = np.asarray(adversarial, np.float32)
    l2 = np.linalg.norm((adversarial - x).reshape(len(x), -1), axis=1)
    fooled = np.asarray(net.predict(adversarial)) != y
    success = fooled & (l2 > 0)
    return {
        "psuc": float(success.mean()),
        "mean_l2": float(l2[success].mean()) if success.any() else None,
        "l2": [float(d) if s else None for d, s in zip(l2, success)],
    }


def ours(
    net: Any, x: np.ndarray, y: np.ndarray, smooth: bool = False, **settings: Any
) -> dict[str, Any]:
    from tfsmooth.attacks import L2CarliniWagnerAttack, SmoothCarliniWagnerL2
    from tfsmooth.smoothing import Smoother

    if smooth:
        attack: Any = SmoothCarliniWagnerL2(
            smoother=Smoother(0.997, solver="cg", max_iter=50), **settings
        )
    else:
        attack = L2CarliniWagnerAttack(**settings)
    started = time.perf_counter()
    raw, _, _ = attack(net, tf.constant(x), tf.constant(y))
    seconds = time.perf_counter() - started
    return {**_stats(net, x, y, raw), "seconds": round(seconds, 1)}


def foolbox_cw(net: Any, x: np.ndarray, y: np.ndarray, **settings: Any) -> dict[str, Any]:
    import foolbox as fb

    model = fb.TensorFlowModel(net, bounds=(0.0, 1.0))
    attack = fb.attacks.L2CarliniWagnerAttack(
        binary_search_steps=settings["binary_search_steps"],
        steps=settings["steps"],
        stepsize=settings["learning_rate"],
        confidence=settings["confidence"],
        initial_const=settings["initial_const"],
        abort_early=settings["abort_early"],
    )
    started = time.perf_counter()
    _, clipped, _ = attack(model, tf.constant(x), tf.constant(y, tf.int64), epsilons=None)
    seconds = time.perf_counter() - started
    return {**_stats(net, x, y, np.asarray(clipped)), "seconds": round(seconds, 1)}


BUDGETS = [
    # (label, attack, settings)
    ("paper: lr 0.1, c 100, 3x100", "C&W", dict(learning_rate=0.1, initial_const=100.0,
                                                 binary_search_steps=3, steps=100)),
    ("lr 0.01, c 1, 3x100", "C&W", dict(learning_rate=0.01, initial_const=1.0,
                                       binary_search_steps=3, steps=100)),
    ("lr 0.003, c 1, 3x100", "C&W", dict(learning_rate=0.003, initial_const=1.0,
                                        binary_search_steps=3, steps=100)),
    ("lr 0.003, c 1, 3x100, 8-bit (the photos preset)", "C&W", dict(
        learning_rate=0.003, initial_const=1.0, binary_search_steps=3, steps=100,
        quantize_bits=8)),
]  # fmt: skip


def render(result: dict[str, Any]) -> str:
    lines = [
        "# C&W on EfficientNet-Lite0 (real ImageNet weights), ImageNet sample photos",
        "",
        f"Made by `python tools/cw_imagenet.py --n {result['n']}`: the first {result['n']} "
        f"sample photos of foolbox 3.3.4 at 224x224 that the network classifies correctly "
        f"({result['machine']}). D = mean L2 over the successes, pixels in [0, 1].",
        "",
        "## Ours against foolbox 3.3 (the same algorithm: tanh space, same budget)",
        "",
        f"Settings: {json.dumps(result['peer_settings'])}.",
        "",
        "| library | Psuc | D | seconds |",
        "|---|---:|---:|---:|",
    ]
    for name in ("tfsmooth", "foolbox"):
        r = result["peer"][name]
        d = "–" if r["mean_l2"] is None else f"{r['mean_l2']:.3f}"
        lines.append(f"| {name} | {r['psuc']:.2f} | {d} | {r['seconds']:.0f} |")
    a, b = result["peer"]["tfsmooth"]["mean_l2"], result["peer"]["foolbox"]["mean_l2"]
    if a and b:
        lines += ["", f"Mean L2 ours / foolbox: {a / b:.3f} ({100 * (a / b - 1):+.1f} %)."]
    lines += [
        "",
        "## D against budget (clipped parametrization, as the presets)",
        "",
        "| attack | budget | Psuc | D | seconds |",
        "|---|---|---:|---:|---:|",
    ]
    for row in result["budgets"]:
        d = "–" if row["mean_l2"] is None else f"{row['mean_l2']:.3f}"
        lines.append(
            f"| {row['attack']} | {row['budget']} | {row['psuc']:.2f} | {d} | "
            f"{row['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5, help="photos (correctly classified)")
    parser.add_argument("--out", default=str(ROOT / "reproduction" / "imagenet" / "cw_budget"))
    parser.add_argument("--skip-budgets", action="store_true")
    args = parser.parse_args(argv)

    import platform

    from tfsmooth.attacks.quantization import quantize_images
    from tfsmooth.data import load_samples
    from tfsmooth.models import efficientnet_lite

    net = efficientnet_lite(0)
    samples = load_samples("imagenet", size=(224, 224))
    x = quantize_images(samples.images, 8).numpy()
    y = samples.labels
    keep = np.flatnonzero(np.asarray(net.predict(x)) == y)[: args.n]
    x, y = x[keep], y[keep].astype(np.int64)
    peer = dict(
        binary_search_steps=2, steps=50, learning_rate=0.01, confidence=0.0,
        initial_const=1.0, abort_early=True,
    )  # fmt: skip
    result: dict[str, Any] = {
        "n": int(len(y)),
        "machine": f"{platform.machine()}, {tf.config.threading.get_intra_op_parallelism_threads() or 'all'} "
        "threads, TF " + tf.__version__,
        "peer_settings": peer,
        "peer": {},
        "budgets": [],
    }
    print("ours (tanh) ...", file=sys.stderr)
    result["peer"]["tfsmooth"] = ours(net, x, y, parametrization="tanh", **peer)
    print("foolbox ...", file=sys.stderr)
    result["peer"]["foolbox"] = foolbox_cw(net, x, y, **peer)
    if not args.skip_budgets:
        for label, attack, settings in BUDGETS:
            print(f"{attack} {label} ...", file=sys.stderr)
            row = ours(
                net, x, y, smooth=attack == "sC&W", parametrization="clip", confidence=0.0,
                abort_early=True, **settings,
            )  # fmt: skip
            result["budgets"].append({"attack": attack, "budget": label, **row})
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(result, indent=2))
    out.with_suffix(".md").write_text(render(result))
    print(render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
