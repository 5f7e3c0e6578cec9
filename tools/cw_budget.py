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

Each (model, budget, attack) measurement keeps per-image records in
``cw_budget_records/<model>__<attack>__<rounds>x<steps>__n<n>.jsonl``
(:class:`tfsmooth.evaluation.records.RecordFile`, through
:func:`~tfsmooth.evaluation.evaluate_attack`: locked, appended per batch of 100 digits,
resumed by the same batches), so an interrupted study loses at most one batch and a rerun
measures nothing twice. Rows logged by earlier versions of this tool in ``cw_budget.jsonl`` are
read (never written) and not measured again.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import pathlib
import sys

import tensorflow as tf

from tfsmooth.data import load_mnist
from tfsmooth.evaluation import evaluate_attack, read_records
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


def _records_path(out: pathlib.Path, model: str, attack: str, rounds: int, steps: int, n: int):
    name = f"{model}__{attack.replace('&', '')}__{rounds}x{steps}__n{n}.jsonl"
    return out / "cw_budget_records" / name


def _is_complete(path: pathlib.Path, n: int) -> bool:
    """Whether the records of ``path`` cover all ``n`` digits (errors are evaluate_attack's)."""
    try:
        return len(read_records(path)[1]) == n
    except (OSError, ValueError):
        return False


def _measure(
    model_name: str, attack_name: str, rounds: int, steps: int, n: int, records: pathlib.Path
) -> dict:
    model, images, labels = _model_and_digits(model_name, n)
    preset = MNIST.attacks[attack_name].replace(
        kwargs={"binary_search_steps": rounds, "steps": steps}
    )
    attack, _ = preset.build()
    result = evaluate_attack(
        model,
        attack,
        images,
        labels,
        batch_size=100,
        records_path=records,
        resume=True,
        attack_name=attack_name,
        model_name=model_name,
    )
    return {
        "model": model_name,
        "attack": attack_name,
        "rounds": rounds,
        "steps": steps,
        "n": result.n0,
        "psuc": float(result.n_success / result.n0),
        "mean_l2": None if math.isnan(result.mean_l2) else float(result.mean_l2),
        "seconds": round(float(result.seconds), 3),
    }


def _legacy_rows(path: pathlib.Path) -> dict[tuple, dict]:
    """Rows logged by earlier versions of the tool (``cw_budget.jsonl``), read only."""
    rows = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                rows[(row["model"], row["attack"], row["rounds"], row["steps"], row["n"])] = row
            except (json.JSONDecodeError, KeyError, TypeError):
                continue  # a line cut by a kill
    return rows


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
    legacy = _legacy_rows(args.out / "cw_budget.jsonl")
    rows = []
    for model in args.models:
        for rounds, steps in budgets:
            for attack in ("C&W", "sC&W"):
                if (model, attack, rounds, steps, args.n) in legacy:
                    rows.append(legacy[(model, attack, rounds, steps, args.n)])
                    continue
                records = _records_path(args.out, model, attack, rounds, steps, args.n)
                measured = not _is_complete(records, args.n)
                row = _measure(model, attack, rounds, steps, args.n, records)
                if measured:
                    print(json.dumps(row), flush=True)
                rows.append(row)
    (args.out / "cw_budget.json").write_text(json.dumps({"n": args.n, "rows": rows}, indent=1))
    (args.out / "cw_budget.md").write_text(_markdown(rows, args.n) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
