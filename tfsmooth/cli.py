"""Command line interface: ``tfsmooth <command> ...``.

The only module that prints or reads ``os.environ``. Errors in user input end with a one-line
message on stderr and a non-zero exit status, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from tfsmooth._version import __version__

__all__ = ["build_parser", "main"]

EXIT_USAGE = 2


def _cmd_demo(args: argparse.Namespace) -> int:
    from tfsmooth.demo import run_smoothing_demo

    result = run_smoothing_demo(
        args.out,
        image=args.image,
        alpha=args.alpha,
        max_iter=args.max_iter,
        l2_norm=args.l2_norm,
        seed=args.seed,
    )
    print(
        f"smoothed a perturbation of L2 norm {result.l2_norm} with alpha={args.alpha}: "
        f"{result.cg_iterations} CG iterations, relative residual {result.cg_residual:.2e}, "
        f"{result.seconds:.2f} s"
    )
    for key, path in result.files.items():
        print(f"  {key:24s} {path}")
    with open(os.path.join(args.out, "demo.json"), "w", encoding="utf-8") as handle:
        json.dump(result.__dict__, handle, indent=2)
    return 0


def _cmd_train_mnist(args: argparse.Namespace) -> int:
    from tfsmooth.models.training import C4_RECIPES, train_c4_recipe

    names = list(C4_RECIPES) if args.which == "all" else [args.which]
    for name in names:
        record = train_c4_recipe(
            name, args.out, source=args.source, epochs=args.epochs, progress=not args.quiet
        )
        print(
            f"{name}: {record.train_seconds:.0f} s on {record.data_source}, train accuracy "
            f"{record.train_accuracy:.4f}, test accuracy {record.validation_accuracy:.4f} "
            f"(float16 weights) -> {args.out}"
        )
    return 0


def _cmd_magnify(args: argparse.Namespace) -> int:
    import numpy as np

    from tfsmooth.demo import load_sample_image, save_png
    from tfsmooth.magnification import magnify, to_display

    os.makedirs(args.out, exist_ok=True)
    images = {"original": load_sample_image(args.image)}
    if args.adversarial:
        images["adversarial"] = load_sample_image(args.adversarial)
        if images["adversarial"].shape != images["original"].shape:
            raise ValueError(
                f"the adversarial image has shape {images['adversarial'].shape}, expected the "
                f"shape of the original {images['original'].shape}"
            )
    magnified = {
        key: magnify(
            value[None],
            eta=args.eta,
            sigma_spatial=args.sigma_spatial,
            sigma_range=args.sigma_range,
        )[0].numpy()
        for key, value in images.items()
    }
    clip = float(np.percentile(np.abs(magnified["original"]), 99.0)) or 1.0
    written = []
    for key, value in images.items():
        save_png(value, os.path.join(args.out, f"{key}.png"))
        display = to_display(magnified[key], clip=clip).numpy()
        save_png(display, os.path.join(args.out, f"{key}_magnified.png"))
        written += [f"{key}.png", f"{key}_magnified.png"]
    if args.adversarial:
        r = images["adversarial"] - images["original"]
        scale = float(np.max(np.abs(r))) or 1.0
        save_png(0.5 + r / (2 * scale), os.path.join(args.out, "perturbation.png"))
        written.append("perturbation.png")
        print(f"perturbation: L2 {np.linalg.norm(r):.4f}, Linf {scale:.4f}")
    for name in written:
        print(os.path.join(args.out, name))
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    if args.dataset == "mnist":
        from tfsmooth.evaluation.reproduce import reproduce_mnist

        summary = reproduce_mnist(
            args.out,
            n=args.n,
            quick=args.quick,
            resume=args.resume,
            progress=not args.no_progress,
            batch_size=args.batch_size,
            models=args.models or ("c4", "c4-adv"),
            attacks=args.attacks,
            source=args.source,
        )
    else:
        return _reproduce_imagenet(args)
    meta = summary["meta"]
    accuracy = ", ".join(f"{m} {a:.4f}" for m, a in meta["clean_accuracy"].items())
    print(
        f"\ndata: {meta['data_source']}, {meta['n_test_images']} test images; clean accuracy {accuracy}"
    )
    print(summary["table"])
    print(f"\nwritten to {args.out} in {summary['seconds']:.0f} s:")
    for key, path in summary["files"].items():
        print(f"  {key:12s} {path}")
    return 0


def _reproduce_imagenet(args: argparse.Namespace) -> int:
    raise ValueError("`reproduce imagenet` is not available in this version")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``tfsmooth``."""
    parser = argparse.ArgumentParser(
        prog="tfsmooth",
        description="Smooth adversarial examples (Zhang et al., arXiv 1903.11862).",
    )
    parser.add_argument("--version", action="version", version=f"tfsmooth {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="smooth a random perturbation guided by a photo and write PNGs",
        description="Smooths white noise guided by a photo (the shipped one by default) and "
        "writes the image, both perturbations, the perturbed images and their adversarial "
        "magnifications (paper Appendix A) as PNGs.",
    )
    demo.add_argument("--out", default="tfsmooth-demo", help="output directory")
    demo.add_argument("--image", default=None, help="an image file (default: shipped photo)")
    demo.add_argument("--alpha", type=float, default=0.997, help="smoothing strength in [0, 1)")
    demo.add_argument("--max-iter", type=int, default=50, help="CG iterations")
    demo.add_argument("--l2-norm", type=float, default=3.0, help="L2 norm of the perturbations")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(handler=_cmd_demo)

    train = commands.add_parser(
        "train-mnist",
        help="train the shipped C4 networks (plain and step l.l.) from their recipes",
        description="Trains C4 by the recipes of the shipped weights (tfsmooth.models.training."
        "C4_RECIPES), seeded, on the MNIST source available, and writes the float16 weights and "
        "the JSON record (recipe, data source, accuracy) to --out.",
    )
    train.add_argument("--which", choices=["mnist", "mnist-adv", "all"], default="all")
    train.add_argument("--out", default="c4-weights", help="output directory")
    train.add_argument("--source", default="auto", help="MNIST source: auto, tfds, keras, package")
    train.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    train.add_argument("--quiet", action="store_true", help="no progress bar")
    train.set_defaults(handler=_cmd_train_mnist)

    reproduce = commands.add_parser(
        "reproduce",
        help="reproduce the paper's tables (MNIST: Tables 1-2, Figures 2 and 5)",
        description="Runs the six attacks with the paper's settings and writes results.json, "
        "report.md (ours beside the paper's), CSV, per-image JSONL records (resumable with "
        "--resume) and figures to --out.",
    )
    reproduce.add_argument("dataset", choices=["mnist", "imagenet"])
    reproduce.add_argument("--n", type=int, default=None, help="number of test images")
    reproduce.add_argument("--quick", action="store_true", help="fewer iterations (minutes)")
    reproduce.add_argument("--out", default="tfsmooth-results", help="output directory")
    reproduce.add_argument("--resume", action="store_true", help="continue an interrupted run")
    reproduce.add_argument("--batch-size", type=int, default=100)
    reproduce.add_argument("--models", nargs="+", default=None, help="subset of the models")
    reproduce.add_argument("--attacks", nargs="+", default=None, help="subset of the attacks")
    reproduce.add_argument("--source", default="auto", help="MNIST source")
    reproduce.add_argument("--no-progress", action="store_true", help="no progress bars")
    reproduce.set_defaults(handler=_cmd_reproduce)

    mag = commands.add_parser(
        "magnify",
        help="adversarial magnification (paper Appendix A) of an image and its adversarial",
        description="Writes the image, its adversarial magnification and, with --adversarial, "
        "the adversarial image, its magnification and the perturbation, as PNGs (Figure 1).",
    )
    mag.add_argument("--image", required=True, help="the original image file")
    mag.add_argument("--adversarial", default=None, help="an adversarial version of it")
    mag.add_argument("--out", default="tfsmooth-magnify", help="output directory")
    mag.add_argument("--eta", type=float, default=0.8)
    mag.add_argument("--sigma-spatial", type=float, default=5.0, help="pixels")
    mag.add_argument("--sigma-range", type=float, default=5.0, help="grey levels (0..255)")
    mag.set_defaults(handler=_cmd_magnify)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tfsmooth`` command; returns the exit status."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.handler(args))
    except (ValueError, TypeError, FileNotFoundError, PermissionError, ImportError) as err:
        print(f"tfsmooth {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tfsmooth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
