"""Contract and oracle tests of FGSM, I-FGSM, PGD2 and their smooth versions."""

import numpy as np
import pytest
import tensorflow as tf

from tests.attacks.toy import K, N, blob_images, smoother, tiny_net
from tfsmooth.attacks import (
    L2FastGradientAttack,
    L2ProjectedGradientDescentAttack,
    LinfBasicIterativeAttack,
    LinfFastGradientAttack,
    SmoothL2PGD,
    TargetedMisclassification,
    l2,
    linf,
)
from tfsmooth.models import Model
from tfsmooth.smoothing import Smoother

# attack factory, norm, epsilons (0, small, large), required success rate at the large epsilon,
# plain and smoothed (smoothing weakens the "quick and dirty" attacks, paper §5.3)
ATTACKS = {
    "fgsm": (lambda s: LinfFastGradientAttack(smoother=s), linf, [0.0, 0.02, 0.3], (1.0, 0.5)),
    "l2fgm": (lambda s: L2FastGradientAttack(smoother=s), l2, [0.0, 0.1, 3.0], (1.0, 0.5)),
    "ifgsm": (
        lambda s: LinfBasicIterativeAttack(steps=5, step_size=0.08, smoother=s),
        linf,
        [0.0, 0.02, 0.3],
        (1.0, 0.75),
    ),
    "pgd2": (
        lambda s: L2ProjectedGradientDescentAttack(steps=8, rel_stepsize=0.25, smoother=s),
        l2,
        [0.0, 0.1, 3.0],
        (1.0, 0.75),
    ),
    "pgd2-margin": (
        lambda s: L2ProjectedGradientDescentAttack(
            steps=8, rel_stepsize=0.25, smoother=s, loss="margin"
        ),
        l2,
        [0.0, 0.1, 3.0],
        (1.0, 0.75),
    ),
    "ifgsm-margin": (
        lambda s: LinfBasicIterativeAttack(steps=5, step_size=0.08, smoother=s, loss="margin"),
        linf,
        [0.0, 0.02, 0.3],
        (1.0, 0.75),
    ),
}


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("smoothed", [False, True], ids=["plain", "smooth"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_contract(setup, name, smoothed, mode):
    net, images, labels = setup
    make, dist, epsilons, rate = ATTACKS[name]
    attack = make(smoother() if smoothed else None)
    if mode == "eager":
        result = attack(net, images, labels, epsilons=epsilons)
    else:
        result = tf.function(lambda x, y: attack(net, x, y, epsilons=epsilons))(images, labels)
    raw, clipped, success = result
    assert isinstance(raw, list) and isinstance(clipped, list) and len(clipped) == len(epsilons)
    assert success.shape == (len(epsilons), N) and success.dtype == tf.bool
    for eps, out, ok, r in zip(epsilons, clipped, success, raw):
        assert out.shape == images.shape and out.dtype == images.dtype
        d = dist(images, out).numpy()
        assert np.all(d <= eps * (1 + 1e-6) + 1e-7), (eps, d.max())
        assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
        # success is what the model says about the returned images
        pred = tf.argmax(net(out), axis=1, output_type=tf.int32)
        np.testing.assert_array_equal(ok.numpy(), (pred != labels).numpy())
        np.testing.assert_array_equal(r.numpy(), out.numpy())
    # epsilon 0 returns the input
    np.testing.assert_allclose(clipped[0].numpy(), images.numpy(), atol=1e-7)
    assert not success[0].numpy().any()
    # a large budget succeeds on the toy model; the small one moves the images
    assert success[-1].numpy().mean() >= rate[smoothed], success.numpy()
    assert float(tf.reduce_max(dist(images, clipped[1]))) > 0


def test_single_epsilon_returns_tensors(setup):
    net, images, labels = setup
    raw, clipped, success = LinfFastGradientAttack()(net, images, labels, epsilons=0.1)
    assert isinstance(raw, tf.Tensor) and isinstance(clipped, tf.Tensor)
    assert success.shape == (1, N)
    # a numpy array of epsilons is a list
    raw, _, success = LinfFastGradientAttack()(net, images, labels, epsilons=np.array([0.1, 0.2]))
    assert isinstance(raw, list) and success.shape == (2, N)


def _gradient(net, images, labels):
    with tf.GradientTape() as tape:
        tape.watch(images)
        xent = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, net(images)))
    return tape.gradient(xent, images)


