r"""Base classes of the attacks, in the shape of foolbox 3.

An attack is built once with its hyperparameters (keyword-only) and called on data::

    attack = LinfBasicIterativeAttack(steps=10, step_size=0.08)
    raw, clipped, success = attack(model, images, labels, epsilons=[0.1, 0.3])

- ``model``: a :class:`tfsmooth.models.Model` (images in its ``bounds`` to logits) or any Keras
  model / callable, wrapped with bounds ``(0, 1)``.
- ``images``: float ``[batch, height, width, channels]`` inside the model's bounds.
- ``labels``: integer labels ``[batch]`` (meaning :class:`~tfsmooth.attacks.Misclassification`)
  or a :class:`~tfsmooth.attacks.criteria.Criterion`.
- ``epsilons``: one number or a list of ``K`` numbers (the perturbation budget, in the norm of
  the attack); ``None`` only for minimization attacks (C&W).

The result :class:`AttackResult` follows foolbox's convention: for a list of epsilons, ``raw``
and ``clipped`` are lists of ``K`` tensors; for a single epsilon (or ``None``) they are single
tensors. ``success`` is always a bool tensor ``[K, batch]`` (``K = 1`` for a single epsilon or
``None``): ``success[k, i]`` says that ``clipped[k][i]`` is adversarial, and ``clipped[k]`` lies
within ``epsilons[k]`` of the clean image (and inside the bounds). Its attribute ``predicted``
(int64 ``[K, batch]``, not a tuple field) holds the model's predictions on ``clipped[k]``, from
the same forward pass as ``success``.

Two families (paper §2.1):

- :class:`FixedEpsilonAttack` — *distortion targeting* (FGSM, I-FGSM, PGD): ``run`` returns
  images within ``epsilon``; ``raw`` and ``clipped`` coincide.
- :class:`MinimizationAttack` — *optimality targeting* (C&W): ``run`` returns the least distorted
  adversarial found (the clean image where none was); for each epsilon ``clipped`` is that image
  projected onto the epsilon ball, so ``success`` means "adversarial within epsilon".

Every gradient attack takes ``smoother``: a :class:`~tfsmooth.smoothing.Smoother`, bound to the
clean images once per call (the paper's smooth attacks, Zhang et al. 2019), a
:class:`~tfsmooth.smoothing.BoundSmoother` already bound to images of the same shape, or ``None``.
The whole iteration loop runs inside one ``tf.function`` cached per attack instance; calling the
attack again with the same shapes does not retrace.
"""

from __future__ import annotations

import abc
import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.attacks.criteria import Criterion, as_criterion
from tfsmooth.attacks.distances import Distance, l2
from tfsmooth.attacks.quantization import (
    check_on_grid,
    check_quantize_bits,
    quantize_perturbation,
)
from tfsmooth.models.base import Model
from tfsmooth.smoothing.smoother import BoundSmoother, Smoother

logger = logging.getLogger(__name__)

__all__ = [
    "Attack",
    "AttackResult",
    "FixedEpsilonAttack",
    "MinimizationAttack",
    "as_model",
]

#: How many compiled functions an attack instance keeps (one per model / criterion kind / ...).
_CACHE_SIZE = 8


class _AttackOutputs(NamedTuple):
    raw: Any
    clipped: Any
    success: tf.Tensor


class AttackResult(_AttackOutputs):
    """What an attack returns: the named tuple ``(raw, clipped, success)``.

    Attributes:
        raw: the attack's output before the epsilon projection: one tensor ``[N, H, W, C]`` for
            a single epsilon (or ``None``), else a list of ``K`` such tensors.
        clipped: ``raw`` projected onto each epsilon ball (same structure).
        success: bool ``[K, N]``: whether ``clipped[k][i]`` is adversarial.
        predicted: int64 ``[K, N]``: the model's prediction on ``clipped[k][i]`` (from the
            logits ``success`` was decided on), or ``None`` where the attack did not give it.
            Not a tuple field: ``raw, clipped, success = result`` unpacks as before.

    Example:
        >>> result = AttackResult(tf.zeros([1, 1, 1, 1]), tf.zeros([1, 1, 1, 1]),
        ...                       tf.constant([[True]]), predicted=tf.constant([[3]], tf.int64))
        >>> len(result), result.predicted.numpy().tolist()
        (3, [[3]])
    """

    predicted: tf.Tensor | None = None

    def __new__(
        cls, raw: Any, clipped: Any, success: tf.Tensor, predicted: tf.Tensor | None = None
    ) -> AttackResult:
        result = super().__new__(cls, raw, clipped, success)
        result.predicted = predicted
        return result


