"""Contract and math tests of C&W and sC&W (paper eq. 3, 13, 17-19)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.attacks.toy import C, H, K, N, W, blob_images, smoother
from tfsmooth.attacks import (
    CarliniWagnerInfo,
    L2CarliniWagnerAttack,
    SmoothCarliniWagnerL2,
    TargetedMisclassification,
    l2,
)
from tfsmooth.graphs import ImageGraph
from tfsmooth.smoothing import Smoother

FAST = {"binary_search_steps": 3, "steps": 40, "abort_early": False}

ATTACKS = {
    "cw-tanh": lambda: L2CarliniWagnerAttack(
        initial_const=1.0, learning_rate=0.05, parametrization="tanh", **FAST
    ),
    "cw-clip": lambda: L2CarliniWagnerAttack(initial_const=1.0, learning_rate=0.05, **FAST),
    # the paper's MNIST settings
    "scw": lambda: SmoothCarliniWagnerL2(
        confidence=1.0, learning_rate=0.1, initial_const=15.0, smoother=smoother(), **FAST
    ),
}


@pytest.fixture(scope="module")
def infos(setup):
    """One detailed run per attack, shared by several tests."""
    net, images, labels = setup
    return {name: make().run_with_info(net, images, labels) for name, make in ATTACKS.items()}


@pytest.mark.parametrize("mode", ["eager", "function"])
@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_contract(setup, name, mode):
    net, images, labels = setup
    attack = ATTACKS[name]()
    epsilons = [None, 0.0, 0.3, 10.0]
    if mode == "eager":
        raw, clipped, success = attack(net, images, labels, epsilons=epsilons)
    else:
        fn = tf.function(lambda x, y: attack(net, x, y, epsilons=epsilons))
        raw, clipped, success = fn(images, labels)
    assert success.shape == (4, N) and len(raw) == 4 and len(clipped) == 4
    adv = raw[0]
    d = l2(images, adv).numpy()
    found = success[0].numpy()
    # the toy model is fooled everywhere
    assert found.all(), found
    # outputs in bounds, clipped within epsilon, success = model's verdict on clipped
    for eps, out, ok in zip(epsilons, clipped, success):
        assert float(tf.reduce_min(out)) >= 0.0 and float(tf.reduce_max(out)) <= 1.0
        if eps is not None:
            assert np.all(l2(images, out).numpy() <= eps * (1 + 1e-6) + 1e-7)
        pred = tf.argmax(net(out), axis=1, output_type=tf.int32)
        np.testing.assert_array_equal(ok.numpy(), (pred != labels).numpy())
    # eps = 0 returns the input (never adversarial); the largest budget keeps every success
    np.testing.assert_allclose(clipped[1].numpy(), images.numpy(), atol=1e-7)
    assert not success[1].numpy().any()
    np.testing.assert_array_equal(success[3].numpy(), found | (d > 10.0))
    # eps = 0.3 succeeds exactly where the minimal adversarial is that close (or its scaled
    # version happens to be adversarial): never fewer than the close ones
    assert np.all(success[2].numpy()[d <= 0.3])


def test_single_or_no_epsilon_structure(setup):
    net, images, labels = setup
    attack = L2CarliniWagnerAttack(binary_search_steps=1, steps=5)
    raw, clipped, success = attack(net, images, labels)
    assert isinstance(raw, tf.Tensor) and raw is clipped and success.shape == (1, N)
    raw, clipped, success = attack(net, images, labels, epsilons=1.0)
    assert isinstance(clipped, tf.Tensor) and success.shape == (1, N)


def test_info_fields(setup, infos):
    net, images, labels = setup
    for name, info in infos.items():
        assert isinstance(info, CarliniWagnerInfo)
        np.testing.assert_allclose(
            info.distances.numpy(), l2(images, info.adversarials).numpy(), rtol=1e-5
        )
        assert info.success.numpy().all(), name
        # with confidence m, the kept adversarials beat the true logit by m
        logits = net(info.adversarials).numpy()
        m = 1.0 if name == "scw" else 0.0
        true = logits[np.arange(N), labels.numpy()]
        logits[np.arange(N), labels.numpy()] = -np.inf
        assert np.all(logits.max(axis=1) - true >= m - 1e-4), name
        assert int(info.steps) == FAST["binary_search_steps"] * FAST["steps"]
        assert info.const.shape == (N,) and np.all(info.const.numpy() > 0)
        assert info.cg_iterations.dtype == tf.int32


def test_scw_perturbation_is_in_the_range_of_the_smoother(setup, infos):
    """x_a = c(x_o + s_hat(z)) for the returned latent z (eq. 17-18): r = s_hat(z) before clipping."""
    _, images, _ = setup
    x0 = images.numpy()
    info = infos["scw"]
    smoothed = smoother().bind(images)(info.latent).numpy()
    np.testing.assert_allclose(info.adversarials.numpy(), np.clip(x0 + smoothed, 0, 1), atol=2e-5)
    inside = (x0 + smoothed > 0) & (x0 + smoothed < 1)
    assert inside.mean() > 0.5  # most pixels are not clipped: r = s_hat(z) there
    # the latent is not itself smooth: smoothing changed it
    assert np.abs(smoothed - info.latent.numpy()).max() > 1e-2
    # the plain clip-C&W perturbation is the latent itself
    plain = infos["cw-clip"]
    np.testing.assert_allclose(
        plain.adversarials.numpy(), np.clip(x0 + plain.latent.numpy(), 0, 1), atol=1e-6
    )


def _dirichlet_energy_per_norm(images, r):
    """E(r) / |r|^2 with E = 1/2 sum_ij w_ij |r_i/sqrt(d_i) - r_j/sqrt(d_j)|^2 (paper eq. 14)."""
    graph = ImageGraph(images)
    out = []
    for i in range(images.shape[0]):
        w = graph.to_scipy(i)
        degree = np.asarray(w.sum(axis=1)).ravel()
        rh = r[i].reshape(-1, r.shape[-1]) / np.sqrt(degree)[:, None]
        coo = w.tocoo()
        energy = 0.5 * np.sum(coo.data[:, None] * (rh[coo.row] - rh[coo.col]) ** 2)
        out.append(energy / np.sum(r[i] ** 2))
    return np.array(out)


def test_scw_is_much_smoother_than_cw(setup, infos):
    _, images, _ = setup
    energies = {}
    for name in ("cw-clip", "scw"):
        r = (infos[name].adversarials - images).numpy()
        energies[name] = _dirichlet_energy_per_norm(images, r)
    assert np.median(energies["scw"]) < 0.2 * np.median(energies["cw-clip"]), energies


def test_larger_budget_never_increases_distortion(setup):
    net, images, labels = setup
    base = {"steps": 25, "learning_rate": 0.05, "initial_const": 0.1, "parametrization": "clip"}
    d = {
        b: L2CarliniWagnerAttack(binary_search_steps=b, **base)
        .run_with_info(net, images, labels)
        .distances.numpy()
        for b in (1, 3)
    }
    assert np.all(d[3] <= d[1] * (1 + 1e-6)), d
    assert np.any(d[3] < d[1] * 0.999), d  # the search did something
    one = {"binary_search_steps": 1, "learning_rate": 0.05, "abort_early": False}
    s = {
        k: L2CarliniWagnerAttack(steps=k, initial_const=1.0, **one)
        .run_with_info(net, images, labels)
        .distances.numpy()
        for k in (10, 30)
    }
    assert np.all(s[30] <= s[10] * (1 + 1e-6)), s


def test_determinism(setup):
    net, images, labels = setup
    a = SmoothCarliniWagnerL2(binary_search_steps=2, steps=10).run(net, images, labels)
    b = SmoothCarliniWagnerL2(binary_search_steps=2, steps=10).run(net, images, labels)
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_targeted(setup):
    net, images, labels = setup
    targets = (labels + 3) % K
    attack = L2CarliniWagnerAttack(
        initial_const=1.0, learning_rate=0.05, parametrization="clip", **FAST
    )
    _, clipped, success = attack(net, images, TargetedMisclassification(targets))
    pred = tf.argmax(net(clipped), axis=1, output_type=tf.int32)
    np.testing.assert_array_equal(success[0].numpy(), (pred == targets).numpy())
    assert success.numpy().mean() >= 0.75


def test_failure_returns_the_clean_image(setup):
    net, images, labels = setup
    # a single tiny step with a tiny constant cannot fool the model
    attack = L2CarliniWagnerAttack(binary_search_steps=1, steps=1, initial_const=1e-6)
    info = attack.run_with_info(net, images, labels)
    assert not info.success.numpy().any()
    np.testing.assert_array_equal(info.adversarials.numpy(), images.numpy())
    assert np.all(np.isinf(info.distances.numpy()))


def test_defaults_repr_and_presets():
    """C&W and sC&W share their defaults: with defaults they differ by the smoother only."""
    smooth, plain = SmoothCarliniWagnerL2(), L2CarliniWagnerAttack()
    shared = {k: val for k, val in plain.get_config().items() if k != "smoother"}
    assert {k: val for k, val in smooth.get_config().items() if k != "smoother"} == shared
    assert plain.smoother is None and smooth.smoother.alpha == 0.95
    assert (plain.confidence, plain.learning_rate, plain.initial_const) == (0.0, 0.01, 1.0)
    assert (plain.binary_search_steps, plain.steps, plain.parametrization) == (5, 200, "clip")
    imagenet = SmoothCarliniWagnerL2.imagenet(steps=10)
    assert (imagenet.confidence, imagenet.initial_const, imagenet.steps) == (0.0, 100.0, 10)
    assert imagenet.smoother.alpha == 0.997 and imagenet.smoother.max_iter == 50
    text = repr(L2CarliniWagnerAttack(steps=3))
    assert text.startswith("L2CarliniWagnerAttack(binary_search_steps=5, steps=3, learning_rate")
    assert "parametrization='clip'" in text


def test_defaults_fool_a_flat_network():
    """A small network with flat logits: the defaults' search of c still fools every image."""
    net = keras.Sequential(
        [keras.Input([H, W, C]), keras.layers.Flatten(), keras.layers.Dense(K, use_bias=False)]
    )
    net.layers[-1].kernel.assign(net.layers[-1].kernel * 1e-3)
    images = tf.constant(blob_images())
    labels = tf.argmax(net(images), axis=1)
    for attack in (L2CarliniWagnerAttack(), SmoothCarliniWagnerL2(smoother=Smoother(0.95))):
        _, _, success = attack(net, images, labels)
        assert success.numpy().all(), attack


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"binary_search_steps": 0}, ValueError),
        ({"steps": 1.5}, TypeError),
        ({"learning_rate": 0.0}, ValueError),
        ({"confidence": -1.0}, ValueError),
        ({"initial_const": float("inf")}, ValueError),
        ({"abort_early": None}, TypeError),
        ({"parametrization": "sigmoid"}, ValueError),
        ({"smoother": "yes"}, TypeError),
        ({"warm_start": 0}, TypeError),
    ],
)
def test_bad_hyperparameters(kwargs, error):
    with pytest.raises(error):
        L2CarliniWagnerAttack(**kwargs)


