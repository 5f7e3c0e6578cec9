"""Makes the figures of the documentation with tfsmooth itself.

Usage (from the repository root)::

    python docs/make_figures.py            # writes docs/_static/smoothing.png

The figure smooths white noise ``z`` with the graph of a natural photo (scikit-image's
``chelsea``, downsized to 128x128): the photo, ``z``, and the normalized smoothing
:math:`\\hat{s}_\\alpha(z)` for alpha = 0.95 and alpha = 0.997. Perturbations are shown mapped
to [0, 1] with zero at mid-grey (``0.5 + p / (2 max|p|)`` per panel). Needs matplotlib and
scikit-image (``pip install matplotlib scikit-image``).
"""

from __future__ import annotations

import argparse
import io
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfsmooth.smoothing import Smoother  # noqa: E402

HERE = pathlib.Path(__file__).resolve().parent
SIZE = 128
ALPHAS = (0.95, 0.997)


def guide_image(size: int = SIZE) -> tf.Tensor:
    """The ``chelsea`` photo, centre-cropped to a square and resized, ``[1, size, size, 3]``."""
    import skimage.data

    photo = skimage.data.chelsea().astype(np.float32) / 255.0
    height, width = photo.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = photo[top : top + side, left : left + side]
    resized = tf.image.resize(square[None], [size, size], antialias=True)
    return tf.clip_by_value(resized, 0.0, 1.0)


def to_display(perturbation: np.ndarray) -> np.ndarray:
    """Maps a signed perturbation to [0, 1], zero at 0.5, symmetric in its largest magnitude."""
    scale = 2.0 * float(np.abs(perturbation).max()) or 1.0
    return np.clip(0.5 + perturbation / scale, 0.0, 1.0)


def smoothing_figure(path: pathlib.Path, *, seed: int = 0, size: int = SIZE) -> None:
    """Writes the smoothing figure (4 panels) as a palette PNG to ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    guide = guide_image(size)
    z = tf.random.stateless_normal(guide.shape, seed=[seed, 0])
    panels = [("image $x_o$", guide[0].numpy()), ("white noise $z$", to_display(z[0].numpy()))]
    for alpha in ALPHAS:
        smoother = Smoother(alpha, max_iter=3000, tol=1e-6)
        result = smoother.bind(guide).smooth(z)
        iterations = int(tf.reduce_max(result.iterations))
        print(f"alpha={alpha}: {iterations} CG iterations")
        title = rf"$\hat{{s}}_\alpha(z)$, $\alpha={alpha}$"
        panels.append((title, to_display(result.output[0].numpy())))

    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9))
    for ax, (title, image) in zip(axes, panels):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.axis("off")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    # A 256-colour palette keeps the noise panel small enough to commit.
    buffer.seek(0)
    image = Image.open(buffer).convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)")


def main() -> None:
    parser = argparse.ArgumentParser(description="Make the documentation figures.")
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "_static" / "smoothing.png")
    args = parser.parse_args()
    smoothing_figure(args.out)


if __name__ == "__main__":
    main()
