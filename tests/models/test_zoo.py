"""Tests of tfsmooth.models.zoo: the C4 architecture and its shipped weights."""

from __future__ import annotations

import importlib.resources

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.data.mnist import load_mnist
from tfsmooth.models import Model
from tfsmooth.models.training import C4_RECIPES, evaluate_accuracy
from tfsmooth.models.zoo import (
    C4_WEIGHTS,
    load_weights_npz,
    mnist_c4,
    mnist_c4_model,
    mnist_c4_recipe,
    save_weights_npz,
)

# Measured on the shipped 1,000-image test split: 0.974 (plain) and 0.979 (adversarial);
# thresholds leave a margin of ~2 points (float16 storage, other TF builds).
MIN_ACCURACY = {"mnist": 0.95, "mnist-adv": 0.95}


@pytest.fixture(scope="module")
def test_split():
    return load_mnist("test", source="package")


def _conv_params(k, c_in, c_out):
    return k * k * c_in * c_out + c_out


def test_architecture():
    net = mnist_c4(weights=None)
    assert isinstance(net, keras.Model)
    assert tuple(net.input_shape) == (None, 28, 28, 1)
    shapes = {layer.name: tuple(layer.output.shape) for layer in net.layers[1:]}
    assert shapes == {
        "conv1": (None, 14, 14, 64),  # k8 s2 same
        "conv2": (None, 5, 5, 128),  # k6 s2 valid: (14 - 6) // 2 + 1
        "conv3": (None, 1, 1, 128),  # k5 s1 valid
        "flatten": (None, 128),
        "logits": (None, 10),
    }
    kernels = {
        layer.name: tuple(layer.kernel.shape) for layer in net.layers if hasattr(layer, "kernel")
    }
    assert kernels == {
        "conv1": (8, 8, 1, 64),
        "conv2": (6, 6, 64, 128),
        "conv3": (5, 5, 128, 128),
        "logits": (128, 10),
    }
    expected = _conv_params(8, 1, 64) + _conv_params(6, 64, 128) + _conv_params(5, 128, 128)
    expected += 128 * 10 + 10
    assert net.count_params() == expected == 710218
    # ReLU after each convolution, none on the logits.
    for name in ("conv1", "conv2", "conv3"):
        assert net.get_layer(name).activation is keras.activations.relu
    assert net.get_layer("logits").activation is keras.activations.linear


def test_logits_not_softmax():
    net = mnist_c4(weights="mnist")
    logits = net(tf.random.uniform([4, 28, 28, 1], seed=1)).numpy()
    assert logits.dtype == np.float32
    assert not np.allclose(logits.sum(axis=1), 1.0)
    assert logits.min() < 0.0


@pytest.mark.parametrize("weights", sorted(C4_WEIGHTS))
def test_shipped_weights_accuracy(weights, test_split):
    net = mnist_c4(weights=weights)
    assert net.name == "c4_" + weights.replace("-", "_")
    accuracy = evaluate_accuracy(net, test_split.images, test_split.labels)
    assert accuracy >= MIN_ACCURACY[weights]
    # The recipe shipped beside the weights records the accuracy of these very weights.
    recipe = mnist_c4_recipe(weights)
    assert recipe["validation_accuracy"] == pytest.approx(accuracy, abs=1e-9)
    assert recipe["adversarial"] is (weights == "mnist-adv")
    assert recipe["architecture"] == "C4" and recipe["num_train"] == 4000
    assert recipe["data_source"] == "package-sample:train"
    # ... and was made by the recipe the package states (C4_RECIPES).
    for key, value in C4_RECIPES[weights].items():
        assert recipe[key] == value, key


def test_shipped_files_small():
    assets = importlib.resources.files("tfsmooth").joinpath("assets")
    for weights_file, recipe_file in C4_WEIGHTS.values():
        assert assets.joinpath(recipe_file).is_file()
        size = len(assets.joinpath(weights_file).read_bytes())
        assert 0.3e6 < size < 3e6


def test_plain_and_adversarial_differ(test_split):
    x = test_split.images[:8]
    a = mnist_c4(weights="mnist")(x).numpy()
    b = mnist_c4(weights="mnist-adv")(x).numpy()
    assert not np.allclose(a, b)


def test_random_init_is_seeded_and_not_trained(test_split):
    keras.utils.set_random_seed(5)
    a = mnist_c4(weights=None)
    keras.utils.set_random_seed(5)
    b = mnist_c4(weights=None, name="other")
    assert a.name == "c4" and b.name == "other"
    for wa, wb in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert evaluate_accuracy(a, test_split.images[:200], test_split.labels[:200]) < 0.5


@pytest.mark.parametrize("weights", ["imagenet", "MNIST", "", 3])
def test_unknown_weights(weights):
    with pytest.raises(ValueError, match="mnist-adv"):
        mnist_c4(weights=weights)
    with pytest.raises(ValueError):
        mnist_c4_recipe(weights)


def test_wrapper(test_split):
    net = mnist_c4_model(weights="mnist")
    assert isinstance(net, Model)
    assert net.bounds == (0.0, 1.0) and net.num_classes == 10
    assert net.name == "c4_mnist"
    predictions = net.predict(test_split.images[:100]).numpy()
    assert np.mean(predictions == test_split.labels[:100]) > 0.9
    assert mnist_c4_model(weights=None, name="x").name == "x"


def test_save_load_roundtrip(tmp_path):
    keras.utils.set_random_seed(1)
    src = mnist_c4(weights=None)
    for dtype, tol in (("float32", 0.0), ("float16", 1e-3)):
        path = tmp_path / f"w_{dtype}.npz"
        save_weights_npz(src, path, dtype=dtype)
        dst = load_weights_npz(mnist_c4(weights=None), path)
        for wa, wb in zip(src.get_weights(), dst.get_weights()):
            assert wb.dtype == np.float32
            np.testing.assert_allclose(wa, wb, atol=tol, rtol=tol)
    with pytest.raises(ValueError, match="dtype"):
        save_weights_npz(src, tmp_path / "x.npz", dtype="int8")


def test_load_mismatch(tmp_path):
    path = tmp_path / "w.npz"
    net = mnist_c4(weights=None)
    arrays = {f"{layer.name}/{w.name}": w.numpy() for layer in net.layers for w in layer.weights}
    np.savez(path, **{k: val for k, val in arrays.items() if k != "logits/bias"})
    with pytest.raises(ValueError, match="logits/bias"):
        load_weights_npz(mnist_c4(weights=None), path)
    np.savez(path, **{**arrays, "logits/bias": np.zeros(11, np.float32)})
    with pytest.raises(ValueError, match="shape"):
        load_weights_npz(mnist_c4(weights=None), path)
    np.savez(path, **{**arrays, "extra/kernel": np.zeros(1, np.float32)})
    with pytest.raises(ValueError, match="extra/kernel"):
        load_weights_npz(mnist_c4(weights=None), path)
