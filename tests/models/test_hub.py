"""Tests of tfsmooth.models.hub: SavedModels by path and through a TF-Hub cache layout."""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.models.base import Model
from tfsmooth.models.hub import (
    KNOWN_HANDLES,
    TFHUB_CACHE_ENV,
    hub_cache_path,
    load_hub_model,
    normalize_handle,
)

INCEPTION = "google/imagenet/inception_v3/classification/5"
RESNET = "google/imagenet/resnet_v2_50/classification/5"
NUM_CLASSES = 1001


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode("utf8")).hexdigest()


class _PoolDense(tf.Module):
    """Mean-pool + dense: [B, H, W, 3] -> 1001 logits, any image size."""

    def __init__(self, seed: int = 1) -> None:
        rng = np.random.default_rng(seed)
        self.kernel_value = rng.normal(size=(3, NUM_CLASSES)).astype(np.float32)
        self.bias_value = rng.normal(size=(NUM_CLASSES,)).astype(np.float32)
        self.kernel = tf.Variable(self.kernel_value)
        self.bias = tf.Variable(self.bias_value)

    def reference(self, images: np.ndarray) -> np.ndarray:
        return images.mean(axis=(1, 2)) @ self.kernel_value + self.bias_value

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def __call__(self, images: tf.Tensor) -> tf.Tensor:
        return tf.matmul(tf.reduce_mean(images, axis=[1, 2]), self.kernel) + self.bias


class _SignatureOnly(tf.Module):
    """Not callable; a serving_default signature with a fixed 8x8 input and two outputs."""

    def __init__(self) -> None:
        self.kernel = tf.Variable(tf.random.stateless_normal([3, NUM_CLASSES], seed=[1, 2]))

    @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 3], tf.float32)])
    def classify(self, inputs: tf.Tensor) -> dict[str, tf.Tensor]:
        logits = tf.matmul(tf.reduce_mean(inputs, axis=[1, 2]), self.kernel)
        return {"logits": logits, "probabilities": tf.nn.softmax(logits)}


class _Uncallable(tf.Module):
    def __init__(self) -> None:
        self.kernel = tf.Variable(tf.zeros([3, NUM_CLASSES]))


@pytest.fixture(scope="module")
def pool_dense(tmp_path_factory: pytest.TempPathFactory) -> tuple[_PoolDense, Path]:
    module = _PoolDense()
    path = tmp_path_factory.mktemp("hub") / "pool_dense"
    tf.saved_model.save(module, str(path))
    return module, path


@pytest.fixture(scope="module")
def signature_only(tmp_path_factory: pytest.TempPathFactory) -> tuple[_SignatureOnly, Path]:
    module = _SignatureOnly()
    path = tmp_path_factory.mktemp("hub") / "signature_only"
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.classify})
    return module, path


def _install(saved_model: Path, cache: Path, handle_url: str) -> Path:
    """Copies a SavedModel where tensorflow_hub would have cached ``handle_url``."""
    target = cache / _sha1(handle_url)
    shutil.copytree(saved_model, target)
    return target


def _images(batch: int = 2, size: int = 16) -> np.ndarray:
    return np.random.default_rng(0).uniform(size=(batch, size, size, 3)).astype(np.float32)


# --- local SavedModel directories ---------------------------------------------------------------


def test_load_by_path_matches_the_exported_function(pool_dense):
    module, path = pool_dense
    model = load_hub_model(str(path))
    assert isinstance(model, Model)
    assert model.bounds == (0.0, 1.0)
    assert model.num_classes == NUM_CLASSES  # read from the output signature
    assert model.input_size is None  # the signature accepts any size
    images = _images()
    logits = model(images)
    assert logits.shape == (2, NUM_CLASSES)
    np.testing.assert_allclose(logits.numpy(), module.reference(images), rtol=1e-5, atol=1e-5)


def test_load_by_pathlib_with_input_size_resizes(pool_dense):
    module, path = pool_dense
    model = load_hub_model(path, input_size=(4, 4))
    images = _images(size=8)
    resized = tf.image.resize(images, (4, 4), method="bilinear").numpy()
    np.testing.assert_allclose(model(images).numpy(), module.reference(resized), atol=1e-5)


def test_model_is_differentiable_and_traceable(pool_dense):
    _, path = pool_dense
    model = load_hub_model(path)
    images = tf.constant(_images())
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = tf.reduce_sum(model(images)[:, 5])
    grad = tape.gradient(loss, images)
    assert grad is not None and np.all(np.isfinite(grad.numpy()))
    assert np.any(grad.numpy() != 0)

    @tf.function
    def predict(x):
        return model(x)

    np.testing.assert_allclose(predict(images).numpy(), model(images).numpy(), atol=1e-6)


def test_float64_input_keeps_its_dtype(pool_dense):
    _, path = pool_dense
    model = load_hub_model(path)
    assert model(_images().astype(np.float64)).dtype == tf.float64


