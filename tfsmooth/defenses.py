r"""Input-transform defenses: the bilateral filter of the paper's Table 3.

The paper's first counter-measure (section 5.4, Table 3) filters the input of InceptionV3 with a
bilateral filter of standard deviation 0.5 in the domain and 0.2 in the range kernel. We read
these as 0.5 *pixels* and 0.2 in the units of images in ``[0, 1]`` (about 51 grey levels; a range
of 0.2 grey levels would leave every image unchanged). :data:`TABLE3_SIGMA_SPATIAL` and
:data:`TABLE3_SIGMA_RANGE` hold them; :meth:`BilateralFilter.paper` builds that filter.

.. math::

    y_i = \frac{\sum_j w_{ij}\, x_j}{\sum_j w_{ij}}, \qquad
    w_{ij} = \exp\!\left(-\frac{\lVert p_i - p_j\rVert^2}{2\sigma_s^2}\right)
             \exp\!\left(-\frac{\lVert g_i - g_j\rVert^2}{2\sigma_r^2}\right),

per channel, over the ``(2r + 1)^2`` window around pixel ``i``, with :math:`g` the guide (the
image itself by default) and :math:`\lVert\cdot\rVert` the Euclidean norm over *all* channels of
the guide (one photometric distance for every channel, as in the paper's Appendix A).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.magnification import _bilateral, _check_radius, _compute_dtype

logger = logging.getLogger(__name__)

__all__ = ["TABLE3_SIGMA_RANGE", "TABLE3_SIGMA_SPATIAL", "BilateralFilter", "bilateral_filter"]

#: Domain kernel standard deviation of the paper's Table 3 defense, in pixels.
TABLE3_SIGMA_SPATIAL = 0.5
#: Range kernel standard deviation of the paper's Table 3 defense, for images in ``[0, 1]``.
TABLE3_SIGMA_RANGE = 0.2


def bilateral_filter(
    images: Any,
    *,
    sigma_spatial: float,
    sigma_range: float,
    guide: Any = None,
    radius: int | None = None,
    name: str | None = None,
) -> tf.Tensor:
    r"""Batched (joint) bilateral filter, pure TensorFlow and differentiable.

    Each output pixel is the average of the pixels in its ``(2 radius + 1)^2`` window, weighted by
    a spatial Gaussian of their distance in pixels times a range Gaussian of the Euclidean
    distance between their guide values over all guide channels. Every channel is averaged with
    the same weights.

    Borders: only pixels inside the image take part; each output is normalized by the sum of the
    weights actually used (zero padding plus a validity mask), so a constant image is returned
    unchanged everywhere, borders included.

    Gradients: the filter is differentiated exactly by TensorFlow. With ``guide=None`` the guide is
    ``images`` itself, so gradients also flow through the range weights; pass
    ``guide=tf.stop_gradient(images)`` to treat the weights as constants. The window is a loop
    over its ``(2 radius + 1)^2`` shifts (unrolled up to 25, a ``tf.while_loop`` in graphs beyond)
    accumulating numerator and denominator: the forward pass
    needs memory ``O(B H W C)``, independent of the radius (the backward pass keeps each shift's
    weights). Works eagerly and inside :func:`tf.function`, also with unknown height and width.

    Args:
        images: ``[batch, height, width, channels]`` floating point. Half precision is filtered in
            float32; the result keeps the input dtype.
        sigma_spatial: domain kernel standard deviation in pixels, > 0.
        sigma_range: range kernel standard deviation in the units of the guide (for images in
            ``[0, 1]``, 0.2 is about 51 grey levels), > 0.
        guide: optional ``[batch, height, width, G]`` image compared by the range kernel (any
            number of channels ``G``), cast to the dtype of ``images``; default ``images``.
        radius: window radius in pixels, ``>= 0``; default ``ceil(2 * sigma_spatial)``, at least 1.
        name: optional name scope.

    Returns:
        Filtered images, same shape and dtype as ``images``.

    Raises:
        ValueError: rank other than 4, empty sizes, NaN/Inf, non-positive sigmas, negative radius,
            or a guide whose batch, height or width differs from ``images``.
        TypeError: integer or boolean images or guide, non-numeric parameters.

    Example:
        >>> x = tf.constant([[0.0, 0.0, 1.0, 1.0]])[None, :, :, None]  # a step edge, [1, 1, 4, 1]
        >>> y = bilateral_filter(x, sigma_spatial=1.0, sigma_range=0.1)
        >>> y[0, 0, :, 0].numpy().round(3)  # the edge is kept
        array([0., 0., 1., 1.], dtype=float32)
        >>> y = bilateral_filter(x, sigma_spatial=1.0, sigma_range=10.0)  # ~ Gaussian blur
        >>> y[0, 0, :, 0].numpy().round(3)
        array([0.077, 0.315, 0.685, 0.923], dtype=float32)
    """
    sigma_spatial = v.check_positive(sigma_spatial, "sigma_spatial")
    sigma_range = v.check_positive(sigma_range, "sigma_range")
    radius = _check_radius(radius, sigma_spatial)
    with tf.name_scope(name or "bilateral_filter"):
        images = v.check_image_batch(images, "images")
        dtype = images.dtype
        work = _compute_dtype(dtype)
        values = tf.cast(images, work)
        if guide is None:
            guide_t = values
        else:
            guide_t = tf.cast(v.check_image_batch(guide, "guide"), work)
            _check_same_grid(images, guide_t)
        out = _bilateral(
            values, guide_t, sigma_spatial=sigma_spatial, sigma_range=sigma_range, radius=radius
        )
        return tf.cast(out, dtype)


def _check_same_grid(images: tf.Tensor, guide: tf.Tensor) -> None:
    """Raises ``ValueError`` if batch, height or width of ``guide`` differ from ``images``."""
    for axis, label in ((0, "batch size"), (1, "height"), (2, "width")):
        a, b = images.shape[axis], guide.shape[axis]
        if a is not None and b is not None and a != b:
            raise ValueError(
                f"`guide` must have the batch size, height and width of `images` "
                f"{tuple(images.shape)}, got shape {tuple(guide.shape)} (its {label} differs)"
            )


class BilateralFilter:
    """The bilateral filter as an input transform (defense of the paper's Table 3).

    A callable ``images -> images`` usable as the ``preprocessing`` of
    :class:`tfsmooth.models.Model` and differentiable end to end. Because a callable replaces the
    model's named preprocessing, ``then`` chains one after the filter (e.g. ``"tf"`` for
    InceptionV3, which maps ``[0, 1]`` to ``[-1, 1]``). The filter sees images in the model's
    ``bounds`` (``[0, 1]``), the units of ``sigma_range``.

    Args:
        sigma_spatial: domain kernel standard deviation in pixels, > 0 (paper: 0.5).
        sigma_range: range kernel standard deviation in image units, > 0 (paper: 0.2 for
            ``[0, 1]``).
        radius: window radius in pixels; default ``ceil(2 * sigma_spatial)``, at least 1.
        then: ``None``, a name from :data:`tfsmooth.models.base.PREPROCESSING` or a callable,
            applied to the filtered images.

    Example:
        >>> bf = BilateralFilter.paper()
        >>> bf
        BilateralFilter(sigma_spatial=0.5, sigma_range=0.2, radius=1)
        >>> float(tf.reduce_max(tf.abs(bf(tf.fill([2, 5, 5, 3], 0.25)) - 0.25)))  # constant kept
        0.0
        >>> BilateralFilter(**bf.get_config()).get_config() == bf.get_config()
        True
    """

    def __init__(
        self,
        sigma_spatial: float,
        sigma_range: float,
        *,
        radius: int | None = None,
        then: str | Callable[[tf.Tensor], tf.Tensor] | None = None,
    ) -> None:
        self.sigma_spatial = v.check_positive(sigma_spatial, "sigma_spatial")
        self.sigma_range = v.check_positive(sigma_range, "sigma_range")
        self.radius = _check_radius(radius, self.sigma_spatial)
        self._then_fn: Callable[[tf.Tensor], tf.Tensor] | None
        if isinstance(then, str):
            from tfsmooth.models.base import PREPROCESSING

            v.check_choice(then, "then", PREPROCESSING)
            self._then_fn = PREPROCESSING[then]
        elif then is None or callable(then):
            self._then_fn = then
        else:
            raise TypeError(
                "`then` must be None, a preprocessing name or a callable, "
                f"got {type(then).__name__}"
            )
        self.then = then

    @classmethod
    def paper(cls, **kwargs: Any) -> BilateralFilter:
        """The Table 3 filter: ``sigma_spatial=0.5`` px, ``sigma_range=0.2`` (``[0, 1]`` units)."""
        return cls(TABLE3_SIGMA_SPATIAL, TABLE3_SIGMA_RANGE, **kwargs)

    def __call__(self, images: Any) -> tf.Tensor:
        """Filters ``images`` ``[batch, height, width, channels]`` (then applies ``then``)."""
        out = bilateral_filter(
            images,
            sigma_spatial=self.sigma_spatial,
            sigma_range=self.sigma_range,
            radius=self.radius,
            name="BilateralFilter",
        )
        return self._then_fn(out) if self._then_fn is not None else out

    def get_config(self) -> dict[str, Any]:
        """Constructor arguments; ``BilateralFilter(**config)`` rebuilds the filter."""
        return {
            "sigma_spatial": self.sigma_spatial,
            "sigma_range": self.sigma_range,
            "radius": self.radius,
            "then": self.then,
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> BilateralFilter:
        """Inverse of :meth:`get_config`."""
        return cls(**config)

    def __repr__(self) -> str:
        then = ""
        if self.then is not None:
            then = f", then={self.then!r}" if isinstance(self.then, str) else ", then=<callable>"
        return (
            f"BilateralFilter(sigma_spatial={self.sigma_spatial}, sigma_range={self.sigma_range}, "
            f"radius={self.radius}{then})"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, BilateralFilter) and self.get_config() == other.get_config()

    __hash__ = None  # type: ignore[assignment]