def test_fgsm_is_epsilon_sign_gradient(setup):
    net, images, labels = setup
    eps = 0.05
    out = LinfFastGradientAttack().run(net, images, labels, epsilon=eps)
    want = tf.clip_by_value(images + eps * tf.sign(_gradient(net, images, labels)), 0, 1)
    np.testing.assert_allclose(out.numpy(), want.numpy(), atol=1e-6)


def test_smooth_l2_fgm_follows_eq12(setup):
    """x = c(x_o + eps n(s(g))): the step is the smoothed gradient normalized (eq. 12)."""
    net, images, labels = setup
    eps = 0.05  # small enough that nothing is clipped (images are in [0.2, 0.8])
    out = L2FastGradientAttack(smoother=smoother()).run(net, images, labels, epsilon=eps)
    g = smoother().bind(images)(_gradient(net, images, labels))
    g = g / tf.norm(tf.reshape(g, [N, -1]), axis=1)[:, None, None, None]
    np.testing.assert_allclose((out - images).numpy(), (eps * g).numpy(), atol=1e-5)
    # and it is not the plain step
    plain = L2FastGradientAttack().run(net, images, labels, epsilon=eps)
    assert float(tf.reduce_max(tf.abs(plain - out))) > 1e-3


def test_smooth_pgd_defaults_and_smoother_required():
    attack = SmoothL2PGD(steps=3)
    assert attack.smoother is not None and attack.smoother.alpha == 0.95
    # the default solver scales with the batch (no dense inverse per image)
    assert attack.smoother.solver == "auto" and attack.smoother.resolved_solver == "rb_chebyshev"
    own = Smoother(0.9, solver="exact")
    assert SmoothL2PGD(smoother=own).smoother is own


@pytest.mark.parametrize("name", ["ifgsm", "pgd2"])
def test_targeted_reaches_target(setup, name):
    net, images, labels = setup
    targets = (labels + 1) % K
    attack = {
        "ifgsm": LinfBasicIterativeAttack(steps=15, step_size=0.05),
        "pgd2": L2ProjectedGradientDescentAttack(steps=15, rel_stepsize=0.1),
    }[name]
    eps = 0.5 if name == "ifgsm" else 5.0
    _, clipped, success = attack(net, images, TargetedMisclassification(targets), epsilons=eps)
    pred = tf.argmax(net(clipped), axis=1, output_type=tf.int32)
    np.testing.assert_array_equal(success[0].numpy(), (pred == targets).numpy())
    assert success.numpy().mean() >= 0.75


def test_random_start_determinism(setup):
    net, images, labels = setup
    make = lambda seed: L2ProjectedGradientDescentAttack(  # noqa: E731
        steps=2, rel_stepsize=0.1, random_start=True, seed=seed
    )
    a = make(3).run(net, images, labels, epsilon=1.0)
    b = make(3).run(net, images, labels, epsilon=1.0)
    c = make(4).run(net, images, labels, epsilon=1.0)
    np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert float(tf.reduce_max(tf.abs(a - c))) > 1e-3
    assert np.all(l2(images, a).numpy() <= 1.0 + 1e-6)
    linf_attack = LinfBasicIterativeAttack(steps=2, random_start=True, seed=1)
    x = linf_attack.run(net, images, labels, epsilon=0.1)
    np.testing.assert_array_equal(x.numpy(), linf_attack.run(net, images, labels, epsilon=0.1))
    assert np.all(linf(images, x).numpy() <= 0.1 + 1e-6)


