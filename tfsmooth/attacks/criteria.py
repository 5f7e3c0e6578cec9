r"""Criteria: what makes an image adversarial.

A criterion holds the labels of a batch and decides, from the logits
:math:`\mathbf{y} = f(\mathbf{x}) \in \mathbb{R}^k` of each image, whether the attack succeeded:

- :class:`Misclassification` (untargeted; the paper's setting, §2): the prediction differs from
  the true label, :math:`\arg\max_i y_i \neq t`;
- :class:`TargetedMisclassification`: the prediction is the target class,
  :math:`\arg\max_i y_i = t`.

Attacks accept a criterion or raw integer labels, which mean :class:`Misclassification`.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["Criterion", "Misclassification", "TargetedMisclassification", "as_criterion"]


def _as_label_tensor(labels: Any, name: str) -> tf.Tensor:
    """Converts labels to an int32 tensor of rank 1, refusing floats, bools and other ranks."""
    if isinstance(labels, (tf.Tensor, tf.Variable, np.ndarray)):
        dtype = tf.as_dtype(labels.dtype)
        if not dtype.is_integer:
            raise TypeError(f"`{name}` must be integer class indices, got {v._describe(labels)}")
        tensor = tf.convert_to_tensor(labels)
    else:
        if isinstance(labels, bool):
            raise TypeError(f"`{name}` must be integer class indices, got {labels!r}")
        try:
            tensor = tf.convert_to_tensor(labels)
        except (TypeError, ValueError) as err:
            raise TypeError(
                f"`{name}` must be integer class indices, got {v._describe(labels)}"
            ) from err
        if not tensor.dtype.is_integer:
            raise TypeError(
                f"`{name}` must be integer class indices, got values of dtype {tensor.dtype.name}"
            )
    if tensor.shape.rank is not None and tensor.shape.rank != 1:
        raise ValueError(
            f"`{name}` must have shape [batch] (one class index per image), got shape "
            f"{tuple(tensor.shape)}"
        )
    return tf.cast(tensor, tf.int32)


class Criterion:
    """Base class of the criteria: labels ``[batch]`` and a success test on logits.

    Attributes:
        labels: int32 ``[batch]``: the true labels (untargeted) or the target classes.
        targeted: whether the attack pushes toward ``labels`` (``True``) or away from them.
    """

    targeted: bool = False
    _argument = "labels"

    def __init__(self, labels: Any) -> None:
        self.labels = _as_label_tensor(labels, self._argument)

    def is_adversarial(self, logits: Any, *, confidence: float | tf.Tensor = 0.0) -> tf.Tensor:
        """Whether each image is adversarial, bool ``[batch]``.

        Args:
            logits: ``[batch, classes]``.
            confidence: a margin :math:`m \\ge 0` the decision must clear (C&W's ``confidence``):
                untargeted, every other logit must beat the true one by ``m``; targeted, the
                target logit must beat every other one by ``m``. ``0`` is plain ``argmax``.
        """
        raise NotImplementedError

    def validate(self, batch_size: int | None, num_classes: int | None) -> None:
        """Checks the labels against a batch size and a number of classes (where known).

        Raises:
            ValueError: a label count differing from ``batch_size`` or a label outside
                ``[0, num_classes)``.
        """
        count = self.labels.shape[0]
        if batch_size is not None and count is not None and count != batch_size:
            raise ValueError(
                f"`{self._argument}` must have shape [{batch_size}] (one per image), got shape "
                f"[{count}]"
            )
        value = v.static_value(self.labels)
        if value is None or value.size == 0:
            return
        low, high = int(np.min(value)), int(np.max(value))
        if low < 0 or (num_classes is not None and high >= num_classes):
            upper = "num_classes" if num_classes is None else str(num_classes)
            raise ValueError(
                f"`{self._argument}` must lie in [0, {upper}), got values in [{low}, {high}]"
            )

    def __repr__(self) -> str:
        value = v.static_value(self.labels)
        shown = np.array2string(value, threshold=8) if value is not None else "<symbolic>"
        return f"{type(self).__name__}({shown})"


class Misclassification(Criterion):
    """Untargeted criterion: adversarial when the prediction is not the true label.

    Args:
        labels: true labels, integers ``[batch]``.

    Example:
        >>> crit = Misclassification([0, 1])
        >>> crit.is_adversarial(tf.constant([[2.0, 1.0], [2.0, 1.0]])).numpy()
        array([False,  True])
    """

    targeted = False

    def is_adversarial(self, logits: Any, *, confidence: float | tf.Tensor = 0.0) -> tf.Tensor:
        logits = tf.convert_to_tensor(logits)
        onehot = tf.one_hot(self.labels, tf.shape(logits)[-1], dtype=logits.dtype)
        shifted = logits + v.as_dtype(confidence, logits.dtype) * onehot
        return tf.not_equal(tf.argmax(shifted, axis=-1, output_type=tf.int32), self.labels)


class TargetedMisclassification(Criterion):
    """Targeted criterion: adversarial when the prediction is the target class.

    Args:
        target_classes: target labels, integers ``[batch]``.

    Example:
        >>> crit = TargetedMisclassification([1, 1])
        >>> crit.is_adversarial(tf.constant([[2.0, 1.0], [1.0, 2.0]])).numpy()
        array([False,  True])
    """

    targeted = True
    _argument = "target_classes"

    def __init__(self, target_classes: Any) -> None:
        super().__init__(target_classes)

    @property
    def target_classes(self) -> tf.Tensor:
        """The target labels (same as :attr:`labels`)."""
        return self.labels

    def is_adversarial(self, logits: Any, *, confidence: float | tf.Tensor = 0.0) -> tf.Tensor:
        logits = tf.convert_to_tensor(logits)
        onehot = tf.one_hot(self.labels, tf.shape(logits)[-1], dtype=logits.dtype)
        shifted = logits - v.as_dtype(confidence, logits.dtype) * onehot
        return tf.equal(tf.argmax(shifted, axis=-1, output_type=tf.int32), self.labels)


def as_criterion(labels_or_criterion: Any) -> Criterion:
    """A :class:`Criterion` as given, or :class:`Misclassification` of raw integer labels.

    Example:
        >>> as_criterion([3, 1])
        Misclassification([3 1])
    """
    if isinstance(labels_or_criterion, Criterion):
        return labels_or_criterion
    return Misclassification(labels_or_criterion)
