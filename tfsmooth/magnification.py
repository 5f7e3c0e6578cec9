r"""Adversarial magnification (paper Appendix A): a local normalization that reveals perturbations.

Given an image :math:`x : \Omega \to \mathbb{R}^d`, its *adversarial magnification* is

.. math::

    \operatorname{mag}(x) = \frac{x - \mu_x(x)}{\eta\, \sigma_x(x) + (1 - \eta)\, \sigma_\Omega(x)},

computed independently per channel, where

- :math:`\mu_x(x) = b(x)` is the bilateral filter of :math:`x` (local mean);
- :math:`\sigma_x(x) = b_x\big((x - \mu_x(x))^2\big)^{1/2}` is the local standard deviation (the
  extracted paper text garbles the exponent; a standard deviation needs 1/2), with
  :math:`b_x` the bilateral filter *guided* by :math:`x`: the range kernel compares pixels of
  :math:`x`, not of the squared residual it averages;
- :math:`\sigma_\Omega(x)` is the global standard deviation of :math:`x` over the image domain
  :math:`\Omega` (one value per image and channel);
- :math:`\eta \in [0, 1]` sets how much local variation is magnified (0.8 in the paper's Fig. 1).

Both filters multiply a spatial (*domain*) Gaussian
:math:`\exp(-\lVert p - q\rVert^2 / 2\sigma_s^2)` by a photometric (*range*) Gaussian
:math:`\exp(-\lVert x(p) - x(q)\rVert^2 / 2\sigma_r^2)`, where the photometric distance
is a single scalar per pixel pair: the Euclidean norm over *all* channels.
The paper uses :math:`\sigma_s = \sigma_r = 5`, with :math:`\sigma_r` in grey levels ``0..255``.

This module also holds the batched bilateral filter core used by :mod:`tfsmooth.defenses`
(layer rule: ``magnification`` sits below ``defenses``).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import tensorflow as tf

from tfsmooth import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["magnify", "to_display"]

#: Grey levels of an 8-bit image: ``sigma_range`` of :func:`magnify` is in units of ``1 / 255`` of
#: the image's value range.
GREY_LEVELS = 255.0


#: Windows with at most this many offsets are unrolled into the graph; larger ones use a loop.
_MAX_UNROLLED = 25


def _default_radius(sigma_spatial: float) -> int:
    """Window radius used when none is given: ``ceil(2 * sigma_spatial)``, at least 1."""
    return max(1, math.ceil(2.0 * sigma_spatial))


def _check_radius(radius: Any, sigma_spatial: float) -> int:
    if radius is None:
        return _default_radius(sigma_spatial)
    return v.check_int_at_least(radius, "radius", 0)


def _compute_dtype(dtype: tf.DType) -> tf.DType:
    """Half precision inputs are filtered in float32 (exp of squared distances underflows)."""
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


@tf.autograph.experimental.do_not_convert
def _bilateral(
    values: tf.Tensor,
    guide: tf.Tensor,
    *,
    sigma_spatial: float,
    sigma_range: float,
    radius: int,
    residual: bool = False,
) -> tf.Tensor:
    r"""Core of the (guided) bilateral filter; no input checks.

    Computes, per pixel :math:`i` and channel,

    .. math::

        y_i = \frac{\sum_j w_{ij}\, v_j}{\sum_j w_{ij}}, \qquad
        w_{ij} = e^{-\lVert p_i - p_j\rVert^2 / 2\sigma_s^2}\,
                 e^{-\lVert g_i - g_j\rVert^2 / 2\sigma_r^2},

    over the ``(2 radius + 1)^2`` window of pixels ``j`` *inside* the image (zero padding plus a
    validity mask; the normalization uses only the weights actually summed). With
    ``residual=True`` it returns :math:`\sum_j w_{ij} (v_j - v_i) / \sum_j w_{ij} = y_i - v_i`,
    which is exactly zero where the window is constant (no cancellation error).

    A loop over the window offsets accumulates numerator and denominator, so the forward pass
    needs memory ``O(B H W C)`` whatever the radius: a static Python loop eagerly and for windows of
    at most ``_MAX_UNROLLED`` offsets, a :func:`tf.while_loop` for larger windows in graph mode
    (small graphs, fast tracing). The
    centre weight is 1, so the denominator is at least 1.

    Args:
        values: ``[B, H, W, C]`` floating point.
        guide: ``[B, H, W, G]`` of the same dtype, compared by the range kernel.
        sigma_spatial: domain kernel standard deviation, pixels.
        sigma_range: range kernel standard deviation, in the units of ``guide``.
        radius: window radius, ``>= 0``.
        residual: return ``y - values`` computed as above.

    Returns:
        ``[B, H, W, C]``, dtype of ``values``.
    """
    height, width = tf.shape(values)[1], tf.shape(values)[2]
    pad = [[0, 0], [radius, radius], [radius, radius], [0, 0]]
    values_p = tf.pad(values, pad)
    guide_p = tf.pad(guide, pad)
    inside_p = tf.pad(tf.ones(tf.stack([1, height, width, 1]), values.dtype), pad)
    inv_2s2 = 1.0 / (2.0 * sigma_range * sigma_range)
    size = tf.stack([-1, height, width, -1])

    def accumulate(d_row: Any, d_col: Any, spatial: Any, numerator: Any, denominator: Any) -> Any:
        begin = tf.stack([0, radius + d_row, radius + d_col, 0])
        guide_j = tf.slice(guide_p, begin, size)
        dist2 = tf.reduce_sum(tf.square(guide_j - guide), axis=-1, keepdims=True)
        weight = tf.exp(-dist2 * inv_2s2) * (spatial * tf.slice(inside_p, begin, size))
        values_j = tf.slice(values_p, begin, size)
        if residual:
            values_j = values_j - values
        numerator = numerator + weight * values_j
        denominator = denominator + weight
        numerator.set_shape(values.shape)  # tf.slice with a dynamic size loses the static shape
        denominator.set_shape(values.shape[:-1].concatenate([1]))
        return numerator, denominator

    numerator = tf.zeros_like(values)
    denominator = tf.zeros_like(values[..., :1])
    side = 2 * radius + 1
    if side * side <= _MAX_UNROLLED or tf.executing_eagerly():
        for d_row in range(-radius, radius + 1):
            for d_col in range(-radius, radius + 1):
                spatial = math.exp(-(d_row * d_row + d_col * d_col) / (2.0 * sigma_spatial**2))
                numerator, denominator = accumulate(d_row, d_col, spatial, numerator, denominator)
    else:
        # A large window as a loop keeps the graph small (tracing 441 unrolled shifts takes
        # seconds); iterations run one after the other, so memory stays O(B H W C).
        def body(k: Any, numerator: Any, denominator: Any) -> Any:
            d_row, d_col = k // side - radius, k % side - radius
            dist2 = tf.cast(d_row * d_row + d_col * d_col, values.dtype)
            spatial = tf.exp(-dist2 / (2.0 * sigma_spatial**2))
            return (k + 1, *accumulate(d_row, d_col, spatial, numerator, denominator))

        _, numerator, denominator = tf.while_loop(
            lambda k, *_: k < side * side,
            body,
            (tf.constant(0), numerator, denominator),
            parallel_iterations=1,
        )
    return numerator / denominator


def magnify(
    images: Any,
    *,
    eta: float = 0.8,
    sigma_spatial: float = 5.0,
    sigma_range: float = 5.0,
    radius: int | None = None,
    value_range: float = 1.0,
    epsilon: float = 1e-6,
    name: str | None = None,
) -> tf.Tensor:
    r"""Adversarial magnification of a batch of images (paper Appendix A, eq. 22).

    .. math::

        \operatorname{mag}(x) = \frac{x - b(x)}
            {\eta\, b_x\big((x - b(x))^2\big)^{1/2} + (1 - \eta)\, \sigma_\Omega(x)}

    per channel, with :math:`b` the bilateral filter, :math:`b_x` the same filter guided by
    :math:`x`, the photometric distance taken over all channels, and :math:`\sigma_\Omega(x)` the
    standard deviation of the channel over the whole image. Look at ``mag(x_adv) - mag(x)`` or at
    ``mag(x_adv)`` beside ``mag(x)``; map to ``[0, 1]`` with :func:`to_display`.

    Units: the paper gives "5" for both kernels without units; we read ``sigma_spatial`` in
    pixels and ``sigma_range`` in grey levels of an 8-bit image, i.e. in units of
    ``value_range / 255``. For images in ``[0, 1]``
    (``value_range=1``) the default ``sigma_range=5`` is ``5 / 255`` in image units; pass
    ``value_range=255`` for images in ``[0, 255]``. Then ``magnify(a * x, value_range=a)`` equals
    ``magnify(x, value_range=1)``, and the result is invariant to adding a constant to ``x``.

    Args:
        images: ``[batch, height, width, channels]`` floating point.
        eta: :math:`\eta \in [0, 1]`, weight of the local against the global standard deviation
            (the paper's Fig. 1 uses 0.8).
        sigma_spatial: domain kernel standard deviation in pixels, > 0 (paper: 5).
        sigma_range: range kernel standard deviation in grey levels ``0..255``, > 0 (paper: 5).
        radius: window radius in pixels; default ``ceil(2 * sigma_spatial)`` (10 for the paper's
            setting), at least 1.
        value_range: width of the images' value range (1 for ``[0, 1]``, 255 for ``[0, 255]``).
        epsilon: floor on the denominator, in units of ``value_range``, so that flat images give
            finite values (a constant image gives exactly 0).
        name: optional name scope.

    Returns:
        ``[batch, height, width, channels]``, dtype of ``images``: values in units of the local
        standard deviation, roughly in ``[-3, 3]``, signed.

    Raises:
        ValueError: bad rank, sizes or parameter values.
        TypeError: non-float images or non-numeric parameters.

    Example:
        >>> x = tf.fill([1, 8, 8, 3], 0.5)
        >>> float(tf.reduce_max(tf.abs(magnify(x, sigma_spatial=1.0))))  # flat: nothing to see
        0.0
        >>> noisy = x + 0.01 * tf.random.stateless_normal([1, 8, 8, 3], seed=[1, 2])
        >>> bool(tf.reduce_max(tf.abs(magnify(noisy, sigma_spatial=1.0))) > 1.0)
        True
    """
    if isinstance(eta, bool) or not isinstance(eta, (int, float)):
        raise TypeError(f"`eta` must be a number in [0, 1], got {eta!r} ({type(eta).__name__})")
    if not 0.0 <= float(eta) <= 1.0:
        raise ValueError(f"`eta` must lie in [0, 1], got {eta!r}")
    sigma_spatial = v.check_positive(sigma_spatial, "sigma_spatial")
    sigma_range = v.check_positive(sigma_range, "sigma_range")
    value_range = v.check_positive(value_range, "value_range")
    epsilon = v.check_positive(epsilon, "epsilon")
    radius = _check_radius(radius, sigma_spatial)
    with tf.name_scope(name or "magnify"):
        images = v.check_image_batch(images, "images")
        dtype = images.dtype
        x = tf.cast(images, _compute_dtype(dtype))
        sigma_r = sigma_range * value_range / GREY_LEVELS
        kwargs: dict[str, Any] = {
            "sigma_spatial": sigma_spatial,
            "sigma_range": sigma_r,
            "radius": radius,
        }
        detail = -_bilateral(x, x, residual=True, **kwargs)  # x - b(x)
        local_var = _bilateral(tf.square(detail), x, **kwargs)  # guided by x
        local_std = tf.sqrt(tf.maximum(local_var, 0.0))
        global_std = tf.math.reduce_std(x, axis=[1, 2], keepdims=True)
        denominator = eta * local_std + (1.0 - eta) * global_std
        denominator = tf.maximum(denominator, epsilon * value_range)
        return tf.cast(detail / denominator, dtype)


def to_display(magnified: Any, *, clip: float = 3.0, name: str | None = None) -> tf.Tensor:
    r"""Maps a magnification into ``[0, 1]`` for display or saving as PNG.

    Linear map :math:`0.5 + m / (2\,\mathrm{clip})`, clipped to ``[0, 1]``: zero becomes mid grey,
    ``±clip`` local standard deviations become black / white.

    Args:
        magnified: output of :func:`magnify`, any shape, floating point.
        clip: the magnitude mapped to 0 and 1, > 0.
        name: optional name scope.

    Returns:
        Tensor of the same shape and dtype with values in ``[0, 1]``.

    Example:
        >>> to_display(tf.constant([-6.0, -3.0, 0.0, 1.5, 3.0])).numpy()
        array([0.  , 0.  , 0.5 , 0.75, 1.  ], dtype=float32)
    """
    clip = v.check_positive(clip, "clip")
    with tf.name_scope(name or "to_display"):
        magnified = v.as_float_tensor(magnified, "magnified")
        return tf.clip_by_value(0.5 + magnified / (2.0 * clip), 0.0, 1.0)
