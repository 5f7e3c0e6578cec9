r"""Classification losses on logits used by the attacks.

The margin loss of the paper (eq. 3), after Carlini & Wagner (2017) and the multi-class SVM loss
of Crammer & Singer, on logits :math:`\mathbf{y}` with label :math:`t` and margin :math:`m \ge 0`:

.. math::

    \ell(\mathbf{y}, t) = \big[\, y_t - \max_{i \neq t} y_i + m \,\big]_+
    \quad\text{(untargeted, } t \text{ the true label)},

    \ell(\mathbf{y}, t) = \big[\, \max_{i \neq t} y_i - y_t + m \,\big]_+
    \quad\text{(targeted, } t \text{ the target class)}.

It vanishes exactly when the attack has succeeded with margin :math:`m`. The fast gradient
attacks (FGSM, I-FGSM, PGD) use by default the cross-entropy
:math:`-\log \operatorname{softmax}(\mathbf{y})_t` instead, ascended (untargeted) or descended
(targeted) — :func:`attack_objective`; with ``loss="margin"`` they descend this margin loss with
:math:`m = 0`, as the paper's eq. 10 does.
"""

from __future__ import annotations

import logging
from typing import Any

import tensorflow as tf

from tfsmooth import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["attack_objective", "margin_loss"]


def margin_loss(
    logits: Any,
    labels: Any,
    confidence: float | tf.Tensor = 0.0,
    targeted: bool = False,
    *,
    name: str | None = None,
) -> tf.Tensor:
    r"""The margin loss of eq. 3 per image, shape ``[batch]``, dtype of ``logits``.

    Args:
        logits: ``[batch, classes]`` (at least 2 classes).
        labels: int ``[batch]``: true labels (untargeted) or target classes (targeted).
        confidence: the margin :math:`m \ge 0`.
        targeted: ``False``: :math:`[y_t - \max_{i\neq t} y_i + m]_+`;
            ``True``: :math:`[\max_{i\neq t} y_i - y_t + m]_+`.
        name: optional name scope.

    Example:
        >>> logits = tf.constant([[3.0, 1.0, 0.5], [0.0, 2.0, 1.0]])
        >>> margin_loss(logits, [0, 0], confidence=1.0).numpy()  # [3-1+1]_+, [0-2+1]_+
        array([3., 0.], dtype=float32)
        >>> margin_loss(logits, [1, 1], targeted=True).numpy()  # [3-1]_+, [1-2]_+
        array([2., 0.], dtype=float32)
    """
    with tf.name_scope(name or "margin_loss"):
        logits = tf.convert_to_tensor(logits)
        if not logits.dtype.is_floating:
            raise TypeError(f"`logits` must be floating point, got dtype {logits.dtype.name}")
        if logits.shape.rank != 2:
            raise ValueError(
                f"`logits` must have shape [batch, classes], got {tuple(logits.shape)}"
            )
        labels = tf.cast(tf.convert_to_tensor(labels), tf.int32)
        onehot = tf.one_hot(labels, tf.shape(logits)[-1], dtype=logits.dtype)
        label_logit = tf.reduce_sum(onehot * logits, axis=-1)
        lowest = logits.dtype.min
        other_best = tf.reduce_max(
            tf.where(onehot > 0, v.as_dtype(lowest, logits.dtype), logits), axis=-1
        )
        m = v.as_dtype(confidence, logits.dtype)
        gap = other_best - label_logit if targeted else label_logit - other_best
        return tf.nn.relu(gap + m)


def attack_objective(logits: tf.Tensor, labels: tf.Tensor, targeted: bool) -> tf.Tensor:
    """Per-image objective the fast gradient attacks *ascend*, shape ``[batch]``.

    Cross-entropy of the true label (untargeted), minus the cross-entropy of the target
    (targeted: ascending it descends toward the target).

    Example:
        >>> logits = tf.constant([[0.0, 0.0]])
        >>> float(attack_objective(logits, tf.constant([0]), targeted=False)[0])  # log 2
        0.6931...
    """
    labels = tf.cast(labels, tf.int32)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return -xent if targeted else xent
