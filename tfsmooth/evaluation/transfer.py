"""Transferability (paper §5.4): craft adversarials on a source model, test them on a target.

The attacker knows only a surrogate (model A) and may not try several distortion targets: the
attack runs once (a single epsilon, or ``None`` for C&W) on A, and its adversarial images are
fed to the defender's model B. Only images classified correctly by *both* models count.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.attacks.base import Attack, FixedEpsilonAttack, as_model
from tfsmooth.evaluation import metrics

__all__ = ["TransferResult", "evaluate_transfer"]


@dataclasses.dataclass
class TransferResult:
    """Outcome of :func:`evaluate_transfer` (per-image arrays have length ``n0``).

    Attributes:
        n0: number of test images.
        n: number classified correctly by both models.
        psuc_source: success probability on the source model (white box), over the ``n``.
        psuc_target: success probability of the same images on the target model, over the ``n``.
        mean_l2: conditional mean L2 distortion over the successes on the target (``NaN`` if
            none) — the ``D`` of Table 3.
        mean_l2_source: the same over the successes on the source.
        seconds: attack wall time.
        correct: bool ``[n0]`` correct on both.
        success_source: bool ``[n0]``.
        success_target: bool ``[n0]``.
        l2: float64 ``[n0]`` distortion of the adversarial image.
    """

    n0: int
    n: int
    psuc_source: float
    psuc_target: float
    mean_l2: float
    mean_l2_source: float
    seconds: float
    correct: np.ndarray
    success_source: np.ndarray
    success_target: np.ndarray
    l2: np.ndarray

    def to_row(self) -> dict[str, Any]:
        """A flat JSON-friendly summary."""

        def clean(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return {
            "n0": self.n0,
            "n": self.n,
            "psuc_source": clean(self.psuc_source),
            "psuc": clean(self.psuc_target),
            "mean_l2": clean(self.mean_l2),
            "mean_l2_source": clean(self.mean_l2_source),
            "seconds": round(self.seconds, 3),
        }


def evaluate_transfer(
    source: Any,
    target: Any,
    attack: Attack,
    images: Any,
    labels: Any,
    *,
    epsilon: Any = None,
    batch_size: int = 100,
) -> TransferResult:
    """Crafts adversarials on ``source`` and evaluates them on ``target`` (paper §5.4).

    Args:
        source: the attacker's model (:class:`~tfsmooth.models.Model`, Keras model or callable).
        target: the defender's model (same input space).
        attack: the attack.
        images: float ``[N0, H, W, C]`` in the models' bounds.
        labels: integer ``[N0]``.
        epsilon: one budget for a distortion-targeting attack (required there); ``None`` for a
            minimization attack.
        batch_size: images per batch, >= 1.

    Returns:
        :class:`TransferResult`.

    Raises:
        ValueError: a list of epsilons (transfer allows a single target), bad shapes.

    Example:
        >>> from tfsmooth.attacks import LinfFastGradientAttack
        >>> a = tf.keras.Sequential([tf.keras.Input([4, 4, 1]), tf.keras.layers.Flatten(),
        ...                          tf.keras.layers.Dense(3)])
        >>> images = np.random.default_rng(0).uniform(size=[5, 4, 4, 1]).astype("float32")
        >>> labels = np.argmax(a(images), axis=1)
        >>> result = evaluate_transfer(a, a, LinfFastGradientAttack(), images, labels, epsilon=1.0)
        >>> result.psuc_source == result.psuc_target
        True
    """
    if not isinstance(attack, Attack):
        raise TypeError(f"`attack` must be a tfsmooth.attacks.Attack, got {type(attack).__name__}")
    if isinstance(epsilon, (list, tuple, np.ndarray)):
        raise ValueError(f"transferability uses a single epsilon, got {epsilon!r}")
    if isinstance(attack, FixedEpsilonAttack) and epsilon is None:
        raise ValueError(f"{type(attack).__name__} targets a distortion: pass `epsilon`")
    batch_size = v.check_int_at_least(batch_size, "batch_size", 1)
    source, target = as_model(source), as_model(target)
    images_t = v.check_image_batch(images, "images", bounds=source.bounds)
    n0 = int(images_t.shape[0])
    labels_np = np.asarray(labels)
    if labels_np.shape != (n0,) or not np.issubdtype(labels_np.dtype, np.integer):
        raise ValueError(f"`labels` must be integers of shape ({n0},), got {labels_np.shape}")
    labels_np = labels_np.astype(np.int64)
    correct = (source.predict(images_t, batch_size).numpy() == labels_np) & (
        target.predict(images_t, batch_size).numpy() == labels_np
    )
    success_source = np.zeros(n0, bool)
    success_target = np.zeros(n0, bool)
    l2 = np.full(n0, np.nan)
    chosen = np.flatnonzero(correct)
    started = time.perf_counter()
    for start in range(0, chosen.size, batch_size):
        idx = chosen[start : start + batch_size]
        x = tf.gather(images_t, idx)
        y = tf.constant(labels_np[idx])
        result = attack(source, x, y, epsilons=epsilon)
        adversarial = result.clipped
        success_source[idx] = np.asarray(result.success)[0]
        success_target[idx] = target.predict(adversarial, batch_size).numpy() != labels_np[idx]
        l2[idx] = tf.norm(tf.reshape(adversarial - x, [len(idx), -1]), axis=1).numpy()
    seconds = time.perf_counter() - started
    n = int(correct.sum())
    return TransferResult(
        n0=n0,
        n=n,
        psuc_source=metrics.success_probability(success_source, correct),
        psuc_target=metrics.success_probability(success_target, correct),
        mean_l2=metrics.conditional_mean_distortion(l2, success_target),
        mean_l2_source=metrics.conditional_mean_distortion(l2, success_source),
        seconds=seconds,
        correct=correct,
        success_source=success_source,
        success_target=success_target,
        l2=l2,
    )
