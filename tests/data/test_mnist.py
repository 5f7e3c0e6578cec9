"""Tests of tfsmooth.data.mnist: sources, fallbacks, errors, shapes."""

from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.data import mnist
from tfsmooth.data.mnist import MNIST_SOURCES, MnistData, default_keras_cache, load_mnist


def _fake_keras_npz(path, n_train=7, n_test=5, seed=1):
    rng = np.random.default_rng(seed)
    arrays = {
        "x_train": rng.integers(0, 256, size=(n_train, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, size=n_train).astype(np.uint8),
        "x_test": rng.integers(0, 256, size=(n_test, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, size=n_test).astype(np.uint8),
    }
    np.savez(path, **arrays)
    return arrays


def _check_contract(data: MnistData, n: int) -> None:
    assert data.images.shape == (n, 28, 28, 1)
    assert data.images.dtype == np.float32
    assert data.labels.shape == (n,)
    assert data.labels.dtype == np.int64
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert data.labels.min() >= 0 and data.labels.max() <= 9


@pytest.mark.parametrize(("split", "n"), [("train", 4000), ("test", 1000)])
def test_package_sample(split, n):
    data = load_mnist(split, source="package")
    _check_contract(data, n)
    assert data.source == "package-sample" and data.split == split and len(data) == n
    # Stratified: exactly n/10 digits of each class; real digits, not blank images.
    np.testing.assert_array_equal(np.bincount(data.labels, minlength=10), [n // 10] * 10)
    assert data.images.max() == 1.0
    ink = data.images.reshape(n, -1).mean(axis=1)
    assert ink.min() > 0.01 and ink.max() < 0.5


def test_package_splits_are_disjoint():
    train = load_mnist("train", source="package").images.reshape(4000, -1)
    test = load_mnist("test", source="package").images.reshape(1000, -1)
    train_keys = {row.tobytes() for row in (train * 255).astype(np.uint8)}
    assert not any(row.tobytes() in train_keys for row in (test * 255).astype(np.uint8))


def test_limit():
    full = load_mnist("test", source="package")
    part = load_mnist("test", source="package", limit=17)
    _check_contract(part, 17)
    np.testing.assert_array_equal(part.images, full.images[:17])
    np.testing.assert_array_equal(part.labels, full.labels[:17])
    assert len(load_mnist("test", source="package", limit=10**6)) == 1000


def test_keras_cache(tmp_path):
    path = tmp_path / "mnist.npz"
    arrays = _fake_keras_npz(path)
    data = load_mnist("train", source="keras", keras_cache=path)
    _check_contract(data, 7)
    assert data.source == "keras-cache"
    np.testing.assert_allclose(data.images[..., 0] * 255.0, arrays["x_train"], atol=1e-4)
    np.testing.assert_array_equal(data.labels, arrays["y_train"])
    test = load_mnist("test", source="keras", keras_cache=str(path), limit=3)
    np.testing.assert_array_equal(test.labels, arrays["y_test"][:3])


def test_auto_prefers_keras_cache_over_package(tmp_path, caplog):
    path = tmp_path / "mnist.npz"
    _fake_keras_npz(path)
    empty_tfds = tmp_path / "tfds"
    empty_tfds.mkdir()
    with caplog.at_level(logging.INFO, logger="tfsmooth.data.mnist"):
        data = load_mnist("test", keras_cache=path, data_dir=empty_tfds)
    assert data.source == "keras-cache" and len(data) == 5
    assert "keras-cache" in caplog.text
    # Nothing was downloaded into the TFDS directory.
    assert not (empty_tfds / "mnist").exists() or not any(
        (empty_tfds / "mnist").rglob("*.tfrecord*")
    )


def test_auto_falls_back_to_package(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="tfsmooth.data.mnist"):
        data = load_mnist("test", keras_cache=tmp_path / "none.npz", data_dir=tmp_path, limit=4)
    assert data.source == "package-sample" and len(data) == 4
    assert "package-sample" in caplog.text


def test_forced_keras_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="keras.datasets.mnist.load_data"):
        load_mnist(source="keras", keras_cache=tmp_path / "missing.npz")


def test_keras_cache_missing_keys(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, x_train=np.zeros([2, 28, 28], np.uint8))
    with pytest.raises(ValueError, match="y_train"):
        load_mnist("train", source="keras", keras_cache=path)


def test_forced_tfds_without_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match="tensorflow-datasets"):
        load_mnist(source="tfds")


def test_auto_without_tfds_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    data = load_mnist(keras_cache=tmp_path / "none.npz", limit=2)
    assert data.source == "package-sample"


def test_forced_tfds_not_prepared(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match="download=True"):
        load_mnist(source="tfds", data_dir=tmp_path)


def test_tfds_prepared_directory(tmp_path):
    """A tiny dataset written in TFDS format under the name mnist/3.0.1 is read back."""
    tfds = pytest.importorskip("tensorflow_datasets")
    rng = np.random.default_rng(3)
    images = {
        s: rng.integers(0, 256, size=(n, 28, 28, 1), dtype=np.uint8)
        for s, n in (("train", 4), ("test", 6))
    }
    labels = {s: (np.arange(len(images[s])) * 3 % 10).astype(np.int64) for s in images}
    version = str(tfds.builder("mnist", data_dir=tmp_path).version)
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(28, 28, 1)),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
    )
    splits = {
        s: tf.data.Dataset.from_tensor_slices({"image": images[s], "label": labels[s]})
        for s in images
    }
    tfds.dataset_builders.store_as_tfds_dataset(
        name="mnist",
        version=version,
        features=features,
        split_datasets=splits,
        data_dir=tmp_path,
        disable_shuffling=True,
    )
    data = load_mnist("test", source="tfds", data_dir=tmp_path)
    _check_contract(data, 6)
    assert data.source == "tfds"
    np.testing.assert_allclose(data.images * 255.0, images["test"], atol=1e-4)
    np.testing.assert_array_equal(data.labels, labels["test"])
    part = load_mnist("train", data_dir=tmp_path, limit=3)  # auto picks tfds first
    assert part.source == "tfds" and len(part) == 3
    np.testing.assert_array_equal(part.labels, labels["train"][:3])


def test_unknown_source_lists_options():
    with pytest.raises(ValueError, match="source") as info:
        load_mnist(source="internet")
    for option in MNIST_SOURCES:
        assert option in str(info.value)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"split": "validation"}, ValueError),
        ({"limit": 0}, ValueError),
        ({"limit": 2.5}, TypeError),
        ({"download": "yes"}, TypeError),
    ],
)
def test_bad_arguments(kwargs, error):
    split = kwargs.pop("split", "test")
    with pytest.raises(error):
        load_mnist(split, source="package", **kwargs)


def test_default_keras_cache_location():
    path = default_keras_cache()
    assert path.name == "mnist.npz" and path.parent.name == "datasets"


def test_repr_and_float_input(tmp_path):
    path = tmp_path / "mnist.npz"
    np.savez(
        path,
        x_test=np.full([2, 28, 28], 255.0, np.float64),
        y_test=np.array([1, 2]),
    )
    data = load_mnist("test", source="keras", keras_cache=path)
    assert data.images.dtype == np.float32 and data.images.max() == 1.0
    assert "keras-cache" in repr(data)
    assert mnist.MnistData is MnistData
