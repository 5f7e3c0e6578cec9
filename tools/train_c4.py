"""Trains the two C4 networks shipped in ``tfsmooth/assets`` (plain and "step l.l." adversarial).

Data: the train split of the MNIST sample shipped with tfsmooth (``load_mnist("train",
source="package")``, 4,000 digits); the test split (1,000 digits) is only measured, after
every epoch, never used to choose anything. The recipes are :data:`tfsmooth.models.training.C4_RECIPES`;
``tfsmooth train-mnist`` runs the same code.

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

from tfsmooth.models.training import C4_RECIPES, train_c4_recipe

ASSETS = pathlib.Path(__file__).resolve().parents[1] / "tfsmooth" / "assets"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--which", choices=[*C4_RECIPES, "all"], default="all")
    parser.add_argument("--output-dir", type=pathlib.Path, default=ASSETS)
    parser.add_argument("--source", default="package")
    parser.add_argument("--progress", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    names = list(C4_RECIPES) if args.which == "all" else [args.which]
    for name in names:
        record = train_c4_recipe(name, args.output_dir, source=args.source, progress=args.progress)
        print(
            f"{name}: {record.train_seconds:.0f} s, train accuracy {record.train_accuracy:.4f}, "
            f"test accuracy {record.validation_accuracy:.4f} (float16 weights)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
