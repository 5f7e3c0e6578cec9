r"""Exact-value tests of C&W against an independent NumPy (float64) re-implementation.

On a linear classifier :math:`\mathbf{y} = \mathbf{x}\,\mathbf{W} + \mathbf{b}` over
``1 x 2 x 2 x 1`` images every quantity has a closed form, so the reference below recomputes by
hand, without the library's code: the margin loss of eq. 3
:math:`[y_t - \max_{i \ne t} y_i + m]_+` and its gradient, the penalty
:math:`\lVert \mathbf{r} \rVert^2`, both parametrizations (clip, eq. 13; tanh, Carlini & Wagner
eq. 4), bias-corrected Adam, the best adversarial kept before each
update, the early stop and the per-image binary search on :math:`c` (x10 until an adversarial
is found, then bisection). The library must reproduce its outputs (best adversarials, their
distances and latents, the constants, the step count) to :data:`TOLERANCE` in float64 and to
float32 precision in float32.
"""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.attacks import L2CarliniWagnerAttack
from tfsmooth.models import Model

BETA1, BETA2, ADAM_EPS = 0.9, 0.999, 1e-8
SHRINK = 0.999999


def reference_cw(
    images,
    labels,
    weights,
    bias,
    *,
    bounds=(0.0, 1.0),
    parametrization="clip",
    binary_search_steps,
    steps,
    learning_rate,
    confidence,
    initial_const,
    abort_early=False,
    check_every=None,
):
    """C&W L2 on ``logits = flatten(x) @ weights + bias``, in float64 NumPy.

    Returns:
        dict with ``adversarials`` ``[N, H, W, C]``, ``distances`` / ``const`` ``[N]``,
        ``success`` ``[N]``, ``latent`` ``[N, H, W, C]``, ``steps`` (int), ``schedule``
        (``[rounds, N]``: the ``c`` tried in each round), ``found`` (``[rounds, N]``),
        ``steps_per_round``, ``clipped`` (whether any iterate left the bounds before clipping)
        and ``closest`` (the smallest distance of any decision of the run to its threshold, to
        check that the data keep clear of ties).
    """
    x0_img = np.asarray(images, np.float64)
    shape = x0_img.shape
    n = shape[0]
    x0 = x0_img.reshape(n, -1)
    w = np.asarray(weights, np.float64)
    b = np.asarray(bias, np.float64)
    t = np.asarray(labels)
    k = w.shape[1]
    lo, hi = map(float, bounds)
    tanh = parametrization == "tanh"
    if tanh:
        w0 = np.arctanh((2.0 * (x0 - lo) / (hi - lo) - 1.0) * SHRINK)
    if check_every is None:  # the early-stop period: every ceil(steps / 10) steps
        check_every = max(math.ceil(steps / 10), 1)
    rows = np.arange(n)
    closest = np.inf
    clipped = False

    def image_of(z):
        """x(z), dx/dz, penalty and d penalty / dz (all elementwise but the penalty)."""
        if tanh:
            th = np.tanh(w0 + z)
            x = lo + (hi - lo) * (th + 1.0) / 2.0
            dx = (hi - lo) / 2.0 * (1.0 - th**2)
            r = x - x0
            return x, dx, np.sum(r**2, axis=1), 2.0 * r * dx
        u = x0 + z
        x = np.minimum(np.maximum(u, lo), hi)
        dx = ((u >= lo) & (u <= hi)).astype(np.float64)
        return x, dx, np.sum(z**2, axis=1), 2.0 * z

    const = np.full(n, float(initial_const))
    lower, upper = np.zeros(n), np.full(n, np.inf)
    best_adv, best_dist, best_latent = x0.copy(), np.full(n, np.inf), np.zeros_like(x0)
    schedule, found_rounds, steps_per_round = [], [], []
    for _ in range(binary_search_steps):
        schedule.append(const.copy())
        z, m, v = np.zeros_like(x0), np.zeros_like(x0), np.zeros_like(x0)
        found = np.zeros(n, bool)
        loss_at_check = np.inf
        step = 0
        while step < steps:
            x, dx, penalty, dpenalty = image_of(z)
            clipped = clipped or bool(np.any(dx == 0.0))
            y = x @ w + b
            others = np.where(np.eye(k, dtype=bool)[t], -np.inf, y)
            o = np.argmax(others, axis=1)
            gap = y[rows, t] - y[rows, o] + confidence
            margin = np.maximum(gap, 0.0)
            dmargin = (gap > 0)[:, None] * (w[:, t] - w[:, o]).T  # d margin / dx
            loss = float(np.sum(penalty + const * margin))
            grad = dpenalty + const[:, None] * dmargin * dx
            # the kept best adversarial: this iterate, before the update
            adversarial = gap < 0  # y_t + m < max_{i != t} y_i
            sorted_others = np.sort(others, axis=1)
            closest = min(
                closest,
                np.min(np.abs(gap)),
                np.min(sorted_others[:, -1] - sorted_others[:, -2]) if k > 2 else np.inf,
            )
            dist = np.sqrt(np.sum((x - x0) ** 2, axis=1))
            better = adversarial & (dist < best_dist)
            best_adv[better], best_dist[better], best_latent[better] = (
                x[better],
                dist[better],
                z[better],
            )
            found |= adversarial
            # Adam, bias-corrected
            step += 1
            m = BETA1 * m + (1 - BETA1) * grad
            v = BETA2 * v + (1 - BETA2) * grad**2
            m_hat, v_hat = m / (1 - BETA1**step), v / (1 - BETA2**step)
            z = z - learning_rate * m_hat / (np.sqrt(v_hat) + ADAM_EPS)
            if abort_early and (step - 1) % check_every == 0:
                stalled = loss > 0.9999 * loss_at_check
                loss_at_check = loss
                if stalled:
                    break
        steps_per_round.append(step)
        found_rounds.append(found)
        upper = np.where(found, np.minimum(upper, const), upper)
        lower = np.where(found, lower, np.maximum(lower, const))
        const = np.where(np.isinf(upper), const * 10.0, (lower + upper) / 2.0)
    schedule = np.array(schedule)
    last_tried = schedule[-1]
    return {
        "adversarials": best_adv.reshape(shape),
        "distances": best_dist,
        "success": np.isfinite(best_dist),
        "latent": best_latent.reshape(shape),
        "const": np.where(np.isinf(upper), last_tried, upper),
        "steps": int(sum(steps_per_round)),
        "schedule": schedule,
        "found": np.array(found_rounds),
        "steps_per_round": steps_per_round,
        "closest": closest,
        "clipped": clipped,
    }