def test_no_retracing_across_epsilons_and_calls(setup):
    net, images, labels = setup
    attack = LinfBasicIterativeAttack(steps=2, smoother=smoother())
    attack(net, images, labels, epsilons=[0.1, 0.2])
    attack(net, images, labels + 0, epsilons=[0.3, 0.05])
    ((_, _, function),) = attack._compiled.values()
    assert function.experimental_get_tracing_count() == 1
    # another batch size is one more trace (static shapes), then no more for that size
    attack(net, images[:5], labels[:5], epsilons=[0.1, 0.2, 0.3])
    traces = function.experimental_get_tracing_count()
    assert traces <= 3
    _, clipped, _ = attack(net, images[:5], labels[:5], epsilons=[0.4, 0.2, 0.3])
    assert function.experimental_get_tracing_count() == traces
    assert np.all(linf(images[:5], clipped[0]).numpy() <= 0.4 + 1e-6)
    # a targeted criterion is another graph; a raw Keras model is wrapped once
    attack(net, images, TargetedMisclassification(labels), epsilons=0.1)
    assert len(attack._compiled) == 2


def test_bounds_other_than_unit_interval(setup):
    """Pixels in [0, 255]: the same attack, scaled (the smoother's guide is renormalized)."""
    net, images, labels = setup
    model = Model(net, bounds=(0.0, 255.0), preprocessing=lambda x: x / 255.0)
    for attack in (L2FastGradientAttack(smoother=smoother()), LinfFastGradientAttack()):
        eps = 0.05 if attack.distance is l2 else 0.02
        ref = attack.run(net, images, labels, epsilon=eps)
        out = attack.run(model, images * 255.0, labels, epsilon=eps * 255.0)
        np.testing.assert_allclose(out.numpy() / 255.0, ref.numpy(), atol=1e-5)


def test_float64_images_keep_dtype(setup):
    net, images, labels = setup
    x = tf.cast(images, tf.float64)
    raw, clipped, success = L2ProjectedGradientDescentAttack(steps=2, smoother=smoother())(
        net, x, labels, epsilons=1.0
    )
    assert clipped.dtype == tf.float64
    assert np.all(l2(x, clipped).numpy() <= 1.0 + 1e-9)


def test_repr_and_config():
    attack = LinfBasicIterativeAttack(steps=7, step_size=0.08)
    text = repr(attack)
    assert text.startswith("LinfBasicIterativeAttack(steps=7, step_size=0.08")
    assert "smoother=None" in text
    assert "Smoother(alpha=0.95" in repr(SmoothL2PGD())
    assert repr(LinfFastGradientAttack(seed=2)) == (
        "LinfFastGradientAttack(random_start=False, seed=2, loss='crossentropy', smoother=None, "
        "jit_compile=False)"
    )
    assert L2ProjectedGradientDescentAttack(loss="margin").get_config()["loss"] == "margin"
    assert L2ProjectedGradientDescentAttack(abs_stepsize=0.5).get_config()["abs_stepsize"] == 0.5


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"steps": 0}, ValueError),
        ({"steps": 2.5}, TypeError),
        ({"rel_stepsize": -1.0}, ValueError),
        ({"abs_stepsize": float("nan")}, ValueError),
        ({"random_start": 1}, TypeError),
        ({"seed": -1}, ValueError),
        ({"smoother": 0.95}, TypeError),
        ({"jit_compile": "yes"}, TypeError),
        ({"loss": "hinge"}, ValueError),
        ({"loss": None}, ValueError),
    ],
)
def test_bad_hyperparameters(kwargs, error):
    with pytest.raises(error):
        L2ProjectedGradientDescentAttack(**kwargs)


def test_bad_step_size():
    with pytest.raises(ValueError, match="step_size"):
        LinfBasicIterativeAttack(step_size=0.0)


