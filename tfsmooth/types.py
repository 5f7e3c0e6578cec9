"""Type aliases shared across tfsmooth."""

from __future__ import annotations

from typing import Union

import numpy as np
import tensorflow as tf

#: Anything :func:`tf.convert_to_tensor` accepts as an image batch or a signal.
TensorLike = Union[tf.Tensor, tf.Variable, np.ndarray, float, int, list]

#: Pixel bounds ``(low, high)``.
Bounds = tuple[float, float]

__all__ = ["Bounds", "TensorLike"]