# -- the data -----------------------------------------------------------------------------------
# A 3-class linear classifier on 4 pixels and six images, chosen so that, with the settings below,
# every branch of the search is taken: an image fooled in the first round, images that need one
# or two x10 rounds first, then bisection, images never fooled, and (clip) iterates leaving the
# bounds. The labels are the model's own predictions.
WEIGHTS = np.array(
    [
        [1.0, -0.5, 0.3],
        [-0.8, 1.2, 0.1],
        [0.4, 0.2, -1.0],
        [-0.3, 0.6, 0.9],
    ]
)
BIAS = np.array([0.2, -0.1, 0.0])
PIXELS = np.array(
    [
        [0.7, 0.2, 0.5, 0.4],
        [0.03, 0.1, 0.9, 0.1],  # pushed below 0 by the first step: the clip is active
        [0.9, 0.1, 0.6, 0.2],
        [0.92, 0.08, 0.8, 0.15],
        [1.0, 0.0, 1.0, 0.0],  # a large margin, in a corner: out of reach of the step budget
        [0.3, 0.8, 0.2, 0.6],
    ]
)
LABELS = np.argmax(PIXELS @ WEIGHTS + BIAS, axis=1)
COMMON = {"binary_search_steps": 4, "confidence": 0.1, "initial_const": 0.1}

#: Agreement of the float64 runs with the reference: round-off (the attack converts its Python
#: constants exactly, ``tfsmooth._validation.as_dtype``; ``tf.cast(0.999, tf.float64)`` would go
#: through float32 and move the iterates by ~1e-5).
TOLERANCE = 1e-10  # float64, exact constants: agreement to round-off


def _case(parametrization):
    """(images, weights, bias, bounds, learning rate) of one parametrization.

    ``"tanh"`` runs on bounds ``(-1, 1)`` (the same classifier on the images ``2 x - 1``, moved
    away from the bounds, where the tanh preimage is infinite), which checks the bounds mapping.
    """
    if parametrization == "clip":
        return PIXELS.reshape(-1, 2, 2, 1), WEIGHTS, BIAS, (0.0, 1.0), 0.04
    images = np.clip(2.0 * PIXELS - 1.0, -0.98, 0.98)
    weights, bias = WEIGHTS / 2.0, BIAS + WEIGHTS.sum(axis=0) / 2.0
    assert np.array_equal(np.argmax(images @ weights + bias, axis=1), LABELS)
    return images.reshape(-1, 2, 2, 1), weights, bias, (-1.0, 1.0), 0.1


def _linear(weights, bias, dtype):
    w, b = tf.constant(weights, dtype), tf.constant(bias, dtype)
    return lambda x: tf.matmul(tf.reshape(x, [-1, w.shape[0]]), w) + b


def _run_library(parametrization, steps, abort_early, dtype=tf.float64):
    images, weights, bias, bounds, lr = _case(parametrization)
    model = Model(_linear(weights, bias, dtype), bounds=bounds)
    attack = L2CarliniWagnerAttack(
        steps=steps,
        learning_rate=lr,
        abort_early=abort_early,
        parametrization=parametrization,
        **COMMON,
    )
    return attack.run_with_info(model, tf.constant(images, dtype), tf.constant(LABELS))


