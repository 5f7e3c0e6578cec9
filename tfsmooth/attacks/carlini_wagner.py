r"""The L2 attack of Carlini & Wagner and its smooth version sC&W (paper §2.1 and §4.2).

C&W looks for the least distorted adversarial by minimizing a Lagrangian with Adam,

.. math::

    \min_{\mathbf{z}} \; \lVert \mathbf{r} \rVert_2^2 + c\, \ell(f(\mathbf{x}), t),

with :math:`\ell` the margin loss of eq. 3 (confidence :math:`m`) and :math:`c = 1/\lambda` found
by a binary search per image (multiplied by 10 until an adversarial is found, then bisected).
Two parametrizations of the image :math:`\mathbf{x}` by the variable :math:`\mathbf{z}`:

- ``"tanh"`` (Carlini & Wagner 2017, eq. 4): :math:`\mathbf{x} = \tfrac12(\tanh(\mathbf{w}_o +
  \mathbf{z}) + 1)` mapped to the bounds, :math:`\mathbf{w}_o` the preimage of
  :math:`\mathbf{x}_o`, and :math:`\mathbf{r} = \mathbf{x} - \mathbf{x}_o`;
- ``"clip"`` (the paper, eq. 13): :math:`\mathbf{r} = \mathbf{z}` unconstrained,
  :math:`\mathbf{x} = c(\mathbf{x}_o + \mathbf{r})` clipped to the bounds.

**sC&W** (Zhang et al. 2019, eq. 17–19) passes the variable through the smoother guided by
:math:`\mathbf{x}_o`: :math:`\mathbf{r} = \hat{s}_\alpha(\mathbf{z})`, :math:`\mathbf{z}` starting
at 0, so every iterate of the perturbation is smooth like :math:`\mathbf{x}_o` — eq. 18,

.. math::

    \min_{\mathbf{z}} \; \lVert \hat{s}_\alpha(\mathbf{z}) \rVert_2^2 +
    c\, \ell\big(f(c(\mathbf{x}_o + \hat{s}_\alpha(\mathbf{z}))), t\big).

The gradient w.r.t. :math:`\mathbf{z}` is the gradient w.r.t. :math:`\mathbf{r}` smoothed once
more (eq. 19), which :class:`~tfsmooth.smoothing.BoundSmoother` provides as a custom gradient.
Inside the loop the forward CG solve is warm-started from the previous :math:`\mathbf{r}` and the
backward one from the previous gradient (no effect with ``solver="exact"``).

Over all steps and binary-search rounds the attack keeps, per image, the adversarial (with
margin :math:`m`) of smallest L2 distortion :math:`\lVert \mathbf{x} - \mathbf{x}_o \rVert`.

References:
    - N. Carlini, D. Wagner. *Towards evaluating the robustness of neural networks*.
      IEEE S&P 2017.
    - H. Zhang, Y. Avrithis, T. Furon, L. Amsaleg. *Smooth adversarial examples*.
      arXiv:1903.11862, 2019.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.attacks.base import MinimizationAttack, _check_number
from tfsmooth.attacks.criteria import Criterion, Misclassification, TargetedMisclassification
from tfsmooth.attacks.distances import Distance, l2
from tfsmooth.attacks.losses import margin_loss
from tfsmooth.attacks.quantization import quantize_perturbation
from tfsmooth.models.base import Model
from tfsmooth.smoothing.smoother import Smoother

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULTS",
    "PARAMETRIZATIONS",
    "CarliniWagnerInfo",
    "L2CarliniWagnerAttack",
    "SmoothCarliniWagnerL2",
]

#: Ways to map the optimization variable to an image.
PARAMETRIZATIONS = ("tanh", "clip")

#: Defaults shared by :class:`L2CarliniWagnerAttack` and :class:`SmoothCarliniWagnerL2` (the two
#: differ only by the smoother): the paper's clipped parametrization (eq. 13), and a budget and
#: step that converge on [0, 1] images from MNIST to ImageNet size (Adam's per-pixel step of 0.1,
#: the paper's, leaves ImageNet perturbations on its own noise floor of about 15.9 in L2).
DEFAULTS: dict[str, Any] = {
    "binary_search_steps": 5,
    "steps": 200,
    "learning_rate": 0.01,
    "confidence": 0.0,
    "initial_const": 1.0,
    "parametrization": "clip",
}

_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
_TANH_SHRINK = 0.999999


class CarliniWagnerInfo(NamedTuple):
    """Detailed output of :meth:`L2CarliniWagnerAttack.run_with_info`.

    Attributes:
        adversarials: best adversarial per image ``[N, H, W, C]`` (smallest L2 distortion
            among iterates adversarial with the margin ``confidence``); the clean image where
            none was found.
        success: bool ``[N]``: an adversarial was found.
        distances: L2 distortion of ``adversarials`` ``[N]`` (``inf`` where none was found).
        latent: the optimization variable :math:`\\mathbf{z}` at the best iterate ``[N, H, W, C]``
            (zeros where none was found). ``"clip"``: the perturbation before clipping is
            :math:`\\hat{s}(\\mathbf{z})` (``z`` itself without smoother); ``"tanh"``: the
            offset added to the tanh preimage of the clean image (smoothed if a smoother is set).
        const: per image, the smallest constant :math:`c` with which an adversarial was found,
            else the last one tried ``[N]``.
        cg_iterations: int32 ``[N]``: forward CG iterations of the smoother summed over all steps
            (largest over channels; 0 without smoother or with the exact solver).
        steps: int32 scalar: optimization steps run, summed over the binary-search rounds.
    """

    adversarials: tf.Tensor
    success: tf.Tensor
    distances: tf.Tensor
    latent: tf.Tensor
    const: tf.Tensor
    cg_iterations: tf.Tensor
    steps: tf.Tensor


class L2CarliniWagnerAttack(MinimizationAttack):
    r"""The L2 attack of Carlini & Wagner (2017); with a ``smoother``, the paper's sC&W.

    Args:
        binary_search_steps: rounds of the binary search on the constant :math:`c`, >= 1.
        steps: Adam steps per round, >= 1.
        learning_rate: Adam's learning rate, > 0.
        confidence: margin :math:`m \ge 0` of the loss (eq. 3).
        initial_const: initial :math:`c = 1/\lambda`, > 0.
        abort_early: stop a round when the total loss has not decreased by 0.01% over the last
            ``steps / 10`` steps (checked for the whole batch).
        parametrization: ``"tanh"`` (Carlini & Wagner) or ``"clip"`` (the paper's eq. 13).
        smoother: optional :class:`~tfsmooth.smoothing.Smoother` (or a bound one): the variable
            is smoothed, :math:`\mathbf{r} = \hat{s}(\mathbf{z})` (sC&W, eq. 18).
        warm_start: warm-start the smoother's CG solves from the previous step's output and
            gradient (``False``: cold starts, as the paper; no effect on the exact solver).
        jit_compile: compile the attack with XLA (needs an XLA-compatible model).
        quantize_bits: ``None`` or a bit depth (8 for PNG): count an example as adversarial
            only if it stays adversarial with its perturbation rounded to that many bits, and
            return it rounded (see :mod:`tfsmooth.attacks.quantization`). Each step then
            evaluates the network on the rounded image, with the gradient passed straight
            through the rounding: no extra forward pass, and the search of :math:`c` raises it
            until a deliverable adversarial is found.

    Defaults (:data:`DEFAULTS`, shared with :class:`SmoothCarliniWagnerL2`): 5 search rounds of
    200 steps, learning rate 0.01, ``initial_const=1``, ``confidence=0``, the clipped
    parametrization (foolbox's are 9 × 10000, ``c = 1e-3``, tanh). Paper settings: MNIST
    ``confidence=1, learning_rate=0.1, initial_const=15``; ImageNet ``confidence=0,
    learning_rate=0.1, initial_const=100``. The paper does not state the number of steps and
    search rounds.

    Example:
        >>> net = tf.keras.Sequential([tf.keras.Input([4, 4, 1]), tf.keras.layers.Flatten(),
        ...                            tf.keras.layers.Dense(3)])
        >>> images = tf.random.uniform([2, 4, 4, 1], seed=1)
        >>> labels = tf.argmax(net(images), axis=1)
        >>> attack = L2CarliniWagnerAttack(binary_search_steps=2, steps=20, learning_rate=0.1)
        >>> raw, clipped, success = attack(net, images, labels)
        >>> raw.shape, success.shape
        (TensorShape([2, 4, 4, 1]), TensorShape([1, 2]))
    """

    distance: Distance = l2

    def __init__(
        self,
        *,
        binary_search_steps: int = DEFAULTS["binary_search_steps"],
        steps: int = DEFAULTS["steps"],
        learning_rate: float = DEFAULTS["learning_rate"],
        confidence: float = DEFAULTS["confidence"],
        initial_const: float = DEFAULTS["initial_const"],
        abort_early: bool = True,
        parametrization: str = DEFAULTS["parametrization"],
        smoother: Smoother | Any = None,
        warm_start: bool = True,
        jit_compile: bool = False,
        quantize_bits: int | None = None,
    ) -> None:
        super().__init__(smoother=smoother, jit_compile=jit_compile, quantize_bits=quantize_bits)
        if not isinstance(warm_start, bool):
            raise TypeError(f"`warm_start` must be a bool, got {warm_start!r}")
        self.warm_start = warm_start
        self.binary_search_steps = v.check_int_at_least(
            binary_search_steps, "binary_search_steps", 1
        )
        self.steps = v.check_int_at_least(steps, "steps", 1)
        self.learning_rate = _check_number(learning_rate, "learning_rate", strict=True)
        self.confidence = _check_number(confidence, "confidence")
        self.initial_const = _check_number(initial_const, "initial_const", strict=True)
        if not isinstance(abort_early, bool):
            raise TypeError(f"`abort_early` must be a bool, got {abort_early!r}")
        self.abort_early = abort_early
        self.parametrization = v.check_choice(parametrization, "parametrization", PARAMETRIZATIONS)

    def get_config(self) -> dict[str, Any]:
        return {
            "binary_search_steps": self.binary_search_steps,
            "steps": self.steps,
            "learning_rate": self.learning_rate,
            "confidence": self.confidence,
            "initial_const": self.initial_const,
            "abort_early": self.abort_early,
            "parametrization": self.parametrization,
            "warm_start": self.warm_start,
            **super().get_config(),
        }

    # -- public ---------------------------------------------------------------------------------
    def run_with_info(self, model: Any, images: Any, criterion: Any) -> CarliniWagnerInfo:
        """Runs the attack and returns the best adversarials with details (latent, constants).

        Args:
            model: :class:`~tfsmooth.models.Model` or a Keras model / callable (bounds (0, 1)).
            images: float ``[N, H, W, C]`` in the model's bounds.
            criterion: integer labels ``[N]`` or a :class:`~tfsmooth.attacks.criteria.Criterion`.
        """
        model, images, criterion, _ = self._prepare(model, images, criterion)
        return self._run_info(model, images, criterion)

    def _run(self, model: Model, images: tf.Tensor, criterion: Criterion) -> tf.Tensor:
        return self._run_info(model, images, criterion).adversarials

    def _run_info(self, model: Model, images: tf.Tensor, criterion: Criterion) -> CarliniWagnerInfo:
        function = self._compiled_function(model, criterion, self._build)
        return CarliniWagnerInfo(*function(images, criterion.labels))

    # -- the compiled optimization -------------------------------------------------------------
    def _build(self, model: Model, targeted: bool) -> Callable[..., tuple[tf.Tensor, ...]]:
        rounds = self.binary_search_steps
        steps = self.steps
        learning_rate = self.learning_rate
        confidence = self.confidence
        initial_const = self.initial_const
        check_every = max(int(math.ceil(steps / 10)), 1)
        abort_early = self.abort_early
        tanh = self.parametrization == "tanh"
        smoothing = self.smoother is not None
        warm_start = self.warm_start
        quantize_bits = self.quantize_bits
        low, high = model.bounds

        def optimize(images: tf.Tensor, labels: tf.Tensor) -> tuple[tf.Tensor, ...]:
            x0 = images
            dtype = x0.dtype
            batch = tf.shape(x0)[0]
            lo, hi = v.as_dtype(low, dtype), v.as_dtype(high, dtype)
            bound = self._bind(x0, model.bounds) if smoothing else None
            criterion = (TargetedMisclassification if targeted else Misclassification)(labels)
            inf = tf.constant(float("inf"), dtype)
            if tanh:
                unit = (x0 - lo) / (hi - lo) * 2.0 - 1.0
                w0 = tf.atanh(unit * _TANH_SHRINK)

            def perturb(
                z: tf.Tensor, prev_r: tf.Tensor, prev_grad: tf.Tensor
            ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
                """z -> (smoothed variable, image, squared-norm penalty, CG iterations)."""
                if bound is not None:
                    if warm_start:
                        smoothed = bound.smooth(z, x0=prev_r, grad_x0=prev_grad)
                    else:
                        smoothed = bound.smooth(z)
                    s = smoothed.output
                    iters = tf.reduce_max(tf.reshape(smoothed.iterations, [batch, -1]), axis=1)
                else:
                    s = z
                    iters = tf.zeros([batch], tf.int32)
                if tanh:
                    x = lo + (hi - lo) * (tf.tanh(w0 + s) + 1.0) / 2.0
                    penalty = tf.reduce_sum(tf.square(x - x0), axis=[1, 2, 3])
                else:
                    x = tf.clip_by_value(x0 + s, lo, hi)
                    penalty = tf.reduce_sum(tf.square(s), axis=[1, 2, 3])
                return s, x, penalty, iters

            def one_round(
                const: tf.Tensor,
                best_adv: tf.Tensor,
                best_dist: tf.Tensor,
                best_latent: tf.Tensor,
                cg_total: tf.Tensor,
                steps_total: tf.Tensor,
            ) -> tuple[tf.Tensor, ...]:
                zeros = tf.zeros_like(x0)

                def step_body(
                    step: tf.Tensor,
                    stop: tf.Tensor,
                    z: tf.Tensor,
                    m: tf.Tensor,
                    u: tf.Tensor,
                    prev_r: tf.Tensor,
                    prev_grad: tf.Tensor,
                    loss_at_check: tf.Tensor,
                    found: tf.Tensor,
                    best_adv: tf.Tensor,
                    best_dist: tf.Tensor,
                    best_latent: tf.Tensor,
                    cg_total: tf.Tensor,
                ) -> tuple[tf.Tensor, ...]:
                    with tf.GradientTape() as tape:
                        tape.watch(z)
                        s, x, penalty, iters = perturb(z, prev_r, prev_grad)
                        if quantize_bits is not None:
                            # the network sees what a file of that bit depth delivers; the
                            # gradient passes the rounding as the identity (straight through)
                            rounded = quantize_perturbation(x0, x, quantize_bits, model.bounds)
                            x = x + tf.stop_gradient(rounded - x)
                        logits = model(x)
                        margin = margin_loss(logits, labels, confidence, targeted)
                        loss = tf.reduce_sum(penalty + const * margin)
                    grad = tape.gradient(loss, z)
                    # keep the best adversarial of this iterate (before the update)
                    adversarial = criterion.is_adversarial(logits, confidence=confidence)
                    dist = tf.sqrt(tf.reduce_sum(tf.square(x - x0), axis=[1, 2, 3]))
                    better = tf.logical_and(adversarial, dist < best_dist)
                    mask = tf.reshape(better, [-1, 1, 1, 1])
                    best_adv = tf.where(mask, x, best_adv)
                    best_latent = tf.where(mask, z, best_latent)
                    best_dist = tf.where(better, dist, best_dist)
                    found = tf.logical_or(found, adversarial)
                    # Adam
                    t = tf.cast(step + 1, dtype)
                    m = _BETA1 * m + (1.0 - _BETA1) * grad
                    u = _BETA2 * u + (1.0 - _BETA2) * tf.square(grad)
                    m_hat = m / (1.0 - tf.pow(v.as_dtype(_BETA1, dtype), t))
                    u_hat = u / (1.0 - tf.pow(v.as_dtype(_BETA2, dtype), t))
                    z = z - learning_rate * m_hat / (tf.sqrt(u_hat) + _ADAM_EPS)
                    # abort early when the loss stalls
                    if abort_early:
                        checking = tf.equal(step % check_every, 0)
                        stalled = tf.logical_not(loss <= 0.9999 * loss_at_check)
                        stop = tf.logical_and(checking, stalled)
                        loss_at_check = tf.where(checking, loss, loss_at_check)
                    outputs = (
                        step + 1, stop, z, m, u, s, grad, loss_at_check, found,
                        best_adv, best_dist, best_latent, cg_total + iters,
                    )  # fmt: skip
                    inputs = (
                        step, stop, z, m, u, prev_r, prev_grad, loss_at_check, found,
                        best_adv, best_dist, best_latent, cg_total,
                    )  # fmt: skip
                    # Some ops lose the static batch size; the loop state keeps its shapes.
                    for new_value, old_value in zip(outputs, inputs):
                        new_value.set_shape(old_value.shape)
                    return outputs

                state = (
                    tf.constant(0), tf.constant(False), zeros, zeros, zeros, zeros, zeros,
                    inf, tf.zeros([batch], tf.bool), best_adv, best_dist, best_latent, cg_total,
                )  # fmt: skip
                # One step at a time: with overlapping iterations (TF's default 10), the previous
                # step's bookkeeping ran beside the smoother's compiled solves and made them about
                # 40 % slower on 2 cores (benchmarks/attack_steps.py); C&W itself is unaffected.
                out = tf.while_loop(
                    lambda step, stop, *_: tf.logical_and(step < steps, tf.logical_not(stop)),
                    step_body,
                    state,
                    maximum_iterations=steps,
                    parallel_iterations=1,
                )
                steps_run, found = out[0], out[8]
                best_adv, best_dist, best_latent, cg_total = out[9], out[10], out[11], out[12]
                return found, best_adv, best_dist, best_latent, cg_total, steps_total + steps_run

            def round_body(
                i: tf.Tensor,
                const: tf.Tensor,
                lower: tf.Tensor,
                upper: tf.Tensor,
                best_adv: tf.Tensor,
                best_dist: tf.Tensor,
                best_latent: tf.Tensor,
                cg_total: tf.Tensor,
                steps_total: tf.Tensor,
            ) -> tuple[tf.Tensor, ...]:
                inputs = (
                    i, const, lower, upper, best_adv, best_dist, best_latent, cg_total,
                    steps_total,
                )  # fmt: skip
                found, best_adv, best_dist, best_latent, cg_total, steps_total = one_round(
                    const, best_adv, best_dist, best_latent, cg_total, steps_total
                )
                # binary search on c per image: x10 until success, then bisection
                upper = tf.where(found, tf.minimum(upper, const), upper)
                lower = tf.where(found, lower, tf.maximum(lower, const))
                const = tf.where(tf.math.is_inf(upper), const * 10.0, (lower + upper) / 2.0)
                outputs = (
                    i + 1, const, lower, upper, best_adv, best_dist, best_latent, cg_total,
                    steps_total,
                )  # fmt: skip
                for new_value, old_value in zip(outputs, inputs):
                    new_value.set_shape(old_value.shape)
                return outputs

            state = (
                tf.constant(0),
                tf.fill([batch], v.as_dtype(initial_const, dtype)),
                tf.zeros([batch], dtype),
                tf.fill([batch], inf),
                x0,
                tf.fill([batch], inf),
                tf.zeros_like(x0),
                tf.zeros([batch], tf.int32),
                tf.constant(0),
            )
            out = tf.while_loop(
                lambda i, *_: i < rounds, round_body, state, maximum_iterations=rounds
            )
            _, _, _, _, best_adv, best_dist, best_latent, cg_total, steps_total = out
            # the smallest c that gave an adversarial, else the last c tried (the update after
            # a failed round multiplied it by 10)
            const_used = tf.where(tf.math.is_inf(out[3]), out[1] / 10.0, out[3])
            success = tf.math.is_finite(best_dist)
            return best_adv, success, best_dist, best_latent, const_used, cg_total, steps_total

        return optimize


class SmoothCarliniWagnerL2(L2CarliniWagnerAttack):
    r"""sC&W (Zhang et al. 2019, eq. 18): :class:`L2CarliniWagnerAttack` with a smoother.

    Same arguments and defaults as :class:`L2CarliniWagnerAttack` (:data:`DEFAULTS`), so that
    ``SmoothCarliniWagnerL2()`` and ``L2CarliniWagnerAttack()`` differ by the smoother only; the
    smoother defaults to ``Smoother(0.95)`` (the paper's MNIST :math:`\alpha`, Laplacian kernel).
    The paper's own settings are presets (:mod:`tfsmooth.evaluation.presets`): MNIST
    ``confidence=1, learning_rate=0.1, initial_const=15``, :math:`\alpha = 0.95`; ImageNet
    ``confidence=0, learning_rate=0.1, initial_const=100``, :math:`\alpha = 0.997` with 50 CG
    iterations (:meth:`imagenet`).

    Example:
        >>> SmoothCarliniWagnerL2().smoother.alpha, SmoothCarliniWagnerL2.imagenet().smoother.alpha
        (0.95, 0.997)
        >>> SmoothCarliniWagnerL2().learning_rate == L2CarliniWagnerAttack().learning_rate
        True
    """

    def __init__(
        self,
        *,
        binary_search_steps: int = DEFAULTS["binary_search_steps"],
        steps: int = DEFAULTS["steps"],
        learning_rate: float = DEFAULTS["learning_rate"],
        confidence: float = DEFAULTS["confidence"],
        initial_const: float = DEFAULTS["initial_const"],
        abort_early: bool = True,
        parametrization: str = DEFAULTS["parametrization"],
        smoother: Smoother | Any = None,
        warm_start: bool = True,
        jit_compile: bool = False,
        quantize_bits: int | None = None,
    ) -> None:
        if smoother is None:
            smoother = Smoother(0.95)
        super().__init__(
            binary_search_steps=binary_search_steps,
            steps=steps,
            learning_rate=learning_rate,
            confidence=confidence,
            initial_const=initial_const,
            abort_early=abort_early,
            parametrization=parametrization,
            smoother=smoother,
            warm_start=warm_start,
            jit_compile=jit_compile,
            quantize_bits=quantize_bits,
        )

    @classmethod
    def imagenet(cls, **overrides: Any) -> SmoothCarliniWagnerL2:
        """The paper's ImageNet setting: ``m=0, c=100, lr=0.1``, alpha 0.997, 50 CG iterations."""
        settings: dict[str, Any] = {
            "confidence": 0.0,
            "initial_const": 100.0,
            "learning_rate": 0.1,
            "smoother": Smoother(0.997, solver="cg", max_iter=50),
        }
        settings.update(overrides)
        return cls(**settings)