def as_model(model: Any) -> Model:
    """A :class:`~tfsmooth.models.Model` as given, or a callable wrapped with bounds ``(0, 1)``.

    Example:
        >>> as_model(lambda x: tf.reduce_mean(x, axis=[1, 2])).bounds
        (0.0, 1.0)
    """
    if isinstance(model, Model):
        return model
    if not callable(model):
        raise TypeError(
            f"`model` must be a tfsmooth.models.Model, a Keras model or a callable, got "
            f"{type(model).__name__}"
        )
    return Model(model)


def _check_smoother(smoother: Any) -> Smoother | BoundSmoother | None:
    if smoother is not None and not isinstance(smoother, (Smoother, BoundSmoother)):
        raise TypeError(
            f"`smoother` must be a tfsmooth.smoothing.Smoother, a BoundSmoother or None, got "
            f"{type(smoother).__name__}"
        )
    return smoother


def _check_number(value: Any, name: str, *, minimum: float = 0.0, strict: bool = False) -> float:
    """A finite float ``>= minimum`` (``> minimum`` if ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"`{name}` must be a number, got {value!r} ({type(value).__name__})")
    value = float(value)
    ok = value > minimum if strict else value >= minimum
    if not math.isfinite(value) or not ok:
        relation = ">" if strict else ">="
        raise ValueError(f"`{name}` must be a finite number {relation} {minimum}, got {value!r}")
    return value


def _check_epsilon(epsilon: Any, *, allow_none: bool) -> Any:
    """Checks one epsilon: a finite number >= 0, a scalar tensor, or ``None`` if allowed."""
    if epsilon is None:
        if allow_none:
            return None
        raise ValueError(
            "this attack targets a distortion: `epsilons` must be a number >= 0 or a list of "
            "them, got None"
        )
    if isinstance(epsilon, (tf.Tensor, tf.Variable, np.ndarray)):
        if len(epsilon.shape) != 0:
            raise ValueError(f"each epsilon must be a scalar, got shape {tuple(epsilon.shape)}")
        if not tf.as_dtype(epsilon.dtype).is_floating and not tf.as_dtype(epsilon.dtype).is_integer:
            raise TypeError(f"each epsilon must be a number, got dtype {epsilon.dtype}")
        value = v.static_value(tf.convert_to_tensor(epsilon))
        if value is not None:
            _check_number(float(value), "epsilon")
        return epsilon
    return _check_number(epsilon, "epsilon")


def _epsilon_list(epsilons: Any, *, allow_none: bool) -> tuple[list[Any], bool]:
    """The epsilons as a list, and whether they were given as a sequence."""
    if isinstance(epsilons, (list, tuple)) or (
        isinstance(epsilons, np.ndarray) and epsilons.ndim == 1
    ):
        values = list(epsilons)
        if not values:
            raise ValueError("`epsilons` must not be an empty list")
        return [_check_epsilon(e, allow_none=allow_none) for e in values], True
    if isinstance(epsilons, tf.Tensor) and epsilons.shape.rank == 1:
        return [
            _check_epsilon(epsilons[i], allow_none=False) for i in range(epsilons.shape[0])
        ], True
    return [_check_epsilon(epsilons, allow_none=allow_none)], False


def _check_probe(model: Model, probe: tf.Tensor) -> None:
    """Refuses outputs that are not finite or look like probabilities (eager probes only)."""
    value = v.static_value(probe)
    if value is None:
        return
    value = np.asarray(value, np.float64)
    if not np.all(np.isfinite(value)):
        raise ValueError(
            f"model {model.name!r} returned non-finite outputs (NaN or Inf) on the first image; "
            f"every image would count as fooled"
        )
    if (
        model.output == "logits"
        and value.shape[-1] > 1
        and np.all(value >= 0.0)
        and np.all(value <= 1.0)
        and np.allclose(value.sum(axis=-1), 1.0, atol=1e-3)
    ):
        raise ValueError(
            f"model {model.name!r} seems to return probabilities (outputs in [0, 1] summing to "
            f"1), but attacks need logits: remove the final softmax, or wrap it as "
            f"tfsmooth.models.Model(net, output='probabilities')"
        )


class Attack(abc.ABC):
    """Base class of all attacks.

    Subclasses implement :meth:`__call__` (through :class:`FixedEpsilonAttack` or
    :class:`MinimizationAttack`), :meth:`get_config` and the compiled loop. Shared here: input
    validation, model wrapping, smoother binding and the cache of compiled functions.
    """

    #: Distance in which the attack measures its budget.
    distance: Distance = l2

    def __init__(
        self, *, smoother: Any = None, jit_compile: bool = False, quantize_bits: int | None = None
    ) -> None:
        self.smoother = _check_smoother(smoother)
        if not isinstance(jit_compile, bool):
            raise TypeError(f"`jit_compile` must be a bool, got {jit_compile!r}")
        self.jit_compile = jit_compile
        self.quantize_bits = check_quantize_bits(quantize_bits)
        self._compiled: OrderedDict[tuple[Any, ...], tuple[Any, Any, Callable[..., Any]]] = (
            OrderedDict()
        )
        self._wrapped: dict[int, tuple[Any, Model]] = {}
        self._forwards: dict[int, tuple[Model, Callable[[tf.Tensor], tf.Tensor]]] = {}

    # -- abstract interface -------------------------------------------------------------------
    @abc.abstractmethod
    def __call__(
        self, model: Any, images: Any, criterion: Any, *, epsilons: Any = None
    ) -> AttackResult:
        """Runs the attack; see the module documentation."""

    @abc.abstractmethod
    def run(self, model: Any, images: Any, criterion: Any, *args: Any, **kwargs: Any) -> tf.Tensor:
        """The attack's raw output ``[N, H, W, C]`` for one setting."""

    def get_config(self) -> dict[str, Any]:
        """The hyperparameters given to ``__init__``."""
        config: dict[str, Any] = {"smoother": self.smoother, "jit_compile": self.jit_compile}
        if self.quantize_bits is not None:
            config["quantize_bits"] = self.quantize_bits
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={val!r}" for k, val in self.get_config().items())
        return f"{type(self).__name__}({args})"

    # -- shared helpers -----------------------------------------------------------------------
    def _as_model(self, model: Any) -> Model:
        """Wraps a raw callable once per attack (so that its compiled loop is reused)."""
        if isinstance(model, Model):
            return model
        entry = self._wrapped.get(id(model))
        if entry is None or entry[0] is not model:
            entry = (model, as_model(model))
            self._wrapped[id(model)] = entry
        return entry[1]

    def _prepare(
        self, model: Any, images: Any, criterion: Any
    ) -> tuple[Model, tf.Tensor, Criterion, tf.DType]:
        """Validates the data at the boundary.

        Returns:
            The model wrapper, the images (half precision is computed in float32), the
            criterion, and the dtype of the given images (outputs are returned in it).

        Raises:
            TypeError: non-float images, non-integer labels, a model that is not callable or
                returns integers.
            ValueError: wrong ranks or shapes, an empty batch, images outside the bounds or not
                finite, labels out of the model's class range, a model whose outputs are not
                finite or look like probabilities, a bound smoother of another shape, clean
                images off the grid of ``quantize_bits``.
        """
        model = self._as_model(model)
        images = v.check_image_batch(images, "images", bounds=model.bounds)
        if images.shape.rank is None:
            raise ValueError("`images` must have a known rank 4 [batch, height, width, channels]")
        in_dtype = images.dtype
        if in_dtype in (tf.float16, tf.bfloat16):
            # half precision loses the small steps and margins the attacks depend on
            images = tf.cast(images, tf.float32)
        criterion = as_criterion(criterion)
        batch = images.shape[0]
        if batch == 0:
            raise ValueError(
                f"`images` is an empty batch (shape {tuple(images.shape)}); pass at least one image"
            )
        probe = model(images[:1])  # builds a Keras model before any tf.function sees it
        num_classes = probe.shape[-1]
        if num_classes is not None:
            num_classes = int(num_classes)
        _check_probe(model, probe)
        criterion.validate(batch, num_classes)
        if isinstance(self.smoother, BoundSmoother):
            expected = tuple(self.smoother.guide.shape)
            if tuple(images.shape) != expected:
                raise ValueError(
                    f"`smoother` is bound to images of shape {expected}, got images of shape "
                    f"{tuple(images.shape)}; pass an unbound Smoother to bind it per call"
                )
        if self.quantize_bits is not None:
            check_on_grid(images, self.quantize_bits, model.bounds, "images")
        return model, images, criterion, in_dtype

    def _quantize(
        self, model: Model, clean: tf.Tensor, adversarial: tf.Tensor, *, toward_zero: bool
    ) -> tf.Tensor:
        """``adversarial`` with its perturbation rounded to ``quantize_bits`` (if set)."""
        if self.quantize_bits is None:
            return adversarial
        return quantize_perturbation(
            clean, adversarial, self.quantize_bits, model.bounds, toward_zero=toward_zero
        )

    def _bind(self, images: tf.Tensor, bounds: tuple[float, float]) -> BoundSmoother | None:
        """The smoother bound to the clean images (once per call), or ``None``."""
        if self.smoother is None:
            return None
        if isinstance(self.smoother, BoundSmoother):
            return self.smoother
        low, high = bounds
        guide = images if (low, high) == (0.0, 1.0) else (images - low) / (high - low)
        return self.smoother.bind(guide, name="attack_smoother")

    def _compiled_function(
        self, model: Model, criterion: Criterion, build: Callable[[Model, bool], Callable[..., Any]]
    ) -> Callable[..., Any]:
        """The ``tf.function`` of the attack loop for ``model`` and the kind of ``criterion``.

        Cached per attack instance, keyed on the model, the criterion kind and the
        hyperparameters (which are Python constants of the graph); shapes and dtypes are left to
        ``tf.function``'s own trace cache: one trace per batch shape (static shapes keep the
        compiled loops simple and XLA-friendly; an evaluation run uses one batch size).
        """
        config = repr(sorted(self.get_config().items()))
        key = (id(model), id(self.smoother), criterion.targeted, config)
        entry = self._compiled.get(key)
        if entry is not None and entry[0] is model and entry[1] is self.smoother:
            self._compiled.move_to_end(key)
            return entry[2]
        function = tf.function(
            build(model, criterion.targeted), jit_compile=self.jit_compile, reduce_retracing=False
        )
        self._compiled[key] = (model, self.smoother, function)
        while len(self._compiled) > _CACHE_SIZE:
            self._compiled.popitem(last=False)
        logger.debug("%r: new compiled loop for model %s", self, model.name)
        return function

    def _forward(self, model: Model) -> Callable[[tf.Tensor], tf.Tensor]:
        """The model's forward pass compiled once per model (eager calls of a Keras model pay
        its layer-by-layer dispatch: about 20 ms of C4 at a batch of 200 on CPU)."""
        entry = self._forwards.get(id(model))
        if entry is None or entry[0] is not model:
            entry = (model, tf.function(model.__call__))
            self._forwards[id(model)] = entry
            while len(self._forwards) > _CACHE_SIZE:
                self._forwards.pop(next(iter(self._forwards)))
        return entry[1]

    def _judge(
        self, model: Model, criterion: Criterion, images: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Whether ``images`` are adversarial, and the model's predictions on them (one forward
        pass for both)."""
        logits = self._forward(model)(images) if tf.executing_eagerly() else model(images)
        return criterion.is_adversarial(logits), tf.argmax(logits, axis=-1)


class FixedEpsilonAttack(Attack):
    """An attack that targets a distortion ``epsilon`` (paper §2.1: FGSM, I-FGSM, PGD).

    ``run`` returns images within ``epsilon`` of the clean ones, in the model's bounds.
    """

    def __call__(
        self, model: Any, images: Any, criterion: Any, *, epsilons: Any = None
    ) -> AttackResult:
        """Attacks ``images`` for each epsilon.

        Args:
            model: :class:`~tfsmooth.models.Model` or a Keras model / callable (bounds (0, 1)).
            images: float ``[N, H, W, C]`` in the model's bounds.
            criterion: integer labels ``[N]`` or a :class:`~tfsmooth.attacks.criteria.Criterion`.
            epsilons: a number >= 0 or a list of them (required).

        Returns:
            :class:`AttackResult`; ``raw`` equals ``clipped``.
        """
        eps_list, listed = _epsilon_list(epsilons, allow_none=False)
        model, images, criterion, in_dtype = self._prepare(model, images, criterion)
        outputs, successes, labels = [], [], []
        for epsilon, adversarial in zip(
            eps_list, self._run_many(model, images, criterion, eps_list)
        ):
            clipped = self._finish(model, images, adversarial, epsilon)
            outputs.append(tf.cast(clipped, in_dtype))
            fooled, predicted = self._judge(model, criterion, tf.cast(outputs[-1], images.dtype))
            successes.append(fooled)
            labels.append(predicted)
        success = tf.stack(successes, axis=0)
        predicted = tf.stack(labels, axis=0)
        if listed:
            return AttackResult(list(outputs), list(outputs), success, predicted)
        return AttackResult(outputs[0], outputs[0], success, predicted)

    def run(self, model: Any, images: Any, criterion: Any, *, epsilon: Any = None) -> tf.Tensor:
        """Adversarial images within ``epsilon``, ``[N, H, W, C]`` (validated inputs)."""
        epsilon = _check_epsilon(epsilon, allow_none=False)
        model, images, criterion, in_dtype = self._prepare(model, images, criterion)
        adversarial = self._run(model, images, criterion, epsilon)
        return tf.cast(self._finish(model, images, adversarial, epsilon), in_dtype)

    def _finish(
        self, model: Model, images: tf.Tensor, adversarial: tf.Tensor, epsilon: Any
    ) -> tf.Tensor:
        """Projection onto the epsilon ball and the bounds, then ``quantize_bits`` rounding."""
        clipped = self.distance.clip_perturbation(images, adversarial, epsilon)
        clipped = tf.clip_by_value(clipped, *(tf.cast(b, images.dtype) for b in model.bounds))
        return self._quantize(model, images, clipped, toward_zero=True)

    @abc.abstractmethod
    def _run(
        self, model: Model, images: tf.Tensor, criterion: Criterion, epsilon: Any
    ) -> tf.Tensor:
        """The attack on validated inputs."""

    def _run_many(
        self, model: Model, images: tf.Tensor, criterion: Criterion, epsilons: list[Any]
    ) -> list[tf.Tensor]:
        """The attack for several epsilons (subclasses may share work between them)."""
        return [self._run(model, images, criterion, epsilon) for epsilon in epsilons]


class MinimizationAttack(Attack):
    """An attack that looks for the least distorted adversarial (paper §2.1: C&W).

    ``run`` returns, per image, the adversarial of smallest distance found, or the clean image
    where none was found.
    """

    def __call__(
        self, model: Any, images: Any, criterion: Any, *, epsilons: Any = None
    ) -> AttackResult:
        """Attacks ``images`` once and evaluates the result at each epsilon.

        Args:
            model: :class:`~tfsmooth.models.Model` or a Keras model / callable (bounds (0, 1)).
            images: float ``[N, H, W, C]`` in the model's bounds.
            criterion: integer labels ``[N]`` or a :class:`~tfsmooth.attacks.criteria.Criterion`.
            epsilons: ``None`` (no budget; ``K = 1``), a number >= 0, or a list (may hold
                ``None``).

        Returns:
            :class:`AttackResult`: ``raw`` is the attack's output (repeated for each epsilon in
            list form), ``clipped[k]`` its projection onto the ``epsilons[k]`` ball, and
            ``success[k]`` whether that projection is adversarial — i.e. an adversarial within
            ``epsilons[k]`` was found.
        """
        eps_list, listed = _epsilon_list(epsilons, allow_none=True)
        model, images, criterion, in_dtype = self._prepare(model, images, criterion)
        found = self._run(model, images, criterion)
        adversarial = tf.cast(found, in_dtype)
        clipped_list, successes, labels = [], [], []
        for epsilon in eps_list:
            if epsilon is None:
                clipped = adversarial
            else:
                clipped = self.distance.clip_perturbation(images, found, epsilon)
                clipped = tf.cast(
                    self._quantize(model, images, clipped, toward_zero=True), in_dtype
                )
            clipped_list.append(clipped)
            fooled, predicted = self._judge(model, criterion, tf.cast(clipped, images.dtype))
            successes.append(fooled)
            labels.append(predicted)
        success = tf.stack(successes, axis=0)
        predicted = tf.stack(labels, axis=0)
        if listed:
            return AttackResult([adversarial] * len(eps_list), clipped_list, success, predicted)
        return AttackResult(adversarial, clipped_list[0], success, predicted)

    def run(self, model: Any, images: Any, criterion: Any, **kwargs: Any) -> tf.Tensor:
        """The least distorted adversarial per image (validated inputs), ``[N, H, W, C]``."""
        if kwargs:
            raise TypeError(f"unexpected arguments {sorted(kwargs)}")
        model, images, criterion, in_dtype = self._prepare(model, images, criterion)
        return tf.cast(self._run(model, images, criterion), in_dtype)

    @abc.abstractmethod
    def _run(self, model: Model, images: tf.Tensor, criterion: Criterion) -> tf.Tensor:
        """The attack on validated inputs."""
