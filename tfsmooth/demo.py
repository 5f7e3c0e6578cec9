"""The smoothing demo: a random perturbation and its smooth version on a shipped photo.

Everything here is library code (no printing); the CLI's ``tfsmooth demo`` drives it.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import pathlib
import time
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth._io import save_png
from tfsmooth.magnification import magnify, to_display
from tfsmooth.smoothing import Smoother

logger = logging.getLogger(__name__)

__all__ = ["DemoResult", "load_sample_image", "run_smoothing_demo"]

SAMPLE_IMAGE = "astronaut_256.png"


def load_sample_image(path: str | pathlib.Path | None = None) -> np.ndarray:
    """An RGB image as float32 ``[H, W, 3]`` in ``[0, 1]``.

    Args:
        path: an image file; ``None`` loads the photo shipped with the package (scikit-image's
            ``astronaut``, NASA, public domain, resized to 256×256).

    Example:
        >>> load_sample_image().shape
        (256, 256, 3)
    """
    from PIL import Image

    if path is None:
        ref = importlib.resources.files("tfsmooth") / "assets" / SAMPLE_IMAGE
        with importlib.resources.as_file(ref) as file, Image.open(file) as image:
            array = np.asarray(image.convert("RGB"))
    else:
        path = pathlib.Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"image file {str(path)!r} does not exist")
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    return array.astype(np.float32) / 255.0


@dataclasses.dataclass
class DemoResult:
    """What :func:`run_smoothing_demo` wrote and measured."""

    files: dict[str, str]
    l2_norm: float
    cg_iterations: int
    cg_residual: float
    seconds: float
    smoother: dict[str, Any]


def run_smoothing_demo(
    out_dir: str | pathlib.Path,
    *,
    image: str | pathlib.Path | None = None,
    alpha: float = 0.997,
    max_iter: int = 50,
    l2_norm: float = 3.0,
    seed: int = 0,
) -> DemoResult:
    """Smooths white noise guided by a photo and writes the panels of Figure 1's idea as PNGs.

    Writes ``input.png``, ``noise.png`` / ``smooth.png`` (the two perturbations, both scaled to
    the same L2 norm, shown as ``0.5 + r / (2 max|r|)``), ``input+noise.png`` /
    ``input+smooth.png`` (clipped to ``[0, 1]``), the adversarial magnifications (Appendix A) of
    the three images (one contrast for all three: ``0.5 + mag / (2 c)`` with ``c`` the 99th
    percentile of ``|mag(input)|``) and ``panel.png`` with everything side by side.

    Args:
        out_dir: directory to write to (created if needed).
        image: an image file; ``None`` uses the shipped photo.
        alpha: smoothing strength (the paper uses 0.997 on ImageNet).
        max_iter: CG iterations (the paper uses 50).
        l2_norm: L2 norm of both perturbations, pixels in ``[0, 1]``.
        seed: seed of the noise.

    Returns:
        :class:`DemoResult` with the written files and the CG statistics.
    """
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    photo = load_sample_image(image)
    guide = tf.constant(photo[None])
    noise = tf.random.stateless_normal(guide.shape, seed=[seed, 0])
    start = time.perf_counter()
    smoother = Smoother(alpha, max_iter=max_iter, tol=0.0)
    result = smoother.bind(guide).smooth(noise)
    seconds = time.perf_counter() - start
    perturbations = {"noise": noise, "smooth": result.output}
    images: dict[str, np.ndarray] = {"input": photo}
    for key, r in perturbations.items():
        r = r * (l2_norm / tf.norm(r))
        images[key] = (0.5 + r / (2.0 * tf.reduce_max(tf.abs(r))))[0].numpy()
        images[f"input+{key}"] = tf.clip_by_value(guide + r, 0.0, 1.0)[0].numpy()
    magnified = {k: magnify(images[k][None]) for k in ("input", "input+noise", "input+smooth")}
    # One contrast for the three so that they compare: the 99th percentile of |mag(input)|.
    clip = float(np.percentile(np.abs(magnified["input"].numpy()), 99.0)) or 1.0
    for key, value in magnified.items():
        images[f"magnified {key}"] = to_display(value, clip=clip)[0].numpy()
    files = {}
    for key, array in images.items():
        path = out / (key.replace(" ", "_") + ".png")
        save_png(array, path)
        files[key] = str(path)
    order: list[list[str | None]] = [
        ["input", "noise", "smooth", "input+noise", "input+smooth"],
        ["magnified input", None, None, "magnified input+noise", "magnified input+smooth"],
    ]
    blank = np.ones_like(photo)
    rows = [np.concatenate([images[k] if k else blank for k in row], axis=1) for row in order]
    panel = out / "panel.png"
    save_png(np.concatenate(rows, axis=0), panel)
    files["panel"] = str(panel)
    logger.info("demo written to %s", out)
    return DemoResult(
        files=files,
        l2_norm=l2_norm,
        cg_iterations=int(tf.reduce_max(result.iterations)),
        cg_residual=float(tf.reduce_max(result.residual_norm)),
        seconds=seconds,
        smoother=smoother.get_config(),
    )
