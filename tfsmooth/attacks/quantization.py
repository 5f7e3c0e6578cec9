r"""Adversarials that survive being saved: rounding to the bit depth of the output file.

A minimal-distortion attack on a photo may find a perturbation far below one grey level
(an L2 of 0.2 over 224×224×3 pixels is 5e-4 per pixel, an eighth of 1/255): written as an 8-bit
PNG and read back, such an "adversarial" is the clean image again. With ``quantize_bits=8`` an
attack counts an example as adversarial only if it stays adversarial on the grid of
:math:`2^8 - 1` levels between the bounds, and returns the image on that grid, so what it reports
is what a file delivers.

The perturbation is rounded, not the image: :math:`\mathbf{x}_q = \mathbf{x}_o +
q(\mathbf{x} - \mathbf{x}_o)` with :math:`q` rounding to multiples of the level
:math:`(h - l) / (2^b - 1)`. When the clean image :math:`\mathbf{x}_o` is itself on the grid (an
8-bit photo, or any image passed through :func:`quantize_images`), :math:`\mathbf{x}_q` is on the
grid and inside the bounds, so saving it loses nothing. Distortion-targeting attacks round
towards zero (every component shrinks, so :math:`\mathbf{x}_q` stays in the epsilon ball of any
norm); minimization attacks round to the nearest level.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v

__all__ = ["check_on_grid", "check_quantize_bits", "quantize_images", "quantize_perturbation"]

#: Largest distance from the grid, in levels, that :func:`check_on_grid` accepts.
GRID_TOLERANCE = 1e-3


def check_quantize_bits(bits: Any) -> int | None:
    """``None`` or a bit depth between 1 and 16.

    Example:
        >>> check_quantize_bits(8), check_quantize_bits(None)
        (8, None)
    """
    if bits is None:
        return None
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"`quantize_bits` must be None or an int (e.g. 8), got {bits!r}")
    if not 1 <= int(bits) <= 16:
        raise ValueError(f"`quantize_bits` must be between 1 and 16, got {bits}")
    return int(bits)


def _levels(bits: int, dtype: tf.DType) -> tf.Tensor:
    return tf.constant(float(2**bits - 1), dtype)


def quantize_images(
    images: Any, bits: int = 8, bounds: tuple[float, float] = (0.0, 1.0), *, name: str | None = None
) -> tf.Tensor:
    """Rounds images to the nearest of the :math:`2^b` levels between ``bounds``.

    Args:
        images: float ``[batch, height, width, channels]`` inside ``bounds``.
        bits: bit depth, 1..16 (8 for PNG / JPEG).
        bounds: ``(low, high)`` pixel range.
        name: optional name scope.

    Returns:
        The rounded images, same shape and dtype.

    Example:
        >>> quantize_images(tf.constant([[[[0.5]]]]), 8).numpy().ravel() * 255
        array([128.], dtype=float32)
    """
    checked = check_quantize_bits(bits)
    if checked is None:
        raise ValueError("`bits` must be an int between 1 and 16, got None")
    with tf.name_scope(name or "quantize_images"):
        images = v.as_float_tensor(images, "images")
        low, high = (tf.cast(b, images.dtype) for b in bounds)
        levels = _levels(checked, images.dtype)
        unit = tf.clip_by_value((images - low) / (high - low), 0.0, 1.0)
        return low + tf.round(unit * levels) / levels * (high - low)


def quantize_perturbation(
    clean: tf.Tensor,
    adversarial: tf.Tensor,
    bits: int,
    bounds: tuple[float, float],
    *,
    toward_zero: bool = False,
) -> tf.Tensor:
    """``clean + q(adversarial - clean)``: the perturbation rounded to whole levels.

    Args:
        clean: clean images ``[N, H, W, C]`` (on the grid for the result to be on it).
        adversarial: images of the same shape.
        bits: bit depth.
        bounds: ``(low, high)``.
        toward_zero: round every component towards zero (keeps any epsilon ball) instead of to
            the nearest level.

    Example:
        >>> x0 = tf.zeros([1, 1, 2, 1])
        >>> x = tf.constant([[[[0.7 / 255], [1.6 / 255]]]])
        >>> np.round(quantize_perturbation(x0, x, 8, (0.0, 1.0)).numpy().ravel() * 255, 3)
        array([1., 2.], dtype=float32)
    """
    dtype = adversarial.dtype
    low, high = (tf.cast(b, dtype) for b in bounds)
    step = (high - low) / _levels(bits, dtype)
    levels = (adversarial - clean) / step
    rounded = tf.sign(levels) * tf.floor(tf.abs(levels)) if toward_zero else tf.round(levels)
    return tf.clip_by_value(clean + rounded * step, low, high)


def check_on_grid(images: tf.Tensor, bits: int, bounds: tuple[float, float], name: str) -> None:
    """Raises ``ValueError`` if eager ``images`` do not lie on the ``bits`` grid of ``bounds``.

    Example:
        >>> check_on_grid(tf.constant([0.0, 1.0]), 8, (0.0, 1.0), "images")
    """
    value = v.static_value(images)
    if value is None:
        return
    low, high = bounds
    units = (np.asarray(value, np.float64) - low) / (high - low) * (2**bits - 1)
    off = float(np.max(np.abs(units - np.round(units)))) if units.size else 0.0
    if off > GRID_TOLERANCE:
        raise ValueError(
            f"quantize_bits={bits} needs clean `{name}` on the {bits}-bit grid of the bounds "
            f"{bounds} (as read from an 8-bit file); they are up to {off:.3f} levels off it. "
            f"Round them first with tfsmooth.attacks.quantize_images({name}, {bits})"
        )
