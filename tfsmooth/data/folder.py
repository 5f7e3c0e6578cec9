"""A folder of the user's own images as one float batch in ``[0, 1]``.

Images are read with Pillow, converted to RGB (grayscale is replicated, an alpha channel is
dropped, palettes are expanded, 16-bit images are scaled from ``[0, 65535]``) and optionally
resized: *center crop to the target aspect ratio, then bilinear resize* (no distortion, as in
the usual ImageNet evaluation), so a 4:3 photo resized to a square loses its sides, not its shape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from tfsmooth import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_EXTENSIONS", "ImageFolder", "list_images", "load_image_folder", "read_image"]

#: File extensions :func:`load_image_folder` reads by default (case-insensitive).
DEFAULT_EXTENSIONS = (".png", ".jpg", ".jpeg")


class ImageFolder(NamedTuple):
    """Images of a folder; unpacks as ``images, file_names = load_image_folder(...)``.

    Attributes:
        images: float32 array ``[N, H, W, 3]`` with values in ``[0, 1]``.
        file_names: the N file names (without directory), sorted.
    """

    images: np.ndarray
    file_names: list[str]


def _check_size(size: Sequence[int] | None) -> tuple[int, int] | None:
    if size is None:
        return None
    if isinstance(size, (str, bytes)) or len(tuple(size)) != 2:
        raise ValueError(f"`size` must be (height, width) or None, got {size!r}")
    return (
        v.check_int_at_least(size[0], "size[0]", 1),
        v.check_int_at_least(size[1], "size[1]", 1),
    )


def _crop_box(width: int, height: int, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """Centered box of the source with the aspect ratio of ``size`` = (height, width)."""
    target = size[1] / size[0]
    if width / height > target:  # too wide: crop the sides
        new_width = height * target
        left = (width - new_width) / 2.0
        return (left, 0.0, left + new_width, float(height))
    new_height = width / target
    top = (height - new_height) / 2.0
    return (0.0, top, float(width), top + new_height)


def read_image(path: str | os.PathLike[str], size: Sequence[int] | None = None) -> np.ndarray:
    """Reads one image as float32 RGB ``[H, W, 3]`` in ``[0, 1]``.

    Args:
        path: image file (any format Pillow reads).
        size: optional ``(height, width)``: center crop to that aspect ratio, then bilinear
            resize.

    Returns:
        float32 array ``[H, W, 3]``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable image.

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Image.new("L", (6, 4), color=255).save(os.path.join(tmp, "g.png"))
        ...     read_image(os.path.join(tmp, "g.png"), size=(2, 2)).shape
        (2, 2, 3)
    """
    from PIL import Image, UnidentifiedImageError

    target = _check_size(size)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} not found")
    try:
        with Image.open(path) as image:
            image.load()
            channels: list[Image.Image]
            if image.mode.startswith("I"):  # 16/32-bit grayscale: scale to [0, 1]
                values = np.asarray(image, np.float32)
                high = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
                channels = [Image.fromarray(values / high)] * 3
            elif image.mode == "F":  # float grayscale, assumed in [0, 1]
                channels = [image] * 3
            else:  # L, LA, P, RGBA, CMYK, ...: alpha dropped, palette expanded
                rgb = image.convert("RGB")
                channels = [rgb.getchannel(i) for i in range(3)]
            if target is not None:
                box = _crop_box(channels[0].width, channels[0].height, target)
                channels = [
                    c.resize((target[1], target[0]), Image.Resampling.BILINEAR, box=box)
                    for c in channels
                ]
    except UnidentifiedImageError as err:
        raise ValueError(f"{str(path)!r} is not an image Pillow can read") from err
    except OSError as err:
        raise ValueError(f"could not read image {str(path)!r}: {err}") from err
    array = np.stack([np.asarray(c, np.float32) for c in channels], axis=-1)
    if channels[0].mode != "F":
        array = array / 255.0
    return np.clip(array, 0.0, 1.0).astype(np.float32)


def list_images(
    directory: str | os.PathLike[str], extensions: Sequence[str] = DEFAULT_EXTENSIONS
) -> list[Path]:
    """Image files directly in ``directory`` (not recursive), sorted by name; hidden files skipped.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     for name in ["b.PNG", "a.jpg", "notes.txt", ".hidden.png"]:
        ...         _ = (pathlib.Path(tmp) / name).write_bytes(b"")
        ...     [p.name for p in list_images(tmp)]
        ['a.jpg', 'b.PNG']
    """
    if isinstance(extensions, str):
        extensions = (extensions,)
    suffixes = tuple(e.lower() if e.startswith(".") else "." + e.lower() for e in extensions)
    if not suffixes:
        raise ValueError("`extensions` must name at least one file extension, got ()")
    root = Path(directory)
    if not root.is_dir():
        raise FileNotFoundError(f"image directory {str(root)!r} not found (or not a directory)")
    return sorted(
        (
            p
            for p in root.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
        ),
        key=lambda p: p.name,
    )


def load_image_folder(
    directory: str | os.PathLike[str],
    size: Sequence[int] | None = None,
    *,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    limit: int | None = None,
) -> ImageFolder:
    """Loads the images of a folder, sorted by file name, as float32 ``[N, H, W, 3]`` in ``[0, 1]``.

    Args:
        directory: folder holding the images (sub-folders and hidden files are ignored).
        size: optional ``(height, width)``. Each image is center-cropped to that aspect ratio
            and bilinearly resized to it. Without ``size`` all images must share one size.
        extensions: file extensions to read (case-insensitive).
        limit: read at most this many images (the first ones by name).

    Returns:
        :class:`ImageFolder` ``(images, file_names)``.

    Raises:
        FileNotFoundError: the directory does not exist.
        ValueError: no images, an unreadable image, or (without ``size``) images of different
            sizes (the message names the odd file).

    Example:
        >>> import tempfile, os
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     Image.new("RGB", (8, 6), (255, 0, 0)).save(os.path.join(tmp, "red.png"))
        ...     Image.new("RGBA", (12, 9)).save(os.path.join(tmp, "clear.png"))
        ...     images, names = load_image_folder(tmp, size=(6, 8))
        >>> images.shape, images.dtype, names
        ((2, 6, 8, 3), dtype('float32'), ['clear.png', 'red.png'])
        >>> images[1, 0, 0].tolist()
        [1.0, 0.0, 0.0]
    """
    target = _check_size(size)
    if limit is not None:
        limit = v.check_int_at_least(limit, "limit", 1)
    files = list_images(directory, extensions)
    if not files:
        raise ValueError(f"no images with extensions {tuple(extensions)} in {str(directory)!r}")
    if limit is not None:
        files = files[:limit]
    images: list[np.ndarray] = []
    for path in files:
        image = read_image(path, target)
        if images and image.shape != images[0].shape:
            raise ValueError(
                f"images of {str(directory)!r} differ in size: {path.name!r} is "
                f"{image.shape[0]}x{image.shape[1]} but {files[0].name!r} is "
                f"{images[0].shape[0]}x{images[0].shape[1]} (height x width); pass size=(h, w) "
                f"to resize them all"
            )
        images.append(image)
    logger.info("loaded %d images from %s", len(images), directory)
    return ImageFolder(np.stack(images), [p.name for p in files])