@pytest.mark.parametrize(
    "case, error, match",
    [
        ("outside", ValueError, r"lie in \[0.0, 1.0\]"),
        ("rank", ValueError, "rank 4"),
        ("int_images", TypeError, "floating point"),
        ("nan_images", ValueError, "finite"),
        ("labels_shape", ValueError, "shape"),
        ("labels_count", ValueError, "one per image"),
        ("labels_range", ValueError, r"\[0, 10\)"),
        ("labels_float", TypeError, "integer"),
        ("eps_negative", ValueError, "epsilon"),
        ("eps_nan", ValueError, "epsilon"),
        ("eps_none", ValueError, "epsilons"),
        ("eps_empty", ValueError, "empty"),
        ("eps_string", TypeError, "number"),
        ("bound_shape", ValueError, "bound to images of shape"),
        ("model", TypeError, "callable"),
    ],
)
def test_bad_input_raises(setup, case, error, match):
    net, images, labels = setup
    attack = LinfFastGradientAttack()
    args = {"model": net, "images": images, "labels": labels, "epsilons": 0.1}
    if case == "outside":
        args["images"] = images + 0.5
    elif case == "rank":
        args["images"] = images[0]
    elif case == "int_images":
        args["images"] = tf.cast(images * 255, tf.uint8)
    elif case == "nan_images":
        args["images"] = tf.tensor_scatter_nd_update(images, [[0, 0, 0, 0]], [np.nan])
    elif case == "labels_shape":
        args["labels"] = labels[:, None]
    elif case == "labels_count":
        args["labels"] = labels[:3]
    elif case == "labels_range":
        args["labels"] = labels + 10
    elif case == "labels_float":
        args["labels"] = tf.cast(labels, tf.float32)
    elif case == "eps_negative":
        args["epsilons"] = [0.1, -0.1]
    elif case == "eps_nan":
        args["epsilons"] = float("nan")
    elif case == "eps_none":
        args["epsilons"] = None
    elif case == "eps_empty":
        args["epsilons"] = []
    elif case == "eps_string":
        args["epsilons"] = "0.1"
    elif case == "bound_shape":
        attack = LinfFastGradientAttack(smoother=smoother().bind(images[:3]))
    elif case == "model":
        args["model"] = "resnet"
    with pytest.raises(error, match=match):
        attack(args["model"], args["images"], args["labels"], epsilons=args["epsilons"])


def test_prebound_smoother_of_the_right_shape(setup):
    net, images, labels = setup
    bound = smoother().bind(images)
    a = L2FastGradientAttack(smoother=bound).run(net, images, labels, epsilon=0.5)
    b = L2FastGradientAttack(smoother=smoother()).run(net, images, labels, epsilon=0.5)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-6)


def test_colour_images_per_channel_smoother():
    net = tiny_net((8, 8, 3), classes=5, seed=1)
    images = tf.constant(blob_images(4, 8, 8, 3, seed=2))
    labels = tf.argmax(net(images), axis=1)
    attack = L2ProjectedGradientDescentAttack(
        steps=5, rel_stepsize=0.3, smoother=Smoother(0.9, solver="cg", per_channel=True)
    )
    _, clipped, success = attack(net, images, labels, epsilons=[0.5, 4.0])
    assert np.all(l2(images, clipped[0]).numpy() <= 0.5 + 1e-6)
    assert success.shape == (2, 4)
    assert success[1].numpy().mean() >= 0.5


def test_stop_on_success_returns_the_first_adversarial_iterate(setup):
    net, images, labels = setup
    steps, eps = 4, 0.3

    def run(k, stop):
        attack = LinfBasicIterativeAttack(steps=k, step_size=0.03, stop_on_success=stop)
        return attack.run(net, images, labels, epsilon=eps).numpy()

    iterates = [run(k, False) for k in range(1, steps + 1)]
    stopped = run(steps, True)
    adversarial = [(np.argmax(net(x).numpy(), axis=1) != labels.numpy()) for x in iterates]
    for i in range(N):
        first = next((k for k in range(steps) if adversarial[k][i]), steps - 1)
        np.testing.assert_allclose(stopped[i], iterates[first][i], atol=1e-6)
    assert any(a.any() for a in adversarial[:-1])  # some image stopped early


