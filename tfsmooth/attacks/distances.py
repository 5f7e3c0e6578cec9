r"""Per-image distances between batches of images, and projections onto their balls.

For a reference :math:`\mathbf{x}_o` and an image :math:`\mathbf{x}` (one per batch entry),

.. math::

    \operatorname{l2}(\mathbf{x}_o, \mathbf{x}) = \lVert \mathbf{x} - \mathbf{x}_o \rVert_2,
    \qquad
    \operatorname{linf}(\mathbf{x}_o, \mathbf{x}) = \max_i |x_i - x_{o,i}|,

over all pixels and channels; the paper measures distortion by the L2 norm with pixels in
``[0, 1]`` (§5.1). :meth:`Distance.clip_perturbation` projects :math:`\mathbf{x}` onto the ball of
radius :math:`\epsilon` around :math:`\mathbf{x}_o` (L2: rescaling the perturbation; L∞:
clipping it).
"""

from __future__ import annotations

import logging
from typing import Any

import tensorflow as tf

from tfsmooth import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["Distance", "L2Distance", "LinfDistance", "l2", "linf"]

_AXES = (1, 2, 3)


class Distance:
    """A per-image distance: ``distance(reference, images) -> [batch]``."""

    name = ""

    def norm(self, perturbation: tf.Tensor) -> tf.Tensor:
        """Norm of each perturbation ``[batch, H, W, C]`` -> ``[batch]``."""
        raise NotImplementedError

    def __call__(self, reference: Any, images: Any, *, name: str | None = None) -> tf.Tensor:
        """Distance between each image and its reference, shape ``[batch]``, their float dtype.

        Args:
            reference: ``[batch, height, width, channels]``, float.
            images: same shape as ``reference``.
            name: optional name scope.
        """
        with tf.name_scope(name or f"{self.name}_distance"):
            reference = v.as_float_tensor(reference, "reference")
            images = v.as_float_tensor(images, "images", dtype=reference.dtype)
            return self.norm(images - reference)

    def clip_perturbation(
        self, reference: Any, images: Any, epsilon: Any, *, name: str | None = None
    ) -> tf.Tensor:
        """Projects ``images`` onto the ball of radius ``epsilon`` around ``reference``.

        Args:
            reference: ``[batch, height, width, channels]``, float.
            images: same shape as ``reference``.
            epsilon: radius, a scalar or ``[batch]``, >= 0.
            name: optional name scope.

        Returns:
            ``reference + p`` where ``p`` is the perturbation projected onto the ball.
        """
        with tf.name_scope(name or f"clip_{self.name}_perturbation"):
            reference = v.as_float_tensor(reference, "reference")
            images = v.as_float_tensor(images, "images", dtype=reference.dtype)
            epsilon = tf.cast(epsilon, reference.dtype)
            return reference + self.project(images - reference, epsilon)

    def project(self, perturbation: tf.Tensor, epsilon: tf.Tensor) -> tf.Tensor:
        """Projects each perturbation onto the ball of radius ``epsilon`` (scalar or [batch])."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


def _per_image(epsilon: tf.Tensor) -> tf.Tensor:
    """Broadcasts a scalar or ``[batch]`` radius against ``[batch, H, W, C]``."""
    if epsilon.shape.rank == 0:
        return epsilon
    return tf.reshape(epsilon, [-1, 1, 1, 1])


class L2Distance(Distance):
    """Euclidean distance over all pixels and channels of each image.

    Example:
        >>> l2(tf.zeros([1, 2, 2, 1]), tf.fill([1, 2, 2, 1], 0.5)).numpy()
        array([1.], dtype=float32)
    """

    name = "l2"

    def norm(self, perturbation: tf.Tensor) -> tf.Tensor:
        return tf.sqrt(tf.reduce_sum(tf.square(perturbation), axis=_AXES))

    def project(self, perturbation: tf.Tensor, epsilon: tf.Tensor) -> tf.Tensor:
        norms = self.norm(perturbation)
        tiny = tf.constant(1e-12, perturbation.dtype)
        factor = tf.minimum(tf.ones_like(norms), epsilon / tf.maximum(norms, tiny))
        return perturbation * tf.reshape(factor, [-1, 1, 1, 1])


class LinfDistance(Distance):
    """Largest absolute difference over all pixels and channels of each image.

    Example:
        >>> linf(tf.zeros([1, 2, 2, 1]), tf.constant([[[[0.1], [-0.3]], [[0.2], [0.0]]]])).numpy()
        array([0.3], dtype=float32)
    """

    name = "linf"

    def norm(self, perturbation: tf.Tensor) -> tf.Tensor:
        return tf.reduce_max(tf.abs(perturbation), axis=_AXES)

    def project(self, perturbation: tf.Tensor, epsilon: tf.Tensor) -> tf.Tensor:
        eps = _per_image(epsilon)
        return tf.clip_by_value(perturbation, -eps, eps)


#: L2 distance (the paper's distortion :math:`D`).
l2 = L2Distance()
#: L∞ distance (the budget of FGSM and I-FGSM).
linf = LinfDistance()
