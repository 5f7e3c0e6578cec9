"""Labelled sample images read from an installed package: the 20 photos per data set of foolbox.

The ``foolbox`` 3.3.4 wheel ships, in its ``foolbox/data/`` folder, 20 test images for each of
ImageNet, CIFAR-10, CIFAR-100, MNIST and Fashion-MNIST, named ``<dataset>_<index>_<label>.<ext>``
(e.g. ``imagenet_00_243.jpg``, ``fashionMNIST_07_6.png``), the label being the 0-based class of
the file: ImageNet ``0..999`` (the Keras / torchvision order, no background class), CIFAR-10,
MNIST and Fashion-MNIST ``0..9``, CIFAR-100 ``0..99``. ImageNet photos are 512x512 RGB JPEGs,
CIFAR 32x32 RGB PNGs, (Fashion-)MNIST 28x28 grayscale PNGs.

:func:`load_samples` reads these files directly. It locates the folder with
:func:`importlib.util.find_spec` and never imports ``foolbox`` itself (which would import
eagerpy and more); only the data files are needed, so ``pip install --no-deps foolbox==3.3.4``
is enough. They are small, real, labelled images for examples, tests and quick checks, not an
evaluation set: use the NIPS 2017 dev set (:mod:`tfsmooth.data.nips17`) to reproduce the paper.
"""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tfsmooth import _validation as v
from tfsmooth.data.folder import LabelledImages, _check_size, read_image

logger = logging.getLogger(__name__)

__all__ = [
    "FOOLBOX_REQUIREMENT",
    "SAMPLE_CLASSES",
    "SAMPLE_DATASETS",
    "Samples",
    "load_samples",
    "sample_datasets",
    "samples_directory",
]

#: The package whose data files are read, and the version they come from.
FOOLBOX_REQUIREMENT = "foolbox==3.3.4"
#: Number of classes of each sample data set (the exact file name prefixes, case-sensitive).
SAMPLE_CLASSES = {"imagenet": 1000, "cifar10": 10, "cifar100": 100, "mnist": 10, "fashionMNIST": 10}
#: The sample data sets, in the order of :data:`SAMPLE_CLASSES`.
SAMPLE_DATASETS = tuple(SAMPLE_CLASSES)
_GRAYSCALE = ("mnist", "fashionMNIST")
_FILE = re.compile(r"^(?P<dataset>[A-Za-z0-9]+)_(?P<index>\d+)_(?P<label>\d+)\.(?:png|jpe?g)$")

#: :func:`load_samples` returns a :class:`~tfsmooth.data.folder.LabelledImages`
#: ``(images, labels, names)``; ``Samples`` is the same class.
Samples = LabelledImages


def samples_directory() -> Path:
    """The ``foolbox/data`` folder of the installed foolbox, found without importing foolbox.

    Raises:
        ImportError: foolbox is not installed, or its installation has no data folder; the
            message says what to install.

    Example:
        >>> samples_directory().name
        'data'
    """
    hint = (
        f"the sample images are read from the data files of the foolbox package: "
        f"pip install {FOOLBOX_REQUIREMENT} (only its data files are used; --no-deps is enough)"
    )
    try:
        spec = importlib.util.find_spec("foolbox")
    except (ImportError, ValueError) as err:  # a broken entry in sys.modules / meta path
        raise ImportError(f"could not locate foolbox ({err}); {hint}") from err
    if spec is None:
        raise ImportError(f"foolbox is not installed; {hint}")
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    if spec.origin and spec.origin not in ("namespace", "built-in", "frozen"):
        roots.insert(0, Path(spec.origin).parent)
    for root in roots:
        if (root / "data").is_dir():
            return root / "data"
    raise ImportError(
        f"foolbox is installed ({spec.origin or roots}) but has no data/ folder of sample images; "
        f"{hint}"
    )


def _canonical(dataset: object) -> str:
    if isinstance(dataset, str):
        for name in SAMPLE_DATASETS:
            if dataset.lower() == name.lower():
                return name
    raise ValueError(f"`dataset` must be one of {SAMPLE_DATASETS}, got {dataset!r}")