def _run_reference(parametrization, steps, abort_early, **kwargs):
    images, weights, bias, bounds, lr = _case(parametrization)
    return reference_cw(
        images,
        LABELS,
        weights,
        bias,
        bounds=bounds,
        parametrization=parametrization,
        steps=steps,
        learning_rate=lr,
        abort_early=abort_early,
        **COMMON,
        **kwargs,
    )


def _compare(info, ref, atol):
    success = ref["success"]
    np.testing.assert_array_equal(info.success.numpy(), success)
    np.testing.assert_allclose(info.const.numpy(), ref["const"], rtol=atol)
    distances = info.distances.numpy()
    assert np.all(np.isinf(distances[~success]))
    np.testing.assert_allclose(distances[success], ref["distances"][success], rtol=0, atol=atol)
    np.testing.assert_allclose(info.adversarials.numpy(), ref["adversarials"], rtol=0, atol=atol)
    np.testing.assert_allclose(info.latent.numpy(), ref["latent"], rtol=0, atol=atol)
    assert int(info.steps) == ref["steps"]


def _rounds_before_success(ref):
    """Per image: failed rounds before the first success (``rounds`` if never fooled)."""
    found = ref["found"]
    return np.where(found.any(axis=0), np.argmax(found, axis=0), found.shape[0])


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("parametrization", ["clip", "tanh"])
def test_exact_iterates_and_binary_search(parametrization):
    steps = 10
    ref = _run_reference(parametrization, steps, abort_early=False)
    # the data take the branches they are meant to, clear of ties
    failed = _rounds_before_success(ref)
    rounds = COMMON["binary_search_steps"]
    assert np.any(failed == 1) and np.any(failed == 2), failed  # x10 once, twice
    assert np.any(failed == rounds), failed  # never fooled
    assert np.any((failed > 0) & (failed < rounds - 1)), failed  # then bisection
    assert ref["closest"] > 1e-3
    assert ref["clipped"] == (parametrization == "clip")
    # the schedule of c, by hand: fooled at c = 10 only after 0.1 and 1 failed, then bisected
    # between 1 and 10; fooled at 1 after 0.1 failed, then bisected between 0.1 and 1
    image = int(np.flatnonzero(failed == 2)[0])
    np.testing.assert_allclose(ref["schedule"][:, image], [0.1, 1.0, 10.0, 5.5])
    image = int(np.flatnonzero(failed == 1)[0])
    np.testing.assert_allclose(ref["schedule"][:3, image], [0.1, 1.0, 0.55])
    never = failed == rounds
    np.testing.assert_allclose(ref["const"][never], 100.0)  # the last one tried
    assert ref["steps"] == rounds * steps

    info = _run_library(parametrization, steps, abort_early=False)
    _compare(info, ref, atol=TOLERANCE)


@pytest.mark.parametrize("parametrization", ["clip", "tanh"])
def test_abort_early_rule(parametrization):
    steps = 15  # checks every ceil(15 / 10) = 2 steps (floor would check every step)
    ref = _run_reference(parametrization, steps, abort_early=True)
    full = _run_reference(parametrization, steps, abort_early=False)
    assert ref["steps"] < full["steps"]  # the rule fires
    # ...and it changes what is found (distances or constants), so the stop step matters
    assert not (
        np.array_equal(ref["const"], full["const"])
        and np.allclose(ref["distances"], full["distances"])
    )
    # the rule with another period stops elsewhere: the test tells the periods apart
    assert _run_reference(parametrization, steps, True, check_every=1)["steps"] != ref["steps"]
    assert ref["closest"] > 1e-3

    info = _run_library(parametrization, steps, abort_early=True)
    _compare(info, ref, atol=TOLERANCE)


def test_float64_runs_match_to_round_off():
    ref = _run_reference("tanh", 10, abort_early=False)
    info = _run_library("tanh", 10, abort_early=False)
    _compare(info, ref, atol=1e-10)


def test_keras_dense_float32_and_call():
    """A Keras ``Dense`` with set weights, in float32: same iterates to float32 precision."""
    images, weights, bias, bounds, lr = _case("clip")
    net = keras.Sequential([keras.Input([2, 2, 1]), keras.layers.Flatten(), keras.layers.Dense(3)])
    net.layers[-1].set_weights([weights.astype("float32"), bias.astype("float32")])
    attack = L2CarliniWagnerAttack(steps=10, learning_rate=lr, abort_early=False, **COMMON)
    x = tf.constant(images, tf.float32)
    info = attack.run_with_info(net, x, LABELS)
    ref = _run_reference("clip", 10, abort_early=False)
    _compare(info, ref, atol=2e-5)  # measured: 5e-6
    assert info.adversarials.dtype == tf.float32
    # the public call returns the same best adversarials, adversarial where found
    raw, clipped, success = attack(net, x, LABELS)
    np.testing.assert_allclose(raw.numpy(), ref["adversarials"], atol=2e-5)
    np.testing.assert_array_equal(success.numpy()[0], ref["success"])
