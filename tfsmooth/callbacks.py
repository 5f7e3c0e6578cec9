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
    attack runs on ``images`` against ``self.model`` (wrapped once in
    :class:`tfsmooth.models.Model`, bounds ``(0, 1)``, and that wrapper reused, so the attack's
    compiled loop is built and traced once for the whole training, not once per epoch).
    Following the paper's protocol (§5.1) only the images the model classifies correctly count:
    the attack runs on the whole held-out batch (a fixed shape, hence no retracing as the set of
    correct images changes) and the statistics are taken over the correct ones. Attacks that
    treat images independently give the numbers of an attack on the correct images alone; C&W's
    early stop watches the loss of the whole batch, to which a misclassified image adds nothing
    with the clipped parametrization and ``confidence=0`` (the defaults), a little otherwise.
    With several epsilons an image is a success if any of them succeeds, and its distortion is
    the smallest.
    Written into ``logs`` (so that ``History``, ``CSVLogger`` and ``TensorBoard`` record them):

    - ``{prefix}success_rate``: :math:`P_{suc}` (``NaN`` if no image is classified correctly);
    - ``{prefix}mean_l2``: mean L2 distortion over the successes (``NaN`` if none).

    Callbacks run in list order: put this one before ``CSVLogger`` / ``TensorBoard``. After
    ``evaluate`` the callbacks that follow see the keys in ``on_test_end``, but the dict that
    ``model.evaluate(..., return_dict=True)`` returns does not hold them (Keras copies the logs
    before calling the callbacks): read :attr:`last_result` instead.

    Args:
        attack: a :class:`~tfsmooth.attacks.Attack`.
        images: float ``[N, H, W, C]`` in ``[0, 1]``, ``N >= 1``.
        labels: integer ``[N]`` in ``[0, num_classes)`` of the model (checked at the first
            evaluation, when the model is known).
        epsilons: the attack's epsilons (required for distortion-targeting attacks).
        frequency: attack every ``frequency`` epochs, >= 1.
        prefix: prefix of the log keys.

    Raises:
        TypeError: ``attack`` is not an attack, ``prefix`` not a string.
        ValueError: bad images (rank, range, an empty batch), labels of the wrong shape or
            dtype or negative, a distortion-targeting attack without ``epsilons``,
            ``frequency < 1``; at evaluation, labels outside the model's class range.

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
        if self.images.shape[0] == 0:
            raise ValueError(
                f"`images` is an empty held-out batch (shape {self.images.shape}); pass at least "
                f"one image"
            )
        labels_np = np.asarray(labels)
        if labels_np.shape != (self.images.shape[0],) or not np.issubdtype(
            labels_np.dtype, np.integer
        ):
            raise ValueError(
                f"`labels` must be integers of shape ({self.images.shape[0]},), got "
                f"{labels_np.dtype} {labels_np.shape}"
            )
        if labels_np.min() < 0:
            raise ValueError(
                f"`labels` must be class indices >= 0, got values in "
                f"[{labels_np.min()}, {labels_np.max()}]"
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
        self._wrapper: Model | None = None

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

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        if self._wrapper is not None and self._wrapper.model is not model:
            self._wrapper = None  # another model: wrap it (and compile the attack) anew

    def _wrapped_model(self) -> Model:
        """The model being trained, wrapped once and reused (the attack caches on the wrapper)."""
        model = self.model
        if model is None:
            raise RuntimeError(
                "AdversarialEvaluation has no model: pass it to fit/evaluate in `callbacks`, or "
                "call set_model(model) before evaluate()"
            )
        if self._wrapper is None or self._wrapper.model is not model:
            self._wrapper = Model(model, bounds=(0.0, 1.0))
        return self._wrapper

    def evaluate(self) -> dict[str, float]:
        """Attacks the held-out batch now; returns the two statistics (keys with prefix).

        Raises:
            ValueError: the held-out labels lie outside the model's class range.
        """
        model = self._wrapped_model()
        num_classes = model(self.images[:1]).shape[-1]
        if num_classes is not None and int(self.labels.max()) >= int(num_classes):
            raise ValueError(
                f"`labels` of AdversarialEvaluation must lie in [0, {int(num_classes)}) (the "
                f"model {model.name!r} has {int(num_classes)} outputs), got values in "
                f"[{int(self.labels.min())}, {int(self.labels.max())}]"
            )
        clean = np.asarray(model.predict(self.images))
        correct = clean == self.labels
        psuc, mean_l2 = float("nan"), float("nan")
        if correct.any():
            # the whole batch, always the same shape: the attack's trace is reused every epoch
            x = self.images
            result = self.attack(model, x, self.labels, epsilons=self.epsilons)
            clipped = result.clipped if isinstance(result.clipped, list) else [result.clipped]
            l2 = np.stack(
                [np.sqrt(np.sum((np.asarray(a) - x) ** 2, axis=(1, 2, 3))) for a in clipped]
            )
            success, distance = metrics.combine_multi_epsilon(np.asarray(result.success), l2)
            psuc = metrics.success_probability(success, correct)
            mean_l2 = metrics.conditional_mean_distortion(distance[correct], success[correct])
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
