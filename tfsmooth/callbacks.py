"""Keras callback that measures robustness during training and evaluation."""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np

from tfsmooth import _validation as v
from tfsmooth.attacks.base import Attack, FixedEpsilonAttack
from tfsmooth.evaluation import metrics
from tfsmooth.models.base import Model

logger = logging.getLogger(__name__)

__all__ = ["AdversarialEvaluation"]


class AdversarialEvaluation(keras.callbacks.Callback):
    """Attacks a held-out batch with the model being trained and logs the outcome.

    At the end of every ``frequency``-th epoch of ``fit`` (and at the end of ``evaluate``) the
    attack runs on ``images`` against ``self.model`` (wrapped in
    :class:`tfsmooth.models.Model`, bounds ``(0, 1)``). Following the paper's protocol (§5.1)
    only the images the model classifies correctly count; with several epsilons an image is a
    success if any of them succeeds, and its distortion is the smallest. Written into ``logs``
    (so that ``History``, ``CSVLogger`` and ``TensorBoard`` record them):

    - ``{prefix}success_rate``: :math:`P_{suc}` (``NaN`` if no image is classified correctly);
    - ``{prefix}mean_l2``: mean L2 distortion over the successes (``NaN`` if none).

    Callbacks run in list order: put this one before ``CSVLogger`` / ``TensorBoard``. After
    ``evaluate`` the callbacks that follow see the keys in ``on_test_end``, but the dict that
    ``model.evaluate(..., return_dict=True)`` returns does not hold them (Keras copies the logs
    before calling the callbacks): read :attr:`last_result` instead.

    Args:
        attack: a :class:`~tfsmooth.attacks.Attack`.
        images: float ``[N, H, W, C]`` in ``[0, 1]``.
        labels: integer ``[N]``.
        epsilons: the attack's epsilons (required for distortion-targeting attacks).
        frequency: attack every ``frequency`` epochs, >= 1.
        prefix: prefix of the log keys.

    Example:
        >>> from tfsmooth.attacks import LinfFastGradientAttack
        >>> cb = AdversarialEvaluation(LinfFastGradientAttack(), np.zeros([2, 4, 4, 1], "float32"),
        ...                            [0, 1], epsilons=0.1, frequency=2)
        >>> cb.get_config()["frequency"]
        2
    """

    def __init__(
        self,
        attack: Attack,
        images: Any,
        labels: Any,
        *,
        epsilons: Any = None,
        frequency: int = 1,
        prefix: str = "adv_",
    ) -> None:
        super().__init__()
        if not isinstance(attack, Attack):
            raise TypeError(
                f"`attack` must be a tfsmooth.attacks.Attack, got {type(attack).__name__}"
            )
        if isinstance(attack, FixedEpsilonAttack) and epsilons is None:
            raise ValueError(f"{type(attack).__name__} targets a distortion: pass `epsilons`")
        images_t = v.check_image_batch(images, "images", bounds=(0.0, 1.0))
        self.images = np.asarray(images_t.numpy())
        labels_np = np.asarray(labels)
        if labels_np.shape != (self.images.shape[0],) or not np.issubdtype(
            labels_np.dtype, np.integer
        ):
            raise ValueError(
                f"`labels` must be integers of shape ({self.images.shape[0]},), got "
                f"{labels_np.dtype} {labels_np.shape}"
            )
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string, got {prefix!r}")
        self.labels = labels_np.astype(np.int64)
        self.attack = attack
        self.epsilons = epsilons
        self.frequency = v.check_int_at_least(frequency, "frequency", 1)
        self.prefix = prefix
        self.last_result: dict[str, float] | None = None
        self._in_fit = False

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments other than the data."""
        eps = self.epsilons
        if isinstance(eps, np.ndarray):
            eps = eps.tolist()
        return {
            "attack": repr(self.attack),
            "epsilons": eps,
            "frequency": self.frequency,
            "prefix": self.prefix,
            "n_images": int(self.images.shape[0]),
        }

    def evaluate(self) -> dict[str, float]:
        """Attacks the held-out batch now; returns the two statistics (keys with prefix)."""
        model = Model(self.model, bounds=(0.0, 1.0))
        clean = np.asarray(model.predict(self.images))
        correct = clean == self.labels
        psuc, mean_l2 = float("nan"), float("nan")
        if correct.any():
            x, y = self.images[correct], self.labels[correct]
            result = self.attack(model, x, y, epsilons=self.epsilons)
            clipped = result.clipped if isinstance(result.clipped, list) else [result.clipped]
            l2 = np.stack(
                [np.sqrt(np.sum((np.asarray(a) - x) ** 2, axis=(1, 2, 3))) for a in clipped]
            )
            success, distance = metrics.combine_multi_epsilon(np.asarray(result.success), l2)
            psuc = metrics.success_probability(success)
            mean_l2 = metrics.conditional_mean_distortion(distance, success)
        values = {f"{self.prefix}success_rate": psuc, f"{self.prefix}mean_l2": mean_l2}
        self.last_result = values
        logger.debug("AdversarialEvaluation: %s", values)
        return values

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if (epoch + 1) % self.frequency != 0 or logs is None:
            return
        logs.update(self.evaluate())

    def on_test_end(self, logs: dict[str, Any] | None = None) -> None:
        # fit() runs validation inside an epoch: only measure for a standalone evaluate().
        if logs is None or self._in_fit:
            return
        logs.update(self.evaluate())

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = True

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        self._in_fit = False
