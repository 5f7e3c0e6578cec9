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

#: Test images of ``reproduce mnist --quick`` when ``--n`` is not given.
QUICK_MNIST_IMAGES = 100

DEVICES_HELP = (
    "split each batch over several devices, attacked at the same time (tf.distribute."
    "MirroredStrategy; the same results, but C&W's early abort is decided per device's chunk): "
    "'all' (every visible GPU), N (the first N GPUs), 'cpu', "
    "or device names such as GPU:0,GPU:2; with one device or no GPU, no strategy. Default: "
    "TensorFlow's own placement (one device)"
)


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

    from tfsmooth._io import save_png
    from tfsmooth.demo import load_sample_image
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


def _parse_overrides(items: Sequence[str] | None) -> dict[str, dict[str, object]]:
    """``["sC&W:steps=5", "sC&W:smoother.max_iter=10"]`` -> ``{"sC&W": {...}}``."""
    overrides: dict[str, dict[str, object]] = {}
    for item in items or ():
        name, sep, setting = item.partition(":")
        key, eq, text = setting.partition("=")
        if not sep or not eq or not name.strip() or not key.strip():
            raise ValueError(
                f"--override expects ATTACK:KEY=VALUE (e.g. 'sC&W:steps=20'), got {item!r}"
            )
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        overrides.setdefault(name.strip(), {})[key.strip()] = value
    return overrides


def _check_batch_size(value: int) -> int:
    if value < 1:
        raise ValueError(f"--batch-size must be at least 1, got {value}")
    return value


class _UsageError(ValueError):
    """A bad command-line value found after parsing: exit status 2, as argparse's own."""


def _strategy(args: argparse.Namespace) -> object:
    """The ``tf.distribute`` strategy of ``--devices`` (``None`` without it); says what it uses."""
    if args.devices is None:
        return None
    from tfsmooth.evaluation.distributed import select_devices

    try:
        selection = select_devices(args.devices)
    except (ValueError, TypeError) as err:
        raise _UsageError(str(err)) from err
    print(f"devices: {selection.description}")
    return selection.strategy


def _workers_from_tf_config() -> object:
    """This process's place in a multi-worker job, from ``$TF_CONFIG`` (``None`` if unset).

    ``TF_CONFIG`` as ``tf.distribute`` reads it: ``{"cluster": {"worker": ["host:port", ...]},
    "task": {"type": "worker", "index": i}}``; the workers share ``--out`` (a shared folder).
    """
    text = os.environ.get("TF_CONFIG", "")
    if not text.strip():
        return None
    from tfsmooth.evaluation.distributed import WorkerSpec

    return WorkerSpec.from_tf_config(text)


def _cmd_reproduce(args: argparse.Namespace) -> int:
    overrides = _parse_overrides(args.override)
    batch_size = _check_batch_size(args.batch_size)
    if args.dataset == "mnist":
        from tfsmooth.evaluation.reproduce import reproduce_mnist

        summary = reproduce_mnist(
            args.out,
            n=QUICK_MNIST_IMAGES if args.quick and args.n is None else args.n,
            quick=args.quick,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            batch_size=batch_size,
            models=args.models or ("c4", "c4-adv"),
            attacks=args.attacks,
            overrides=overrides or None,
            source=args.source,
            workers=_workers_from_tf_config(),  # type: ignore[arg-type]
            strategy=_strategy(args),
        )
    else:
        from tfsmooth.evaluation.reproduce_imagenet import reproduce_imagenet

        summary = reproduce_imagenet(
            args.out,
            data_dir=args.data,
            model=args.model,
            preset=args.preset,
            adv_checkpoint=args.adv_checkpoint,
            n=args.n,
            quick=args.quick,
            resume=args.resume,
            overwrite=args.overwrite,
            progress=not args.no_progress,
            batch_size=batch_size,
            attacks=args.attacks,
            overrides=overrides or None,
            defense=args.defense,
            transfer=args.transfer,
            cache_dir=args.cache_dir or os.environ.get("TFSMOOTH_CACHE_DIR"),
            workers=_workers_from_tf_config(),  # type: ignore[arg-type]
            strategy=_strategy(args),
        )
    meta = summary["meta"]
    accuracy = ", ".join(f"{m} {a:.4f}" for m, a in meta["clean_accuracy"].items())
    print(
        f"\ndata: {meta['data_source']}, {meta['n_test_images']} test images; clean accuracy {accuracy}"
    )
    print(summary["table"])
    for finding in meta.get("findings") or []:
        mark = {True: "holds", False: "DOES NOT HOLD", None: "n/a"}[finding.get("holds")]
        detail = finding.get("detail") or ""
        print(f"  [{mark}] {finding.get('finding', '')}" + (f": {detail}" if detail else ""))
    print(f"\nwritten to {args.out} in {summary['seconds']:.0f} s:")
    for key, path in summary["files"].items():
        print(f"  {key:12s} {path}")
    return 0


