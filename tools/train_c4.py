"""Trains the two C4 networks shipped in ``tfsmooth/assets`` (plain and "step l.l." adversarial).

Data: the train split of the MNIST sample shipped with tfsmooth (``load_mnist("train",
source="package")``, 4,000 digits); the test split (1,000 digits) is only measured, after
every epoch, never used to choose anything. The recipe is fixed in this file.

Usage::

    python tools/train_c4.py                 # both models
    python tools/train_c4.py --which mnist-adv --output-dir /tmp/c4

Writes ``c4_mnist.npz`` / ``c4_mnist_adv.npz`` (float16 weights, see
:func:`tfsmooth.models.zoo.save_weights_npz`) and the JSON recipe beside each.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
from typing import Any

from tfsmooth.data.mnist import load_mnist
from tfsmooth.models.training import evaluate_accuracy, train_c4
from tfsmooth.models.zoo import C4_WEIGHTS, load_weights_npz, mnist_c4, save_weights_npz

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "tfsmooth" / "assets"

RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {
        "adversarial": False,
        "epochs": 30,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "seed": 0,
    },
    "mnist-adv": {
        "adversarial": True,
        "epochs": 60,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "epsilon": 0.3,
        "adversarial_fraction": 0.5,
        "adversarial_weight": 0.3,
        "seed": 0,
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", choices=[*RECIPES, "all"], default="all")
    parser.add_argument("--output-dir", type=pathlib.Path, default=ASSETS)
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    train = load_mnist("train", source="package")
    test = load_mnist("test", source="package")
    names = list(RECIPES) if args.which == "all" else [args.which]
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        model, record = train_c4(
            train.images,
            train.labels,
            validation=(test.images, test.labels),
            data_source=f"{train.source}:train",
            progress=args.progress,
            **RECIPES[name],
        )
        weights_file, recipe_file = C4_WEIGHTS[name]
        save_weights_npz(model, args.output_dir / weights_file, dtype="float16")
        # The accuracy recorded is that of the float16 weights actually shipped.
        stored = load_weights_npz(mnist_c4(weights=None), args.output_dir / weights_file)
        record.validation_accuracy = evaluate_accuracy(stored, test.images, test.labels)
        record.train_accuracy = evaluate_accuracy(stored, train.images, train.labels)
        record.to_json(args.output_dir / recipe_file)
        print(
            f"{name}: {record.train_seconds:.0f} s, train accuracy {record.train_accuracy:.4f}, "
            f"test accuracy {record.validation_accuracy:.4f} (float16 weights) -> "
            f"{args.output_dir / weights_file}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