def _index(directory: Path) -> dict[str, list[tuple[int, int, str]]]:
    """``dataset -> [(index, label, file name)]`` of the sample files, sorted by index."""
    found: dict[str, list[tuple[int, int, str]]] = {}
    for path in directory.iterdir():
        match = _FILE.match(path.name)
        if match is None or not path.is_file():
            continue
        entry = (int(match["index"]), int(match["label"]), path.name)
        found.setdefault(match["dataset"], []).append(entry)
    return {name: sorted(entries) for name, entries in found.items()}


def sample_datasets() -> tuple[str, ...]:
    """The sample data sets present in the installed foolbox, in :data:`SAMPLE_DATASETS` order.

    Raises:
        ImportError: foolbox is not installed (see :func:`samples_directory`).

    Example:
        >>> sample_datasets()
        ('imagenet', 'cifar10', 'cifar100', 'mnist', 'fashionMNIST')
    """
    present = _index(samples_directory())
    return tuple(name for name in SAMPLE_DATASETS if name in present)


def load_samples(
    dataset: str = "imagenet",
    *,
    size: Sequence[int] | None = None,
    limit: int | None = None,
) -> LabelledImages:
    """Loads the 20 labelled sample images of ``dataset`` shipped with foolbox 3.3.4.

    Args:
        dataset: one of :data:`SAMPLE_DATASETS` (``"imagenet"``, ``"cifar10"``, ``"cifar100"``,
            ``"mnist"``, ``"fashionMNIST"``; case-insensitive).
        size: optional ``(height, width)``: each image is center-cropped to that aspect ratio
            and bilinearly resized (e.g. ``(224, 224)`` or ``(299, 299)`` for ImageNet
            models). Default: the native size (ImageNet 512x512, CIFAR 32x32, MNIST 28x28).
        limit: keep only the first ``limit`` images (by index in the file name).

    Returns:
        :class:`Samples` ``(images, labels, names)``: float32 images ``[N, H, W, 3]`` in
        ``[0, 1]`` (``[N, H, W, 1]`` for MNIST and Fashion-MNIST), int64 labels ``[N]``
        (0-based: ImageNet ``0..999``, CIFAR-100 ``0..99``, others ``0..9``; the last number
        of the file name), and the file names.

    Raises:
        ValueError: unknown ``dataset``, bad ``size`` or ``limit``, a missing or unreadable
            sample file, a label out of range.
        ImportError: foolbox is not installed (``pip install foolbox==3.3.4``).

    Example:
        >>> images, labels, names = load_samples("mnist", limit=3)
        >>> images.shape, images.dtype, labels.tolist()
        ((3, 28, 28, 1), dtype('float32'), [7, 2, 1])
        >>> names
        ['mnist_00_7.png', 'mnist_01_2.png', 'mnist_02_1.png']
        >>> load_samples("imagenet", size=(224, 224), limit=2).images.shape
        (2, 224, 224, 3)
    """
    name = _canonical(dataset)
    target = _check_size(size)
    if limit is not None:
        limit = v.check_int_at_least(limit, "limit", 1)
    directory = samples_directory()
    entries = _index(directory).get(name, [])
    if not entries:
        raise ValueError(
            f"no {name!r} sample files ({name}_<index>_<label>.png/.jpg) in {str(directory)!r}; "
            f"reinstall {FOOLBOX_REQUIREMENT}"
        )
    if limit is not None:
        entries = entries[:limit]
    num_classes = SAMPLE_CLASSES[name]
    images: list[np.ndarray] = []
    for _, label, file_name in entries:
        if not 0 <= label < num_classes:
            raise ValueError(
                f"sample file {file_name!r} has label {label}, expected 0..{num_classes - 1} for "
                f"{name!r}"
            )
        image = read_image(directory / file_name, target)
        if images and image.shape[:2] != images[0].shape[:2]:
            raise ValueError(
                f"sample {file_name!r} is {image.shape[0]}x{image.shape[1]}, unlike "
                f"{entries[0][2]!r} ({images[0].shape[0]}x{images[0].shape[1]}); pass size=(h, w)"
            )
        images.append(image[..., :1] if name in _GRAYSCALE else image)
    logger.info("loaded %d %s sample images from %s", len(images), name, directory)
    return LabelledImages(
        np.stack(images),
        np.array([label for _, label, _ in entries], np.int64),
        [file_name for _, _, file_name in entries],
    )
