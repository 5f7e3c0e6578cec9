"""Type aliases shared across tfsmooth."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import tensorflow as tf

#: Anything :func:`tf.convert_to_tensor` accepts as an image batch or a signal.
TensorLike: TypeAlias = tf.Tensor | tf.Variable | np.ndarray | float | int | list

#: Pixel bounds ``(low, high)``.
Bounds: TypeAlias = tuple[float, float]

__all__ = ["Bounds", "TensorLike"]
