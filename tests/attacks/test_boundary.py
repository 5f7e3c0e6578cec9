"""Attacks at the boundary: 8-bit deliverable adversarials, and models or data that would give
wrong results silently (probabilities, NaN, integer outputs, half precision, empty batches)."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.attacks.toy import blob_images, smoother, tiny_net
from tfsmooth.attacks import (
    L2CarliniWagnerAttack,
    L2ProjectedGradientDescentAttack,
    LinfBasicIterativeAttack,
    LinfFastGradientAttack,
    SmoothCarliniWagnerL2,
    SmoothL2PGD,
)
from tfsmooth.attacks.quantization import (
    check_quantize_bits,
    quantize_images,
    quantize_perturbation,
)
from tfsmooth.models import Model


@pytest.fixture(scope="module")
def grid_setup():
    """The toy net and images on the 8-bit grid, labelled by the net."""
    net = tiny_net()
    images = quantize_images(tf.constant(blob_images()), 8)
    labels = tf.argmax(net(images), axis=1, output_type=tf.int32)
    return net, images, labels


def _on_grid(x, bits=8):
    units = np.asarray(x, np.float64) * (2**bits - 1)
    return np.max(np.abs(units - np.round(units)))


FIXED = {
    "fgsm": (lambda **kw: LinfFastGradientAttack(**kw), 0.05),
    "ifgsm": (lambda **kw: LinfBasicIterativeAttack(steps=5, step_size=0.02, **kw), 0.05),
    "pgd2": (
        lambda **kw: L2ProjectedGradientDescentAttack(steps=5, stop_on_success=True, **kw),
        1.0,
    ),
    "spgd2": (lambda **kw: SmoothL2PGD(steps=5, smoother=smoother(), **kw), 1.0),
}


@pytest.mark.parametrize("name", sorted(FIXED))
def test_fixed_epsilon_quantized_outputs_are_on_the_grid_and_in_the_ball(grid_setup, name):
    net, images, labels = grid_setup
    make, epsilon = FIXED[name]
    attack = make(quantize_bits=8)
    _, clipped, success = attack(net, images, labels, epsilons=epsilon)
    assert _on_grid(clipped) < 1e-3
    delta = (clipped - images).numpy().reshape(len(images), -1)
    norms = np.abs(delta).max(1) if name in ("fgsm", "ifgsm") else np.linalg.norm(delta, axis=1)
    assert np.all(norms <= epsilon + 1e-5)
    # success is what the delivered (rounded) image does
    again = np.argmax(net(clipped), axis=1) != labels.numpy()
    np.testing.assert_array_equal(success.numpy()[0], again)
    assert "quantize_bits=8" in repr(attack)


@pytest.mark.parametrize("smooth", [False, True], ids=["cw", "scw"])
def test_cw_quantized_adversarials_survive_an_8bit_png_round_trip(grid_setup, smooth, tmp_path):
    from PIL import Image

    net, images, labels = grid_setup
    kwargs = {"binary_search_steps": 3, "steps": 60, "learning_rate": 0.01, "initial_const": 1.0}
    if smooth:
        attack = SmoothCarliniWagnerL2(smoother=smoother(), quantize_bits=8, **kwargs)
    else:
        attack = L2CarliniWagnerAttack(quantize_bits=8, **kwargs)
    raw, _, success = attack(net, images, labels)
    assert success.numpy().mean() > 0.5
    assert _on_grid(raw) < 1e-3
    for i in np.flatnonzero(success.numpy()[0]):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.round(raw[i, ..., 0].numpy() * 255).astype(np.uint8)).save(path)
        back = np.asarray(Image.open(path), np.float32)[None, ..., None] / 255.0
        assert int(np.argmax(net(back), axis=1)[0]) != int(labels[i])


def test_unquantized_cw_adversarials_are_off_grid_and_quantized_ones_larger(grid_setup):
    net, images, labels = grid_setup
    kwargs = {"binary_search_steps": 3, "steps": 60, "learning_rate": 0.01}
    plain = L2CarliniWagnerAttack(**kwargs).run_with_info(net, images, labels)
    rounded = L2CarliniWagnerAttack(quantize_bits=8, **kwargs).run_with_info(net, images, labels)
    both = plain.success.numpy() & rounded.success.numpy()
    assert both.any()
    assert _on_grid(plain.adversarials) > 0.01
    # a deliverable perturbation is never below half a level per changed pixel, on average
    assert np.mean(rounded.distances.numpy()[both]) >= 0.5 * np.mean(plain.distances.numpy()[both])


def test_quantize_needs_clean_images_on_the_grid():
    net = tiny_net()
    images = tf.constant(blob_images())  # noisy: off the 8-bit grid
    labels = tf.argmax(net(images), axis=1)
    with pytest.raises(ValueError, match="8-bit grid.*quantize_images"):
        LinfFastGradientAttack(quantize_bits=8)(net, images, labels, epsilons=0.1)


def test_quantize_helpers():
    assert check_quantize_bits(None) is None
    for bad in (0, 17):
        with pytest.raises(ValueError, match="between 1 and 16"):
            check_quantize_bits(bad)
    for bad in (8.0, True, "8"):
        with pytest.raises(TypeError, match="quantize_bits"):
            check_quantize_bits(bad)
    x0 = tf.fill([1, 2, 2, 1], 10 / 255)
    x = x0 + tf.constant([0.4, 0.6, -0.6, -1.4], shape=[1, 2, 2, 1]) / 255
    nearest = quantize_perturbation(x0, x, 8, (0.0, 1.0)) * 255
    toward = quantize_perturbation(x0, x, 8, (0.0, 1.0), toward_zero=True) * 255
    np.testing.assert_allclose(nearest.numpy().ravel(), [10, 11, 9, 9], atol=1e-4)
    np.testing.assert_allclose(toward.numpy().ravel(), [10, 10, 10, 9], atol=1e-4)
    with pytest.raises(ValueError, match="got None"):
        quantize_images(x0, None)


# -- models and data that would give wrong results silently -----------------------------------
def _softmax_net():
    net = tiny_net()
    return keras.Sequential([net, keras.layers.Softmax()])


@pytest.mark.parametrize(
    "attack",
    [LinfFastGradientAttack(), L2CarliniWagnerAttack(binary_search_steps=1, steps=2)],
    ids=["fgsm", "cw"],
)
def test_probabilities_are_refused_with_the_way_out(attack):
    net = _softmax_net()
    images = tf.constant(blob_images())
    labels = tf.argmax(net(images), axis=1)
    with pytest.raises(ValueError, match="probabilities.*output='probabilities'"):
        attack(
            net,
            images,
            labels,
            epsilons=0.1 if isinstance(attack, LinfFastGradientAttack) else None,
        )


def test_probability_models_wrapped_as_such_are_attacked_like_their_logits():
    logits_net = tiny_net()
    prob_net = keras.Sequential([logits_net, keras.layers.Softmax()])
    images = tf.constant(blob_images())
    labels = tf.argmax(logits_net(images), axis=1)
    attack = L2CarliniWagnerAttack(binary_search_steps=3, steps=60)
    a = attack.run_with_info(logits_net, images, labels)
    b = attack.run_with_info(Model(prob_net, output="probabilities"), images, labels)
    np.testing.assert_array_equal(a.success.numpy(), b.success.numpy())
    np.testing.assert_allclose(a.distances.numpy(), b.distances.numpy(), rtol=1e-3)


def test_nan_outputs_are_refused():
    def nan_net(x):
        return tf.fill([tf.shape(x)[0], 3], float("nan"))

    images = tf.constant(blob_images())
    with pytest.raises(ValueError, match="non-finite"):
        LinfFastGradientAttack()(nan_net, images, tf.zeros([len(images)], tf.int32), epsilons=0.1)


def test_integer_outputs_are_refused_in_one_line():
    def int_net(x):
        return tf.cast(tf.reduce_sum(x, axis=[1, 2]) * 10, tf.int32)

    images = tf.constant(blob_images())
    with pytest.raises(TypeError, match="int32 outputs; attacks need float logits"):
        LinfFastGradientAttack()(int_net, images, tf.zeros([len(images)], tf.int32), epsilons=0.1)


def test_empty_batch_is_a_clear_error():
    net = tiny_net()
    with pytest.raises(ValueError, match="empty batch"):
        LinfFastGradientAttack()(
            net, tf.zeros([0, 12, 12, 1]), tf.zeros([0], tf.int32), epsilons=0.1
        )


def test_labels_outside_the_class_range_are_refused():
    net = tiny_net(classes=10)
    images = tf.constant(blob_images())
    with pytest.raises(ValueError, match="10"):
        LinfFastGradientAttack()(net, images, tf.fill([len(images)], 10), epsilons=0.1)


@pytest.mark.parametrize(
    "make", [lambda: LinfFastGradientAttack(), lambda: SmoothL2PGD(steps=3, smoother=smoother())]
)
def test_half_precision_images_are_attacked_in_float32(make):
    net = tiny_net()
    images = tf.constant(blob_images())
    labels = tf.argmax(net(images), axis=1)
    epsilon = 0.05
    _, full, success_full = make()(net, images, labels, epsilons=epsilon)
    _, half, success_half = make()(net, tf.cast(images, tf.float16), labels, epsilons=epsilon)
    assert half.dtype == tf.float16
    np.testing.assert_allclose(tf.cast(half, tf.float32), full, atol=2e-3)
    # success is that of the returned float16 images
    again = np.argmax(net(tf.cast(half, tf.float32)), axis=1) != labels.numpy()
    np.testing.assert_array_equal(success_half.numpy()[0], again)
    assert success_half.numpy().mean() >= success_full.numpy().mean() - 0.15