def _margin_gradient(net, images, labels):
    """Gradient of the eq. 3 margin loss (m = 0) that the attack descends."""
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = net(images)
        onehot = tf.one_hot(labels, K)
        gap = tf.reduce_sum(onehot * logits, 1) - tf.reduce_max(logits - 1e9 * onehot, 1)
        loss = tf.reduce_sum(tf.nn.relu(gap))
    return tape.gradient(loss, images)


def test_margin_loss_steps_down_the_eq3_gradient(setup):
    net, images, labels = setup
    eps = 0.05  # nothing is clipped
    out = L2FastGradientAttack(loss="margin").run(net, images, labels, epsilon=eps)
    g = -_margin_gradient(net, images, labels)
    g = g / tf.norm(tf.reshape(g, [N, -1]), axis=1)[:, None, None, None]
    np.testing.assert_allclose((out - images).numpy(), (eps * g).numpy(), atol=1e-5)


def _saturated_net(scale):
    """A linear network whose logit gaps are ``scale`` times a gap of order one."""
    net = tiny_net()
    return Model(lambda x: scale * net(x), bounds=(0.0, 1.0))


def _gaps(net, images, labels):
    logits = np.sort(net(images).numpy(), axis=1)
    return logits[:, -1] - logits[:, -2]


def test_l2_step_survives_an_underflowing_cross_entropy_gradient(setup):
    """Logit gaps of 30 and more leave cross-entropy gradients of 1e-13 and below: a tiny but
    non-zero gradient still gives a full-length step."""
    _, images, _ = setup
    base = tiny_net()
    gaps = _gaps(base, images, tf.zeros([N], tf.int32))
    net = _saturated_net(float(30.0 / np.min(gaps)))
    labels = tf.argmax(net(images), axis=1, output_type=tf.int32)
    g = _gradient(net, images, labels)
    norms = tf.norm(tf.reshape(g, [N, -1]), axis=1).numpy()
    tiny = norms > 0
    assert tiny.sum() >= 2 and np.all(norms < 1e-10), norms
    eps = 0.05
    out = L2FastGradientAttack().run(net, images, labels, epsilon=eps)
    moved = l2(images, out).numpy()
    np.testing.assert_allclose(moved[tiny], eps, rtol=1e-4)


def test_margin_loss_attacks_a_network_whose_cross_entropy_gradient_is_zero(setup):
    _, images, _ = setup
    base = tiny_net()
    gaps = _gaps(base, images, tf.zeros([N], tf.int32))
    net = _saturated_net(float(200.0 / np.min(gaps)))
    labels = tf.argmax(net(images), axis=1, output_type=tf.int32)
    assert not np.any(_gradient(net, images, labels).numpy())  # exactly zero
    kwargs = {"steps": 8, "rel_stepsize": 0.25}
    _, _, stuck = L2ProjectedGradientDescentAttack(**kwargs)(net, images, labels, epsilons=3.0)
    _, out, fooled = L2ProjectedGradientDescentAttack(loss="margin", **kwargs)(
        net, images, labels, epsilons=3.0
    )
    assert not stuck.numpy().any()
    assert fooled.numpy().all()
    assert np.all(l2(images, out).numpy() <= 3.0 + 1e-5)


def test_success_check_uses_one_compiled_forward_per_model(setup):
    net, images, labels = setup
    attack = LinfFastGradientAttack()
    _, clipped, success = attack(net, images, labels, epsilons=[0.1, 0.3])
    attack(net, images, labels, epsilons=0.2)
    assert len(attack._forwards) == 1
    other = tiny_net(seed=5)
    attack(other, images, labels, epsilons=0.2)
    assert len(attack._forwards) == 2
    for out, ok in zip(clipped, success):
        pred = tf.argmax(net(out), axis=1, output_type=tf.int32)
        np.testing.assert_array_equal(ok.numpy(), (pred != labels).numpy())