def test_serving_signature_with_fixed_size(signature_only):
    module, path = signature_only
    model = load_hub_model(path)
    assert model.input_size == (8, 8)  # taken from the signature
    assert model.num_classes == NUM_CLASSES
    images = _images(size=12)  # resized to 8x8 by the Model
    expected = module.classify(tf.image.resize(images, (8, 8)))["logits"].numpy()
    np.testing.assert_allclose(model(images).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_fixed_size_conflicting_with_input_size_is_explained(signature_only):
    _, path = signature_only
    with pytest.raises(ValueError, match=r"only accepts images of size \(8, 8\)"):
        load_hub_model(path, input_size=(10, 10))


def test_num_classes_mismatch_raises(pool_dense):
    _, path = pool_dense
    with pytest.raises(ValueError, match="returns 1001 logits, expected num_classes=1000"):
        load_hub_model(path, num_classes=1000)


def test_saved_model_without_callable_or_signature_raises(tmp_path):
    tf.saved_model.save(_Uncallable(), str(tmp_path / "m"))
    with pytest.raises(ValueError, match="neither callable .* nor has a 'serving_default'"):
        load_hub_model(tmp_path / "m")


def test_directory_that_is_not_a_saved_model_raises(tmp_path):
    (tmp_path / "weights.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="no saved_model.pb"):
        load_hub_model(tmp_path)


def test_missing_local_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hub_model(tmp_path / "nothing")
    with pytest.raises(FileNotFoundError, match="neither an existing SavedModel directory"):
        load_hub_model(str(tmp_path / "nothing"))


@pytest.mark.parametrize("bad", [{"input_size": (0, 4)}, {"input_size": (4,)}, {"num_classes": 1}])
def test_bad_arguments_raise(pool_dense, bad):
    _, path = pool_dense
    with pytest.raises(ValueError):
        load_hub_model(path, **bad)


# --- TF-Hub handles and the cache layout --------------------------------------------------------


def test_known_handles():
    assert KNOWN_HANDLES[INCEPTION].input_size == (299, 299)
    assert KNOWN_HANDLES[RESNET].input_size == (224, 224)
    assert all(spec.num_classes == NUM_CLASSES for spec in KNOWN_HANDLES.values())


@pytest.mark.parametrize(
    "handle",
    [
        INCEPTION,
        "https://tfhub.dev/" + INCEPTION,
        "https://tfhub.dev/" + INCEPTION + "/?tf-hub-format=compressed",
        "tfhub.dev/" + INCEPTION,
        "https://www.kaggle.com/models/google/inception-v3/TensorFlow2/classification/2",
        "https://www.kaggle.com/models/google/inception-v3/tensorFlow2/classification/2",
        "https://www.kaggle.com/models/google/inception-v3/frameworks/TensorFlow2/variations/"
        "classification/versions/2",
    ],
)
def test_normalize_handle_known_model(handle):
    assert normalize_handle(handle) == "https://tfhub.dev/" + INCEPTION


def test_normalize_handle_other_forms():
    assert normalize_handle("google/foo/bar/3") == "https://tfhub.dev/google/foo/bar/3"
    assert (
        normalize_handle("https://example.com/model.tar.gz") == "https://example.com/model.tar.gz"
    )
    with pytest.raises(ValueError, match="expected a TF-Hub handle"):
        normalize_handle("not a handle")
    with pytest.raises(TypeError):
        normalize_handle(3)  # type: ignore[arg-type]


def test_cache_path_is_sha1_of_the_handle_url(tmp_path, monkeypatch):
    expected = tmp_path / _sha1("https://tfhub.dev/" + RESNET)
    assert hub_cache_path(RESNET, tmp_path) == expected
    monkeypatch.setenv(TFHUB_CACHE_ENV, str(tmp_path))
    assert hub_cache_path("https://tfhub.dev/" + RESNET) == expected


def test_cache_path_agrees_with_tensorflow_hub(tmp_path, monkeypatch):
    spec = importlib.util.find_spec("tensorflow_hub")  # does not run its __init__
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("tensorflow_hub is not installed (extra 'hub')")
    # tensorflow_hub's __init__ needs tf_keras; load its resolver modules without it.
    package = types.ModuleType("tensorflow_hub")
    package.__path__ = list(spec.submodule_search_locations)
    monkeypatch.setitem(sys.modules, "tensorflow_hub", package)
    for name in ("resolver", "compressed_module_resolver"):
        monkeypatch.delitem(sys.modules, f"tensorflow_hub.{name}", raising=False)
    resolver = importlib.import_module("tensorflow_hub.compressed_module_resolver")
    monkeypatch.setenv(TFHUB_CACHE_ENV, str(tmp_path))
    url = "https://tfhub.dev/" + INCEPTION
    assert Path(resolver._module_dir(url)) == hub_cache_path(url)


@pytest.mark.parametrize("form", [INCEPTION, "https://tfhub.dev/" + INCEPTION])
def test_load_known_handle_from_env_cache(pool_dense, tmp_path, monkeypatch, form):
    module, path = pool_dense
    _install(path, tmp_path, "https://tfhub.dev/" + INCEPTION)
    monkeypatch.setenv(TFHUB_CACHE_ENV, str(tmp_path))
    model = load_hub_model(form)
    assert model.input_size == (299, 299)
    assert model.num_classes == NUM_CLASSES
    assert model.name == INCEPTION
    images = _images(size=299)
    np.testing.assert_allclose(model(images).numpy(), module.reference(images), atol=1e-4)


def test_cache_dir_argument_overrides_env(pool_dense, tmp_path, monkeypatch):
    _, path = pool_dense
    _install(path, tmp_path / "mine", "https://tfhub.dev/" + RESNET)
    monkeypatch.setenv(TFHUB_CACHE_ENV, str(tmp_path / "elsewhere"))
    model = load_hub_model(RESNET, cache_dir=tmp_path / "mine")
    assert model.input_size == (224, 224)
    with pytest.raises(FileNotFoundError):
        load_hub_model(RESNET)  # not under $TFHUB_CACHE_DIR


def test_kaggle_handle_cached_under_its_own_hash(pool_dense, tmp_path):
    _, path = pool_dense
    kaggle = "https://www.kaggle.com/models/google/resnet-v2/TensorFlow2/50-classification/2"
    _install(path, tmp_path, kaggle)  # as tensorflow_hub caches a Kaggle handle
    model = load_hub_model(kaggle, cache_dir=tmp_path)
    assert model.input_size == (224, 224) and model.name == RESNET
    model = load_hub_model(RESNET, cache_dir=tmp_path)  # the same files, found by alias
    assert model(_images()).shape == (2, NUM_CLASSES)


def test_unknown_handle_uses_signature_defaults(signature_only, tmp_path):
    _, path = signature_only
    url = "https://tfhub.dev/someone/tiny/1"
    _install(path, tmp_path, url)
    model = load_hub_model("someone/tiny/1", cache_dir=tmp_path)
    assert model.input_size == (8, 8) and model.num_classes == NUM_CLASSES


def test_missing_handle_error_names_the_directory(tmp_path, monkeypatch):
    monkeypatch.setenv(TFHUB_CACHE_ENV, str(tmp_path))
    expected = str(tmp_path / _sha1("https://tfhub.dev/" + INCEPTION))
    with pytest.raises(FileNotFoundError) as info:
        load_hub_model(INCEPTION)
    message = str(info.value)
    assert expected in message
    assert "saved_model.pb" in message and "never downloads" in message


def test_missing_handle_with_cache_dir_argument(tmp_path):
    with pytest.raises(FileNotFoundError, match=_sha1("https://tfhub.dev/" + RESNET)):
        load_hub_model(RESNET, cache_dir=tmp_path / "cache")


# --- end to end on real photographs -------------------------------------------------------------


def _photos(size: tuple[int, int]) -> np.ndarray:
    skdata = pytest.importorskip("skimage.data")
    photos = [skdata.astronaut(), skdata.coffee(), skdata.chelsea()]
    batch = [
        tf.image.resize(tf.convert_to_tensor(p, tf.float32) / 255.0, size, method="bilinear")
        for p in photos
    ]
    return tf.clip_by_value(tf.stack(batch), 0.0, 1.0).numpy()


def test_end_to_end_photos_through_cached_handle(pool_dense, tmp_path):
    module, path = pool_dense
    _install(path, tmp_path, "https://tfhub.dev/" + INCEPTION)
    model = load_hub_model(INCEPTION, cache_dir=tmp_path)
    photos = _photos((299, 299))
    assert photos.shape == (3, 299, 299, 3) and photos.min() >= 0.0 and photos.max() <= 1.0
    logits = model(photos).numpy()
    assert logits.shape == (3, NUM_CLASSES)
    assert np.all(np.isfinite(logits))
    np.testing.assert_allclose(logits, module.reference(photos), rtol=1e-4, atol=1e-4)
    # Photos of another size are resized by the Model to the handle's 299x299.
    small = _photos((224, 224))
    assert model(small).shape == (3, NUM_CLASSES)
    predictions = model.predict(photos, batch_size=2).numpy()
    np.testing.assert_array_equal(predictions, np.argmax(logits, axis=1))


def test_tf1_hub_style_default_signature(tmp_path):
    module = _SignatureOnly()
    tf.saved_model.save(module, str(tmp_path / "m"), signatures={"default": module.classify})
    model = load_hub_model(tmp_path / "m")
    images = _images(size=8)
    expected = module.classify(tf.constant(images))["logits"].numpy()
    np.testing.assert_allclose(model(images).numpy(), expected, rtol=1e-5, atol=1e-5)


def test_missing_relative_path_like_handle_mentions_both(tmp_path):
    with pytest.raises(FileNotFoundError, match="No local directory 'someone/model/3' exists"):
        load_hub_model("someone/model/3", cache_dir=tmp_path)
