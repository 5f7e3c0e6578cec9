"""How C&W's and sC&W's distortion on C4 depends on their iteration budget (rounds × steps).

The paper (§5.2) gives C&W's margin (m = 1), learning rate (0.1) and initial constant (c = 15)
but not how many binary-search rounds or Adam steps it ran. Those numbers decide how close C&W
gets to its optimum, and so whether "PGD2 outperforms C&W by a vast margin" (§5.3) holds. This
study runs C&W (tanh) and sC&W (clip, α = 0.95, exact inverse) with the MNIST preset's other
settings over a range of budgets, on the first ``--n`` correctly classified test digits, and
writes ``cw_budget.json`` and ``cw_budget.md``.

Usage::

    python tools/cw_budget.py --out reproduction/mnist            # both models, 200 digits
    python tools/cw_budget.py --models c4 --n 100 --budgets 1x100 3x100

Each (model, budget, attack) row is appended to ``cw_budget.jsonl`` as soon as it is measured;
a rerun skips the rows already there (so an interrupted study loses nothing it had finished).
"""

from __future__ import annotations

import argparse
import functools
import json
import pathlib
import sys
import time

import numpy as np
import tensorflow as tf

from tfsmooth.data import load_mnist
from tfsmooth.evaluation.presets import MNIST, PAPER_RESULTS
from tfsmooth.models import mnist_c4

WEIGHTS = {"c4": "mnist", "c4-adv": "mnist-adv"}
DEFAULT_BUDGETS = ("1x100", "1x200", "3x100", "5x200", "1x1000")


def _budget(text: str) -> tuple[int, int]:
    try:
        rounds, steps = (int(part) for part in text.lower().split("x"))
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"a budget is ROUNDSxSTEPS, e.g. 3x100; got {text!r}"
        ) from error
    if rounds < 1 or steps < 1:
        raise argparse.ArgumentTypeError(f"rounds and steps must be >= 1, got {text!r}")
    return rounds, steps


@functools.cache
def _model_and_digits(model_name: str, n: int) -> tuple:
    """The network and its first ``n`` correctly classified test digits (once per model)."""
    model = mnist_c4(WEIGHTS[model_name])
    test = load_mnist("test", source="package")
    logits = model(tf.constant(test.images), training=False).numpy()
    correct = logits.argmax(axis=1) == test.labels
    return model, test.images[correct][:n], test.labels[correct][:n]


def _measure(model_name: str, attack_name: str, rounds: int, steps: int, n: int) -> dict:
    model, images, labels = _model_and_digits(model_name, n)
    preset = MNIST.attacks[attack_name].replace(
        kwargs={"binary_search_steps": rounds, "steps": steps}
    )
    attack, _ = preset.build()
    start = time.perf_counter()
    success, l2 = [], []
    for i in range(0, len(labels), 100):
        x, y = tf.constant(images[i : i + 100]), tf.constant(labels[i : i + 100])
        _, adv, ok = attack(model, x, y, epsilons=None)
        success.append(np.asarray(ok).reshape(-1))
        l2.append(np.sqrt(np.sum((adv.numpy() - images[i : i + 100]) ** 2, axis=(1, 2, 3))))
    ok, dist = np.concatenate(success), np.concatenate(l2)
    return {
        "model": model_name,
        "attack": attack_name,
        "rounds": rounds,
        "steps": steps,
        "n": int(ok.size),
        "psuc": float(ok.mean()),
        "mean_l2": float(dist[ok].mean()) if ok.any() else None,
        "seconds": time.perf_counter() - start,
    }


def _markdown(rows: list[dict], n: int) -> str:
    lines = [
        "# C&W and sC&W distortion against their iteration budget (MNIST, C4)",
        "",
        f"First {n} correctly classified digits of the shipped test sample; MNIST preset "
        "settings (m = 1, learning rate 0.1, initial c = 15, early abort) except the budget. "
        "Psuc / mean L2 over successes. Made by `python tools/cw_budget.py`.",
        "",
    ]
    for model in dict.fromkeys(r["model"] for r in rows):
        paper = PAPER_RESULTS["mnist"][model]
        lines += [
            f"## {model}",
            "",
            "| rounds × steps | C&W | sC&W | sC&W / C&W distortion |",
            "|---|---|---|---|",
        ]
        budgets = dict.fromkeys((r["rounds"], r["steps"]) for r in rows if r["model"] == model)
        for rounds, steps in sorted(budgets):
            cells, dists = [], []
            for attack in ("C&W", "sC&W"):
                row = next(
                    (
                        r
                        for r in rows
                        if (r["model"], r["attack"], r["rounds"], r["steps"])
                        == (model, attack, rounds, steps)
                    ),
                    None,
                )
                if row is None:
                    cells.append("–")
                    dists.append(None)
                elif row["mean_l2"] is None:
                    cells.append(f"{row['psuc']:.3f} / –")
                    dists.append(None)
                else:
                    cells.append(f"{row['psuc']:.3f} / {row['mean_l2']:.2f}")
                    dists.append(row["mean_l2"])
            ratio = f"{dists[1] / dists[0]:.2f}" if None not in dists else "–"
            lines.append(f"| {rounds} × {steps} | {cells[0]} | {cells[1]} | {ratio} |")
        cw, scw = paper["C&W"], paper["sC&W"]
        lines += [
            f"| paper (budget not stated) | {cw[0]:.2f} / {cw[1]:.2f} | "
            f"{scw[0]:.2f} / {scw[1]:.2f} | {scw[1] / cw[1]:.2f} |",
            "",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("reproduction/mnist"))
    parser.add_argument("--models", nargs="+", choices=sorted(WEIGHTS), default=["c4", "c4-adv"])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--budgets", nargs="+", type=_budget, default=None)
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error(f"--n must be >= 1, got {args.n}")
    budgets = args.budgets or [_budget(b) for b in DEFAULT_BUDGETS]
    args.out.mkdir(parents=True, exist_ok=True)
    log = args.out / "cw_budget.jsonl"
    rows = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    done = {(r["model"], r["attack"], r["rounds"], r["steps"], r["n"]) for r in rows}
    for model in args.models:
        for rounds, steps in budgets:
            for attack in ("C&W", "sC&W"):
                if (model, attack, rounds, steps, args.n) in done:
                    continue
                row = _measure(model, attack, rounds, steps, args.n)
                print(json.dumps(row), flush=True)
                with log.open("a", encoding="utf-8") as handle:
                    handle.write(json.dumps(row) + "\n")
                rows.append(row)
    rows = [r for r in rows if r["n"] == args.n and r["model"] in args.models]
    (args.out / "cw_budget.json").write_text(json.dumps({"n": args.n, "rows": rows}, indent=1))
    (args.out / "cw_budget.md").write_text(_markdown(rows, args.n) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
