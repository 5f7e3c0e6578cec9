"""Input checks shared by the public API.

Every check raises :class:`ValueError` or :class:`TypeError` with a message that says what was
expected and what was received. Checks on *values* (finite, range) run only where the value is
known, i.e. eagerly or for constants inside :func:`tf.function`; checks on rank and dtype always run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, overload

import numpy as np
import tensorflow as tf

__all__ = [
    "as_float_tensor",
    "check_choice",
    "check_finite",
    "check_image_batch",
    "check_int_at_least",
    "check_open_unit_interval",
    "check_positive",
    "check_range",
    "check_size",
    "static_value",
]


def _describe(value: Any) -> str:
    if isinstance(value, (tf.Tensor, tf.Variable, np.ndarray)):
        return f"{type(value).__name__} of dtype {value.dtype.name} and shape {tuple(value.shape)}"
    return f"{value!r} ({type(value).__name__})"


def as_float_tensor(value: Any, name: str, *, dtype: tf.DType | None = None) -> tf.Tensor:
    """Converts ``value`` to a floating point tensor, refusing integer and boolean input.

    Args:
        value: array-like.
        name: argument name used in error messages.
        dtype: if given, the result is cast to it; otherwise a float input keeps its dtype and
            Python floats / lists become float32.

    Raises:
        TypeError: integer, boolean, complex or string input.
    """
    if isinstance(value, (tf.Tensor, tf.Variable, np.ndarray)):
        dt = tf.as_dtype(value.dtype)
        if not dt.is_floating:
            raise TypeError(
                f"`{name}` must be a floating point tensor (float16/32/64), "
                f"got {_describe(value)}; convert images with tf.image.convert_image_dtype."
            )
        tensor = tf.convert_to_tensor(value)
    else:
        try:
            tensor = tf.convert_to_tensor(value, dtype_hint=tf.float32)
        except (TypeError, ValueError) as err:
            raise TypeError(f"`{name}` must be a float array-like, got {_describe(value)}") from err
        if not tensor.dtype.is_floating:
            raise TypeError(f"`{name}` must hold floating point values, got {_describe(value)}")
    if dtype is not None and tensor.dtype != dtype:
        tensor = tf.cast(tensor, dtype)
    return tensor


def static_value(tensor: tf.Tensor) -> np.ndarray | None:
    """The numpy value of ``tensor`` if it is known now (eager or constant), else ``None``."""
    if isinstance(tensor, tf.Variable):
        return tensor.numpy() if tf.executing_eagerly() else None
    try:
        return tf.get_static_value(tensor)
    except (TypeError, ValueError):
        return None


def check_finite(tensor: tf.Tensor, name: str) -> None:
    """Raises ``ValueError`` if the (statically known) value holds NaN or Inf."""
    value = static_value(tensor)
    if value is not None and not np.all(np.isfinite(value)):
        raise ValueError(
            f"`{name}` must be finite, got {int(np.sum(~np.isfinite(value)))} NaN/Inf values"
        )


def check_range(
    tensor: tf.Tensor, name: str, low: float, high: float, *, atol: float = 1e-6
) -> None:
    """Raises ``ValueError`` if the (statically known) value leaves ``[low, high]``."""
    value = static_value(tensor)
    if value is None or value.size == 0:
        return
    vmin, vmax = float(np.min(value)), float(np.max(value))
    if vmin < low - atol or vmax > high + atol:
        raise ValueError(
            f"`{name}` must lie in [{low}, {high}], got values in [{vmin:.6g}, {vmax:.6g}]"
        )


def check_image_batch(
    value: Any,
    name: str,
    *,
    bounds: tuple[float, float] | None = None,
    dtype: tf.DType | None = None,
) -> tf.Tensor:
    """Converts and checks a batch of images ``[batch, height, width, channels]``.

    Args:
        value: array-like of rank 4, floating point.
        name: argument name for error messages.
        bounds: if given, values must lie in this closed range.
        dtype: optional dtype to cast to.

    Returns:
        The float tensor.
    """
    tensor = as_float_tensor(value, name, dtype=dtype)
    if tensor.shape.rank is not None and tensor.shape.rank != 4:
        raise ValueError(
            f"`{name}` must have rank 4 [batch, height, width, channels], "
            f"got shape {tuple(tensor.shape)} (rank {tensor.shape.rank})"
        )
    for axis, label in ((1, "height"), (2, "width"), (3, "channels")):
        size = tensor.shape[axis] if tensor.shape.rank is not None else None
        if size is not None and size < 1:
            raise ValueError(
                f"`{name}` must have a positive {label}, got shape {tuple(tensor.shape)}"
            )
    check_finite(tensor, name)
    if bounds is not None:
        check_range(tensor, name, bounds[0], bounds[1])
    return tensor


def check_positive(value: Any, name: str) -> float:
    """Returns ``value`` as a float if it is a finite number ``> 0``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a positive number, got {_describe(value)}")
    if not math.isfinite(float(value)) or value <= 0:
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}")
    return float(value)


@overload
def check_tolerance(value: Any, name: str) -> float: ...
@overload
def check_tolerance(value: Any, name: str, *, allow_none: bool) -> float | None: ...
def check_tolerance(value: Any, name: str, *, allow_none: bool = False) -> float | None:
    """Returns ``value`` as a float if it is a number ``>= 0`` (a solver tolerance).

    With ``allow_none``, ``None`` is returned as is. Raises ``ValueError`` for anything else,
    non-numbers included.
    """
    if allow_none and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        expected = "None or a number >= 0" if allow_none else "a number >= 0"
        raise ValueError(f"`{name}` must be {expected}, got {value!r}")
    return float(value)


def check_open_unit_interval(value: Any, name: str) -> float:
    """Returns ``value`` as a float if it lies in ``[0, 1)``."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number in [0, 1), got {_describe(value)}")
    if not math.isfinite(float(value)) or not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must lie in [0, 1), got {value!r}")
    return float(value)


def check_int_at_least(value: Any, name: str, minimum: int) -> int:
    """Returns ``value`` as an int if it is an integer ``>= minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"`{name}` must be an integer >= {minimum}, got {_describe(value)}")
    if value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_size(value: Any, name: str) -> tuple[int, int]:
    """Returns ``value`` as ``(height, width)``, two integers >= 1."""
    try:
        items = tuple(value)
    except TypeError:
        items = ()
    if len(items) != 2:
        raise ValueError(f"`{name}` must be (height, width), got {value!r}")
    return (
        check_int_at_least(items[0], f"{name}[0]", 1),
        check_int_at_least(items[1], f"{name}[1]", 1),
    )


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``."""
    options = tuple(choices)
    if value not in options:
        raise ValueError(f"`{name}` must be one of {options}, got {value!r}")
    return value


def as_dtype(value: Any, dtype: tf.DType) -> tf.Tensor:
    """``value`` as a tensor of ``dtype``; Python numbers are converted exactly.

    ``tf.cast(0.999, tf.float64)`` goes through float32 (0.99900001287...); this does not.

    Example:
        >>> float(as_dtype(0.999, tf.float64)) == 0.999
        True
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return tf.constant(value, dtype)
    return tf.cast(value, dtype)
