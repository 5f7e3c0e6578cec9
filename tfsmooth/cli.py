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