def test_bad_input(setup):
    net, images, labels = setup
    attack = L2CarliniWagnerAttack(steps=1, binary_search_steps=1)
    with pytest.raises(ValueError, match="lie in"):
        attack(net, images - 0.5, labels)
    with pytest.raises(ValueError, match="epsilon"):
        attack(net, images, labels, epsilons=[None, -1.0])
    with pytest.raises(TypeError, match="unexpected"):
        attack.run(net, images, labels, epsilon=1.0)
    with pytest.raises(ValueError, match="bound to images"):
        SmoothCarliniWagnerL2(smoother=smoother().bind(images[:, :8, :8])).run(net, images, labels)


def test_warm_start_saves_cg_iterations_and_jit_agrees(setup):
    net, images, labels = setup
    kwargs = {"binary_search_steps": 1, "steps": 30, "abort_early": False}
    cg = Smoother(0.95, solver="cg", tol=1e-5)
    warm = SmoothCarliniWagnerL2(smoother=cg, **kwargs).run_with_info(net, images, labels)
    cold = SmoothCarliniWagnerL2(smoother=cg, warm_start=False, **kwargs)
    cold = cold.run_with_info(net, images, labels)
    its = warm.cg_iterations.numpy()
    assert np.all(its > 0) and np.all(its <= 30 * 50)  # at most max_iter per step
    assert its.sum() < cold.cg_iterations.numpy().sum()
    np.testing.assert_allclose(warm.distances.numpy(), cold.distances.numpy(), rtol=1e-3)
    jit = SmoothCarliniWagnerL2(smoother=cg, jit_compile=True, **kwargs)
    jit = jit.run_with_info(net, images, labels)
    np.testing.assert_allclose(jit.adversarials.numpy(), warm.adversarials.numpy(), atol=1e-5)


@pytest.mark.parametrize("smooth", [False, True])
def test_batch_size_may_change_between_calls(setup, smooth):
    """One attack instance, batches of 1, 3 and 2 images (a regression: shapes of the loops)."""
    model, images, labels = setup
    attack = L2CarliniWagnerAttack(
        steps=5, binary_search_steps=2, smoother=smoother() if smooth else None
    )
    for n in (1, 3, 2):
        result = attack(model, images[:n], labels[:n])
        assert result.success.shape == (1, n) and result.raw.shape[0] == n
