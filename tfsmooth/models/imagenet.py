"""The 1000 ImageNet (ILSVRC-2012) class names, shipped with tfsmooth.

Class ``i`` is line ``i`` of ``tfsmooth/assets/imagenet_classes.txt``: the standard 0-based
index (WordNet ids sorted), the labels of :func:`tfsmooth.models.efficientnet_lite` and of
``keras.applications``. Labels of 1001-class models and of the NIPS 2017 data set are shifted by
one (0 = background). Source and licence: ``tfsmooth/assets/IMAGENET_CLASSES_SOURCE.txt``.
"""

from __future__ import annotations

import functools
import importlib.resources

__all__ = ["imagenet_class_names"]


@functools.lru_cache(maxsize=1)
def _read_names() -> tuple[str, ...]:
    text = (
        importlib.resources.files("tfsmooth")
        .joinpath("assets", "imagenet_classes.txt")
        .read_text(encoding="utf-8")
    )
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(names) != 1000:
        raise RuntimeError(
            f"tfsmooth/assets/imagenet_classes.txt holds {len(names)} names, not 1000"
        )
    return names


def imagenet_class_names(short: bool = False) -> list[str]:
    """The ImageNet class names, index ``i`` = class ``i`` (0-based, 1000 classes).

    Args:
        short: if True, only the first WordNet lemma of each class (``"tench"``), else all of
            them comma separated (``"tench, Tinca tinca"``). Names are not all unique: ``"crane"``
            is both the bird (134) and the machine (517), and more short names repeat.

    Returns:
        A new list of 1000 strings.

    Example:
        >>> names = imagenet_class_names()
        >>> len(names), names[0], imagenet_class_names(short=True)[999]
        (1000, 'tench, Tinca tinca', 'toilet tissue')
    """
    names = _read_names()
    if short:
        return [name.split(",")[0].strip() for name in names]
    return list(names)
