r"""Fast gradient attacks targeting a distortion: FGSM, I-FGSM, PGD2 and their smooth versions.

All of them follow the iterative process of the paper (eq. 10–12): from the clean image
:math:`\mathbf{x}_o` (or a random point of the :math:`\epsilon`-ball), repeat

.. math::

    \mathbf{g} = \nabla_{\mathbf{x}} J(\mathbf{x}^{(k)}), \qquad
    \mathbf{x}^{(k+1)} = c\big(\mathbf{x}^{(k)} + \eta\, n(\hat{s}_\alpha(\mathbf{g}))\big),

where :math:`J` is the cross-entropy of the true label (untargeted, ascended) or minus the
cross-entropy of the target class (targeted) — or, with ``loss="margin"``, minus the margin
loss of eq. 3 with :math:`m = 0` (the paper's :math:`\ell` in eq. 10, which it descends) —
:math:`\eta` the step size, :math:`n` the
normalization of the norm (:math:`\operatorname{sign}` for L∞, :math:`\mathbf{g}/\lVert
\mathbf{g}\rVert_2` for L2) and :math:`c` the projection onto the :math:`\epsilon`-ball around
:math:`\mathbf{x}_o` followed by clipping to the bounds. The paper writes the update as a descent
of a loss, :math:`\mathbf{x} - n(\cdot)`; ascending :math:`J` is the same thing.

Which loss: the cross-entropy is the usual choice of FGSM, I-FGSM and PGD, but it saturates. On
a confident network the softmax of the true class rounds to 1 in float32 and the gradient
underflows. On the shipped C4, 42 of the 974 test digits it classifies correctly have logit gaps
of 34 to 57 and cross-entropy gradient norms between 0 and 1.5e-14; with a guard of 1e-12
against division by zero, PGD2 never moved them (0.957 success even at L2 distortion 6). L2
steps now rescale the gradient by its largest entry before normalizing, so a tiny but non-zero
gradient still gives a full step; the margin loss has a gradient of order one until the image is
adversarial, whatever the confidence.

:math:`\hat{s}_\alpha` is the identity for the plain attacks. With a ``smoother`` it is the
graph smoothing guided by :math:`\mathbf{x}_o` (Zhang et al. 2019, eq. 12, "quick and dirty"):
the gradient is smoothed *before* it is normalized. For the L∞ attacks this means the sign of
the smoothed gradient, :math:`\operatorname{sign}(\hat{s}_\alpha(\mathbf{g}))` — the paper only
defines sPGD2; the smooth FGSM / I-FGSM are given by the same rule.

References:
    - I. Goodfellow, J. Shlens, C. Szegedy. *Explaining and harnessing adversarial examples*.
      ICLR 2015 (FGSM).
    - A. Kurakin, I. Goodfellow, S. Bengio. *Adversarial examples in the physical world*.
      ICLR workshop 2017 (I-FGSM).
    - A. Madry, A. Makelov, L. Schmidt, D. Tsipras, A. Vladu. *Towards deep learning models
      resistant to adversarial attacks*. ICLR 2018 (PGD).
    - H. Zhang, Y. Avrithis, T. Furon, L. Amsaleg. *Smooth adversarial examples*.
      arXiv:1903.11862, 2019 (sPGD2).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.attacks.base import FixedEpsilonAttack, _check_number
from tfsmooth.attacks.criteria import Criterion, Misclassification, TargetedMisclassification
from tfsmooth.attacks.distances import Distance, l2, linf
from tfsmooth.attacks.losses import attack_objective, margin_loss
from tfsmooth.attacks.quantization import quantize_perturbation
from tfsmooth.models.base import Model
from tfsmooth.smoothing.smoother import Smoother

logger = logging.getLogger(__name__)

__all__ = [
    "L2FastGradientAttack",
    "L2ProjectedGradientDescentAttack",
    "LinfBasicIterativeAttack",
    "LinfFastGradientAttack",
    "SmoothL2PGD",
]

_SEED_MAX = 2**31 - 1

#: The objectives a gradient attack can follow (the ``loss`` argument).
LOSSES = ("crossentropy", "margin")


def _check_loss(loss: Any) -> str:
    if not isinstance(loss, str) or loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {LOSSES}, got {loss!r}")
    return loss


def _l2_normalize(g: tf.Tensor) -> tf.Tensor:
    """``g / ||g||_2`` per image; a zero gradient stays zero.

    The gradient is first divided by its largest entry, so that tiny gradients (a saturated
    softmax gives norms of 1e-18 and below in float32) still give a unit direction instead of
    vanishing under the guard against division by zero.
    """
    axes = [1, 2, 3]
    scale = tf.reduce_max(tf.abs(g), axis=axes, keepdims=True)
    g = tf.math.divide_no_nan(g, scale)
    norms = tf.sqrt(tf.reduce_sum(tf.square(g), axis=axes, keepdims=True))
    return tf.math.divide_no_nan(g, norms)


def _check_seed(seed: Any) -> int | None:
    if seed is None:
        return None
    return v.check_int_at_least(seed, "seed", 0)


class _GradientAttack(FixedEpsilonAttack):
    """Shared loop of the fast gradient attacks (eq. 10–12); subclasses set the norm and defaults.

    Args:
        steps: iterations, >= 1.
        abs_stepsize: step size :math:`\\eta` in the attack's norm, or ``None`` to use
            ``rel_stepsize * epsilon``.
        rel_stepsize: step size relative to epsilon.
        random_start: start from a uniform random point of the epsilon ball.
        seed: seed of the random start (``None``: TensorFlow's global seed).
        smoother: smooths the gradient before normalization (see module doc).
        jit_compile: compile the loop with XLA.
        quantize_bits: ``None`` or a bit depth (8 for PNG): count an example as adversarial
            only if it stays adversarial with its perturbation rounded to that many bits, and
            return it rounded (see :mod:`tfsmooth.attacks.quantization`).
        stop_on_success: freeze each image as soon as it is adversarial (fewer steps, smaller
            distortion; foolbox's attacks do not stop, Kurakin et al.'s I-FGSM variants may).
        loss: ``"crossentropy"`` (ascend the cross-entropy of the true label; targeted: descend
            that of the target) or ``"margin"`` (descend the margin loss of eq. 3 with
            :math:`m = 0`, the paper's :math:`\\ell` in eq. 10). The margin loss does not
            saturate: on a confident network the cross-entropy gradient underflows in float32
            (norms of 1e-14 and below at logit gaps of 35 and more, or exactly zero), while
            the margin gradient keeps its size until the image is adversarial.
    """

    distance: Distance = l2

    def __init__(
        self,
        *,
        steps: int,
        abs_stepsize: float | None,
        rel_stepsize: float,
        random_start: bool,
        seed: int | None,
        smoother: Any,
        jit_compile: bool,
        stop_on_success: bool = False,
        quantize_bits: int | None = None,
        loss: str = "crossentropy",
    ) -> None:
        super().__init__(smoother=smoother, jit_compile=jit_compile, quantize_bits=quantize_bits)
        self.loss = _check_loss(loss)
        if not isinstance(stop_on_success, bool):
            raise TypeError(f"`stop_on_success` must be a bool, got {stop_on_success!r}")
        self.stop_on_success = stop_on_success
        self.steps = v.check_int_at_least(steps, "steps", 1)
        self.abs_stepsize = (
            None
            if abs_stepsize is None
            else _check_number(abs_stepsize, "abs_stepsize", strict=True)
        )
        self.rel_stepsize = _check_number(rel_stepsize, "rel_stepsize", strict=True)
        if not isinstance(random_start, bool):
            raise TypeError(f"`random_start` must be a bool, got {random_start!r}")
        self.random_start = random_start
        self.seed = _check_seed(seed)

    def _objective(self, logits: tf.Tensor, labels: tf.Tensor, targeted: bool) -> tf.Tensor:
        """Per-image objective that the attack *ascends*."""
        if self.loss == "margin":
            return -margin_loss(logits, labels, 0.0, targeted)
        return attack_objective(logits, labels, targeted)

    # -- the norm-specific parts ---------------------------------------------------------------
    def _direction(self, g: tf.Tensor) -> tf.Tensor:
        """:math:`n(\\mathbf{g})`: the unit step in the attack's norm."""
        if self.distance is linf:
            return tf.sign(g)
        return _l2_normalize(g)

    def _random_start(self, x0: tf.Tensor, epsilon: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """A uniform random perturbation in the epsilon ball."""
        shape = tf.shape(x0)
        if self.distance is linf:
            return tf.random.stateless_uniform(shape, seed, -1.0, 1.0, dtype=x0.dtype) * epsilon
        direction = _l2_normalize(tf.random.stateless_normal(shape, seed, dtype=x0.dtype))
        dims = tf.cast(tf.reduce_prod(shape[1:]), x0.dtype)
        u = tf.random.stateless_uniform([shape[0], 1, 1, 1], seed + 1, dtype=x0.dtype)
        return direction * epsilon * tf.pow(u, 1.0 / dims)

    # -- the compiled loop ---------------------------------------------------------------------
    def _build(self, model: Model, targeted: bool) -> Callable[..., tf.Tensor]:
        steps = self.steps
        smoothing = self.smoother is not None
        random_start = self.random_start
        stop_on_success = self.stop_on_success
        quantize_bits = self.quantize_bits
        low, high = model.bounds

        def attack_loop(
            images: tf.Tensor,
            labels: tf.Tensor,
            epsilons: tf.Tensor,
            step_sizes: tf.Tensor,
            seed: tf.Tensor,
        ) -> tf.Tensor:
            """All epsilons ``[K]`` in one call; returns ``[K, N, H, W, C]``."""
            x0 = images
            dtype = x0.dtype
            lo, hi = v.as_dtype(low, dtype), v.as_dtype(high, dtype)
            bound = self._bind(x0, model.bounds) if smoothing else None  # once for all epsilons
            criterion = (TargetedMisclassification if targeted else Misclassification)(labels)

            def one_epsilon(epsilon: tf.Tensor, step_size: tf.Tensor) -> tf.Tensor:
                x = x0
                if random_start:
                    delta = self._random_start(x0, epsilon, seed)
                    x = tf.clip_by_value(x0 + delta, lo, hi)

                def body(i: tf.Tensor, x: tf.Tensor, previous: tf.Tensor) -> tuple[tf.Tensor, ...]:
                    with tf.GradientTape() as tape:
                        tape.watch(x)
                        logits = model(x)
                        objective = tf.reduce_sum(self._objective(logits, labels, targeted))
                    g = tape.gradient(objective, x)
                    if bound is not None:
                        g = bound(g, x0=previous)
                        previous = g
                    new = x + step_size * self._direction(g)
                    new = x0 + self.distance.project(new - x0, epsilon)
                    new = tf.clip_by_value(new, lo, hi)
                    if stop_on_success:
                        if quantize_bits is not None:  # adversarial once saved, not before
                            delivered = quantize_perturbation(
                                x0, x, quantize_bits, model.bounds, toward_zero=True
                            )
                            logits = model(delivered)
                        done = criterion.is_adversarial(logits)
                        new = tf.where(tf.reshape(done, [-1, 1, 1, 1]), x, new)
                    # A model may lose the static batch size; the loop state keeps its shapes.
                    new.set_shape(x.shape)
                    previous.set_shape(x.shape)
                    return i + 1, new, previous

                _, x, _ = tf.while_loop(
                    lambda i, *_: i < steps,
                    body,
                    (tf.constant(0), x, tf.zeros_like(x0)),
                    maximum_iterations=steps,
                )
                return x

            count = tf.shape(epsilons)[0]
            outputs = tf.TensorArray(dtype, size=count, element_shape=x0.shape)

            def over_epsilons(k: tf.Tensor, outputs: tf.TensorArray) -> tuple[Any, ...]:
                return k + 1, outputs.write(k, one_epsilon(epsilons[k], step_sizes[k]))

            _, outputs = tf.while_loop(lambda k, _: k < count, over_epsilons, (0, outputs))
            return outputs.stack()

        return attack_loop

    def _run_many(
        self, model: Model, images: tf.Tensor, criterion: Criterion, epsilons: list[Any]
    ) -> list[tf.Tensor]:
        dtype = images.dtype
        eps = tf.stack([tf.cast(e, dtype) for e in epsilons])
        if self.abs_stepsize is not None:
            step_sizes = tf.fill(tf.shape(eps), tf.constant(self.abs_stepsize, dtype))
        else:
            step_sizes = self.rel_stepsize * eps
        if self.seed is not None:
            seed = tf.constant([self.seed, 0], tf.int64)
        else:
            seed = tf.random.uniform([2], 0, _SEED_MAX, dtype=tf.int64)
        function = self._compiled_function(model, criterion, self._build)
        stacked = function(images, criterion.labels, eps, step_sizes, seed)
        return [stacked[k] for k in range(len(epsilons))]

    def _run(
        self, model: Model, images: tf.Tensor, criterion: Criterion, epsilon: Any
    ) -> tf.Tensor:
        return self._run_many(model, images, criterion, [epsilon])[0]

    def get_config(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "abs_stepsize": self.abs_stepsize,
            "rel_stepsize": self.rel_stepsize,
            "random_start": self.random_start,
            "seed": self.seed,
            "stop_on_success": self.stop_on_success,
            "loss": self.loss,
            **super().get_config(),
        }


class LinfFastGradientAttack(_GradientAttack):
    r"""FGSM (Goodfellow et al. 2015): one step of size :math:`\epsilon` along the gradient sign.

    .. math::

        \mathbf{x}_a = \operatorname{clip}_{[\text{low}, \text{high}]}\big(\mathbf{x}_o +
        \epsilon \operatorname{sign}(\hat{s}(\nabla_{\mathbf{x}} J(\mathbf{x}_o)))\big)

    with :math:`J` the cross-entropy of the true label (untargeted: ascended) or minus that of
    the target (targeted), :math:`\hat{s}` the identity or the ``smoother``. The paper uses
    :math:`\epsilon = 0.3` on MNIST and :math:`0.1255` on ImageNet.

    Args:
        random_start: start from a uniform random point of the L∞ ball (then the step
            ``epsilon`` is followed by a projection onto the ball).
        seed: seed of the random start.
        smoother: optional :class:`~tfsmooth.smoothing.Smoother`: the sign of the smoothed
            gradient is used.
        jit_compile: compile the attack with XLA (needs an XLA-compatible model).
        quantize_bits: ``None`` or a bit depth (8 for PNG): count an example as adversarial
            only if it stays adversarial with its perturbation rounded to that many bits, and
            return it rounded (see :mod:`tfsmooth.attacks.quantization`).
        loss: ``"crossentropy"`` (default) or ``"margin"`` (eq. 3, see the module docstring).

    Example:
        >>> net = tf.keras.Sequential([tf.keras.Input([4, 4, 1]), tf.keras.layers.Flatten(),
        ...                            tf.keras.layers.Dense(3)])
        >>> images = tf.random.uniform([2, 4, 4, 1], seed=1)
        >>> labels = tf.argmax(net(images), axis=1)
        >>> raw, clipped, success = LinfFastGradientAttack()(net, images, labels, epsilons=0.1)
        >>> bool(tf.reduce_max(tf.abs(clipped - images)) <= 0.1 + 1e-6), success.shape
        (True, TensorShape([1, 2]))
    """

    distance: Distance = linf

    def __init__(
        self,
        *,
        random_start: bool = False,
        seed: int | None = None,
        smoother: Smoother | Any = None,
        jit_compile: bool = False,
        loss: str = "crossentropy",
        quantize_bits: int | None = None,
    ) -> None:
        super().__init__(
            steps=1,
            abs_stepsize=None,
            rel_stepsize=1.0,
            random_start=random_start,
            seed=seed,
            smoother=smoother,
            jit_compile=jit_compile,
            loss=loss,
            quantize_bits=quantize_bits,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        for key in ("steps", "abs_stepsize", "rel_stepsize", "stop_on_success"):
            config.pop(key)
        return config


class L2FastGradientAttack(LinfFastGradientAttack):
    r"""Fast gradient method in L2: one step of L2 norm :math:`\epsilon` along the gradient.

    .. math::

        \mathbf{x}_a = \operatorname{clip}_{[\text{low}, \text{high}]}\Big(\mathbf{x}_o +
        \epsilon\, \frac{\hat{s}(\mathbf{g})}{\lVert \hat{s}(\mathbf{g}) \rVert_2}\Big),
        \quad \mathbf{g} = \nabla_{\mathbf{x}} J(\mathbf{x}_o).

    Same arguments as :class:`LinfFastGradientAttack`.

    Example:
        >>> L2FastGradientAttack()
        L2FastGradientAttack(random_start=False, seed=None, loss='crossentropy', smoother=None, ...)
    """

    distance: Distance = l2


class LinfBasicIterativeAttack(_GradientAttack):
    r"""I-FGSM / BIM (Kurakin et al. 2017): iterated gradient-sign steps projected to the L∞ ball.

    .. math::

        \mathbf{x}^{(k+1)} = \operatorname{clip}_{[\text{low}, \text{high}]}
        \Big(\operatorname{clip}_{\mathbf{x}_o, \epsilon}\big(\mathbf{x}^{(k)} +
        \eta \operatorname{sign}(\hat{s}(\nabla_{\mathbf{x}} J(\mathbf{x}^{(k)})))\big)\Big).

    The paper uses :math:`\epsilon = 0.3, \eta = 0.08` on MNIST and
    :math:`\epsilon = 0.1255, \eta = 0.08` on ImageNet.

    Args:
        steps: number of iterations, >= 1.
        step_size: absolute step :math:`\eta` (per pixel), > 0; ``None`` uses
            ``rel_stepsize * epsilon``.
        rel_stepsize: step relative to epsilon when ``step_size`` is ``None``.
        random_start: start from a uniform random point of the ball.
        seed: seed of the random start.
        smoother: optional :class:`~tfsmooth.smoothing.Smoother`: steps along the sign of the
            smoothed gradient.
        stop_on_success: freeze each image as soon as it is adversarial.
        jit_compile: compile the attack with XLA.
        quantize_bits: ``None`` or a bit depth (8 for PNG): count an example as adversarial
            only if it stays adversarial with its perturbation rounded to that many bits, and
            return it rounded (see :mod:`tfsmooth.attacks.quantization`).
        loss: ``"crossentropy"`` (default) or ``"margin"`` (eq. 3, see the module docstring).

    Example:
        >>> LinfBasicIterativeAttack(steps=10, step_size=0.08)
        LinfBasicIterativeAttack(steps=10, step_size=0.08, rel_stepsize=0.2, ...)
    """

    distance = linf

    def __init__(
        self,
        *,
        steps: int = 10,
        step_size: float | None = None,
        rel_stepsize: float = 0.2,
        random_start: bool = False,
        seed: int | None = None,
        smoother: Smoother | Any = None,
        stop_on_success: bool = False,
        jit_compile: bool = False,
        loss: str = "crossentropy",
        quantize_bits: int | None = None,
    ) -> None:
        if step_size is not None:
            step_size = _check_number(step_size, "step_size", strict=True)
        super().__init__(
            steps=steps,
            abs_stepsize=step_size,
            rel_stepsize=rel_stepsize,
            random_start=random_start,
            seed=seed,
            smoother=smoother,
            stop_on_success=stop_on_success,
            jit_compile=jit_compile,
            loss=loss,
            quantize_bits=quantize_bits,
        )

    @property
    def step_size(self) -> float | None:
        """The absolute step size, or ``None`` (relative)."""
        return self.abs_stepsize

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config.pop("abs_stepsize")
        return {"steps": config.pop("steps"), "step_size": self.step_size, **config}


class L2ProjectedGradientDescentAttack(_GradientAttack):
    r"""PGD in L2 (Madry et al. 2018), the paper's PGD2; with a smoother, the paper's sPGD2.

    .. math::

        \mathbf{x}^{(k+1)} = \operatorname{clip}_{[\text{low}, \text{high}]}
        \Big(\Pi_{\mathbf{x}_o, \epsilon}\big(\mathbf{x}^{(k)} + \eta\,
        \frac{\hat{s}(\mathbf{g})}{\lVert \hat{s}(\mathbf{g}) \rVert_2}\big)\Big),
        \quad \mathbf{g} = \nabla_{\mathbf{x}} J(\mathbf{x}^{(k)}),

    with :math:`\Pi_{\mathbf{x}_o, \epsilon}` the projection onto the L2 ball (the gradient is
    L2-normalized per image; :math:`\hat{s}` is the identity or the ``smoother``, eq. 12).

    Args:
        steps: number of iterations, >= 1.
        rel_stepsize: step :math:`\eta` relative to epsilon.
        abs_stepsize: absolute step in L2 norm; overrides ``rel_stepsize``.
        random_start: start from a uniform random point of the L2 ball.
        seed: seed of the random start.
        smoother: optional :class:`~tfsmooth.smoothing.Smoother` (sPGD2).
        stop_on_success: freeze each image as soon as it is adversarial.
        jit_compile: compile the attack with XLA.
        quantize_bits: ``None`` or a bit depth (8 for PNG): count an example as adversarial
            only if it stays adversarial with its perturbation rounded to that many bits, and
            return it rounded (see :mod:`tfsmooth.attacks.quantization`).
        loss: ``"crossentropy"`` (default) or ``"margin"`` (eq. 3, see the module docstring).

    Example:
        >>> L2ProjectedGradientDescentAttack(steps=20)
        L2ProjectedGradientDescentAttack(steps=20, rel_stepsize=0.025, abs_stepsize=None, ...)
    """

    distance = l2

    def __init__(
        self,
        *,
        steps: int = 50,
        rel_stepsize: float = 0.025,
        abs_stepsize: float | None = None,
        random_start: bool = False,
        seed: int | None = None,
        smoother: Smoother | Any = None,
        stop_on_success: bool = False,
        jit_compile: bool = False,
        loss: str = "crossentropy",
        quantize_bits: int | None = None,
    ) -> None:
        super().__init__(
            steps=steps,
            abs_stepsize=abs_stepsize,
            rel_stepsize=rel_stepsize,
            random_start=random_start,
            seed=seed,
            smoother=smoother,
            stop_on_success=stop_on_success,
            jit_compile=jit_compile,
            loss=loss,
            quantize_bits=quantize_bits,
        )

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        return {
            "steps": config.pop("steps"),
            "rel_stepsize": config.pop("rel_stepsize"),
            "abs_stepsize": config.pop("abs_stepsize"),
            **config,
        }


class SmoothL2PGD(L2ProjectedGradientDescentAttack):
    r"""sPGD2 (Zhang et al. 2019, eq. 12): L2 PGD with a gradient smoothed by :math:`\hat{s}`.

    Identical to :class:`L2ProjectedGradientDescentAttack` except that a smoother is required;
    the default is ``Smoother(0.95)`` (the paper's MNIST :math:`\alpha`, Laplacian kernel, the
    ``"auto"`` solver: a red-black reduced Chebyshev iteration, memory linear in the batch;
    the paper precomputes the inverse, ``solver="exact"``, which costs 2.4 MB per 28x28
    image). For ImageNet-size images the paper uses ``Smoother(0.997, solver="cg",
    max_iter=50)`` (CG, 50 iterations; pass ``tol=0.0`` to run exactly 50).

    Example:
        >>> SmoothL2PGD(steps=20).smoother
        Smoother(alpha=0.95, solver='auto', ...)
    """

    def __init__(
        self,
        *,
        steps: int = 50,
        rel_stepsize: float = 0.025,
        abs_stepsize: float | None = None,
        random_start: bool = False,
        seed: int | None = None,
        smoother: Smoother | Any = None,
        stop_on_success: bool = False,
        jit_compile: bool = False,
        loss: str = "crossentropy",
        quantize_bits: int | None = None,
    ) -> None:
        if smoother is None:
            smoother = Smoother(0.95)
        super().__init__(
            steps=steps,
            rel_stepsize=rel_stepsize,
            abs_stepsize=abs_stepsize,
            random_start=random_start,
            seed=seed,
            smoother=smoother,
            stop_on_success=stop_on_success,
            jit_compile=jit_compile,
            loss=loss,
            quantize_bits=quantize_bits,
        )