def _cmd_attack(args: argparse.Namespace) -> int:
    from tfsmooth.evaluation.attack_images import attack_images

    if args.labels == "predicted":
        print(
            "labels: the model's own predictions on the clean images (pass --labels CSV with "
            "columns file,label to use true labels)"
        )
    summary = attack_images(
        args.model,
        args.images,
        args.attack,
        args.out,
        labels=args.labels,
        n=args.n,
        resume=args.resume,
        overwrite=args.overwrite,
        epsilons=args.epsilon,
        input_size=tuple(args.input_size) if args.input_size else None,
        preprocessing=args.preprocessing,
        batch_size=_check_batch_size(args.batch_size),
        quick=args.quick,
        overrides=_parse_overrides(args.override) or None,
        progress=not args.no_progress,
        cache_dir=args.cache_dir or os.environ.get("TFSMOOTH_CACHE_DIR"),
        preset=args.preset,
        strategy=_strategy(args),
    )
    row = summary["row"]
    meta = summary["meta"]
    height, width = meta["image_size"]
    psuc = "–" if row["psuc"] is None else f"{row['psuc']:.2f}"
    mean_l2 = "–" if row["mean_l2"] is None else f"{row['mean_l2']:.3f}"
    print(
        f"\n{row['attack']} on {row['model']}: {row['n0']} images of {height}x{width}, "
        f"{row['n']} classified as labelled; {row['n_success']} adversarial (Psuc {psuc}), "
        f"mean L2 {mean_l2}; {row['png_success']} still adversarial as 8-bit PNG"
    )
    print(f"written to {args.out} in {summary['seconds']:.0f} s:")
    for key, path in summary["files"].items():
        print(f"  {key:12s} {path}")
    return 0


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
        help="reproduce the paper's tables (MNIST: Tables 1-2; ImageNet: Tables 1-3)",
        description="Runs the six attacks with the paper's settings and writes results.json, "
        "report.md (ours beside the paper's), CSV, per-image JSONL records (resumable with "
        "--resume) and figures to --out. With TF_CONFIG set (both datasets), a multi-worker "
        "run: every worker runs the same command on a shared --out, attacks its share of the "
        "batches and records it in --out/workers/worker-<i>; worker 0 (the chief) merges the "
        "records and writes the results.",
    )
    datasets = reproduce.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    mnist = datasets.add_parser(
        "mnist",
        allow_abbrev=False,
        help="Tables 1-2 on the MNIST network C4, plain and adversarially trained",
        description="The paper's MNIST protocol on C4 (shipped weights, plain and adversarially "
        "trained) and the shipped test digits (or tensorflow-datasets' when installed).",
    )
    imagenet = datasets.add_parser(
        "imagenet",
        allow_abbrev=False,
        help="ImageNet: real photos on an offline pretrained network, or the NIPS 2017 set",
        description="Without --data: the 20 labelled ImageNet photos shipped with foolbox "
        "against a real pretrained network that works offline (EfficientNet-Lite0 by default), "
        "with a converged C&W / sC&W and adversarials that survive an 8-bit PNG (preset "
        "imagenet-photos), perceptual measures and Fig. 1 on the photos. With --data: the "
        "paper's protocol (preset imagenet) on the NIPS 2017 dev set.",
    )
    for sub, default_batch in ((mnist, 100), (imagenet, 10)):
        sub.add_argument("--n", type=int, default=None, help="number of test images")
        sub.add_argument(
            "--quick",
            action="store_true",
            help="fewer iterations than the full protocol (a smoke run, flagged in the report)"
            + (
                f"; without --n, the first {QUICK_MNIST_IMAGES} test images" if sub is mnist else ""
            ),
        )
        sub.add_argument("--out", default="tfsmooth-results", help="output directory")
        sub.add_argument("--resume", action="store_true", help="continue an interrupted run")
        sub.add_argument(
            "--overwrite",
            action="store_true",
            help="replace the results of an earlier run (or other files) in --out; with "
            "--resume, continue what belongs to this run and replace the rest",
        )
        sub.add_argument(
            "--batch-size", type=int, default=default_batch, help="images per batch (>= 1)"
        )
        sub.add_argument("--attacks", nargs="+", default=None, help="subset of the attacks")
        sub.add_argument("--no-progress", action="store_true", help="no progress bars")
        sub.add_argument("--devices", default=None, metavar="DEVICES", help=DEVICES_HELP)
        sub.add_argument(
            "--override",
            action="append",
            default=None,
            metavar="ATTACK:KEY=VALUE",
            help="change one setting of a selected attack, e.g. 'C&W:steps=100' or "
            "'sC&W:smoother.max_iter=20'; repeatable, recorded in results.json",
        )
        sub.set_defaults(handler=_cmd_reproduce)
    mnist.add_argument("--models", nargs="+", default=None, help="subset of c4, c4-adv")
    mnist.add_argument("--source", default="auto", help="MNIST source: auto, tfds, keras, package")
    imagenet.add_argument(
        "--data", default=None, help="the NIPS 2017 dev set directory (default: sample photos)"
    )
    imagenet.add_argument(
        "--model",
        default="efficientnet_lite0",
        help="efficientnet_lite0/1/2 (offline), inception_v3 or resnet_v2_50 (TF-Hub, from "
        "$TFHUB_CACHE_DIR), a SavedModel directory or a .keras file",
    )
    imagenet.add_argument(
        "--preset",
        default=None,
        help="imagenet (the paper's settings) or imagenet-photos (converged C&W, 8-bit); "
        "default imagenet-photos on the sample photos, imagenet with --data",
    )
    imagenet.add_argument(
        "--adv-checkpoint",
        default=None,
        help="TF1-slim checkpoint of the adversarially trained InceptionV3 (Table 2)",
    )
    imagenet.add_argument(
        "--defense",
        action="store_true",
        help="Table 3: transfer the attacks to the model behind the bilateral filter",
    )
    imagenet.add_argument(
        "--transfer",
        action="store_true",
        help="Table 3: transfer the attacks to the --adv-checkpoint model",
    )
    imagenet.add_argument(
        "--cache-dir",
        default=None,
        help="TF-Hub cache ($TFHUB_CACHE_DIR), or the cache of converted EfficientNet weights "
        "($TFSMOOTH_CACHE_DIR, default ~/.cache/tfsmooth)",
    )

    attack = commands.add_parser(
        "attack",
        help="attack your own images with your own model (SavedModel or .keras)",
        description="Attacks every image of --images with one attack of --preset and "
        "writes the adversarial images and the perturbations as PNGs, per-image JSONL records "
        "(resumable with --resume) and summary.json to --out. The model takes images in [0, 1] "
        "(else give --preprocessing). Without --labels, the labels are the model's own "
        "predictions on the clean images.",
    )
    attack.add_argument(
        "--model",
        required=True,
        help="SavedModel directory, .keras file, or "
        "inception_v3 / resnet_v2_50 from the TF-Hub cache",
    )
    attack.add_argument("--images", required=True, help="directory of PNG / JPEG images")
    attack.add_argument(
        "--attack", required=True, choices=["scw", "cw", "pgd2", "spgd2", "fgsm", "ifgsm"]
    )
    attack.add_argument("--out", default="tfsmooth-attack", help="output directory")
    attack.add_argument(
        "--labels",
        default="predicted",
        help="'predicted' (default: the model's own predictions) or a CSV file with the "
        "columns file,label",
    )
    attack.add_argument("--n", type=int, default=None, help="attack only the first N images")
    attack.add_argument("--resume", action="store_true", help="continue an interrupted run")
    attack.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the results of an earlier run (or other files) in --out; with "
        "--resume, continue what belongs to this run and replace the rest",
    )
    attack.add_argument(
        "--epsilon",
        type=float,
        nargs="+",
        default=None,
        help="distortion target(s) of fgsm/ifgsm (Linf) or pgd2/spgd2 (L2); default the "
        "paper's: 0.1255, or 1 2 3 4 5 6",
    )
    attack.add_argument(
        "--input-size",
        type=int,
        nargs=2,
        default=None,
        metavar=("H", "W"),
        help="size the images are cropped and resized to (default: the model's fixed size, "
        "else the images' own)",
    )
    attack.add_argument(
        "--preprocessing",
        choices=["tf", "torch", "caffe"],
        default=None,
        help="map the [0, 1] images for a model that expects other inputs",
    )
    attack.add_argument("--batch-size", type=int, default=8, help="images per batch (>= 1)")
    attack.add_argument(
        "--preset",
        default="imagenet-photos",
        help="imagenet-photos (default: a converged C&W / sC&W; adversarials counted only if "
        "they survive an 8-bit PNG, so every PNG written is adversarial) or imagenet (the "
        "paper's settings)",
    )
    attack.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    attack.add_argument(
        "--override",
        action="append",
        default=None,
        metavar="ATTACK:KEY=VALUE",
        help="change one attack setting, e.g. 'sC&W:steps=100'",
    )
    attack.add_argument("--cache-dir", default=None, help="TF-Hub cache ($TFHUB_CACHE_DIR)")
    attack.add_argument("--no-progress", action="store_true", help="no progress bar")
    attack.add_argument("--devices", default=None, metavar="DEVICES", help=DEVICES_HELP)
    attack.set_defaults(handler=_cmd_attack)

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


def _is_tensorflow_error(err: BaseException) -> bool:
    """Whether ``err`` is a ``tf.errors.OpError`` (checked without importing TensorFlow)."""
    tf_errors = sys.modules.get("tensorflow.python.framework.errors_impl")
    op_error = getattr(tf_errors, "OpError", None)
    return op_error is not None and isinstance(err, op_error)


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
    except _UsageError as err:
        print(f"tfsmooth {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except (ValueError, TypeError, OSError, ImportError) as err:
        print(f"tfsmooth {args.command}: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        if not _is_tensorflow_error(err):
            raise
        # e.g. a SavedModel that rejects the images it is given: TF's message, first line only
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(f"tfsmooth {args.command}: error: {type(err).__name__}: {first}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tfsmooth {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
