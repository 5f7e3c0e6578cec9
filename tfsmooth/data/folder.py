"""A folder of the user's own images as one float batch in ``[0, 1]``, optionally labelled.

Images are read with Pillow, converted to RGB (grayscale is replicated, an alpha channel is
dropped, palettes are expanded, 16-bit images are scaled from ``[0, 65535]``) and optionally
resized: *center crop to the target aspect ratio, then bilinear resize* (no distortion, as in
the usual ImageNet evaluation), so a 4:3 photo resized to a square loses its sides, not its shape.

Untrusted files: an image whose header declares more than ``max_pixels`` pixels (default
:data:`DEFAULT_MAX_PIXELS`) or more than Pillow's ``PIL.Image.MAX_IMAGE_PIXELS`` is refused with a
``ValueError`` before it is decoded (a "decompression bomb": a few kilobytes of PNG can declare
gigapixels); so is a CSV field longer than ``csv.field_size_limit()``.

Labels: :func:`load_labels_csv` reads a CSV with the columns ``file,label`` and
:func:`load_labelled_folder` pairs it with the folder's images. The CSV's label convention must
be stated: ``label_base=0`` for 0-based class indices (Keras / torchvision ImageNet models,
``0..999``), ``label_base=1`` for 1-based ones such as the NIPS 2017 dev set's ``TrueLabel``
(``1..1000``, with 0 the background class of 1001-logit TF-slim / TF-Hub models). The labels
returned are always 0-based (``csv_label - label_base``).
"""

from __future__ import annotations

import csv
import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tfsmooth import _validation as v

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_EXTENSIONS",
    "DEFAULT_MAX_PIXELS",
    "LABEL_BASES",
    "LABEL_COLUMNS",
    "ImageFolder",
    "LabelledImages",
    "list_images",
    "load_image_folder",
    "load_labelled_folder",
    "load_labels_csv",
    "read_image",
]

#: File extensions :func:`load_image_folder` reads by default (case-insensitive).
DEFAULT_EXTENSIONS = (".png", ".jpg", ".jpeg")
#: Largest image (``width * height`` declared in the file header) read by default: 64 Mpixel,
#: i.e. 768 MiB as float32 RGB. Pillow's own limit ``PIL.Image.MAX_IMAGE_PIXELS`` applies too.
DEFAULT_MAX_PIXELS = 64 * 1024 * 1024
#: Columns of a labels CSV (:func:`load_labels_csv`), in any order.
LABEL_COLUMNS = ("file", "label")
#: Accepted ``label_base`` values: 0 (class indices ``0..K-1``) or 1 (``1..K``, NIPS 2017).
LABEL_BASES = (0, 1)


class LabelledImages(NamedTuple):
    """Images with labels; unpacks as ``images, labels, names = ...``.

    Attributes:
        images: float32 array ``[N, H, W, C]`` with values in ``[0, 1]``.
        labels: int64 array ``[N]``, 0-based class indices.
        names: the N file names (without directory).
    """

    images: np.ndarray
    labels: np.ndarray
    names: list[str]


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


def _check_max_pixels(max_pixels: int | None) -> int | None:
    if max_pixels is None:
        return None
    return v.check_int_at_least(max_pixels, "max_pixels", 1)


class _OversizeImageError(ValueError):
    """An image larger than the pixel cap (raised before decoding)."""


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return text or type(error).__name__


def read_image(
    path: str | os.PathLike[str],
    size: Sequence[int] | None = None,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Reads one image as float32 RGB ``[H, W, 3]`` in ``[0, 1]``.

    Args:
        path: image file (any format Pillow reads).
        size: optional ``(height, width)``: center crop to that aspect ratio, then bilinear
            resize.
        max_pixels: refuse images whose header declares more than this many pixels (checked
            before decoding); ``None`` leaves only Pillow's ``PIL.Image.MAX_IMAGE_PIXELS``.

    Returns:
        float32 array ``[H, W, 3]``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a readable image (truncated, corrupt, not an image), or one larger than
            ``max_pixels`` or Pillow's limit; the one-line message names the file.

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
    limit = _check_max_pixels(max_pixels)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file {str(path)!r} not found")
    pillow_limit = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises above twice that; we refuse both.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image_file = Image.open(path)
        with image_file as image:
            pixels = int(image.width) * int(image.height)
            caps = ((limit, "max_pixels"), (pillow_limit, "PIL.Image.MAX_IMAGE_PIXELS"))
            for cap, what in caps:
                if cap is not None and pixels > cap:
                    raise _OversizeImageError(
                        f"image {str(path)!r} declares {image.width}x{image.height} = {pixels} "
                        f"pixels, more than {what} = {cap} (a decompression bomb?); raise "
                        f"{what} to read it"
                    )
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
    except Image.DecompressionBombError as err:
        raise ValueError(
            f"image {str(path)!r} is too large for Pillow (a decompression bomb?): {_one_line(err)}"
        ) from None
    except UnidentifiedImageError as err:
        raise ValueError(f"{str(path)!r} is not an image Pillow can read") from err
    except _OversizeImageError:
        raise
    except ValueError as err:
        raise ValueError(f"could not read image {str(path)!r}: {_one_line(err)}") from err
    except (OSError, SyntaxError, EOFError, IndexError, KeyError, TypeError) as err:
        # Pillow's decoders raise these for truncated or corrupt files.
        raise ValueError(f"could not read image {str(path)!r}: {_one_line(err)}") from err
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
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> ImageFolder:
    """Loads the images of a folder, sorted by file name, as float32 ``[N, H, W, 3]`` in ``[0, 1]``.

    Args:
        directory: folder holding the images (sub-folders and hidden files are ignored).
        size: optional ``(height, width)``. Each image is center-cropped to that aspect ratio
            and bilinearly resized to it. Without ``size`` all images must share one size.
        extensions: file extensions to read (case-insensitive).
        limit: read at most this many images (the first ones by name).
        max_pixels: refuse images larger than this (see :func:`read_image`).

    Returns:
        :class:`ImageFolder` ``(images, file_names)``.

    Raises:
        FileNotFoundError: the directory does not exist.
        ValueError: no images, an unreadable or too large image, or (without ``size``) images
            of different sizes (the message names the odd file).

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
    max_pixels = _check_max_pixels(max_pixels)
    if limit is not None:
        limit = v.check_int_at_least(limit, "limit", 1)
    files = list_images(directory, extensions)
    if not files:
        raise ValueError(f"no images with extensions {tuple(extensions)} in {str(directory)!r}")
    if limit is not None:
        files = files[:limit]
    images: list[np.ndarray] = []
    for path in files:
        image = read_image(path, target, max_pixels=max_pixels)
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


def _check_label_base(label_base: Any) -> int:
    if isinstance(label_base, bool) or label_base not in LABEL_BASES:
        raise ValueError(
            f"`label_base` must be 0 (labels are class indices 0..K-1) or 1 (labels 1..K, e.g. "
            f"the NIPS 2017 dev set's TrueLabel), got {label_base!r}"
        )
    return int(label_base)


def load_labels_csv(
    path: str | os.PathLike[str],
    file_names: Sequence[str],
    num_classes: int | None = None,
    *,
    label_base: int = 0,
) -> np.ndarray:
    """Labels of image files from a CSV with the columns ``file,label``, as 0-based indices.

    Args:
        path: the CSV file; a header ``file,label`` (either order) and one row per image (file
            name without directory, label an integer).
        file_names: the images to label, in order (every one must have a row; rows for other
            files are ignored).
        num_classes: if given, the returned (0-based) labels must lie in
            ``0..num_classes - 1``, i.e. the CSV's in ``label_base..label_base + num_classes - 1``.
        label_base: the CSV's convention: 0 for class indices ``0..K-1`` (the default, the
            model's logit index), 1 for ``1..K`` (e.g. the NIPS 2017 dev set's ``TrueLabel``,
            where 0 is the background class of 1001-logit models). The result is
            ``csv_label - label_base``.

    Returns:
        int64 ``[len(file_names)]``, 0-based.

    Raises:
        FileNotFoundError: no such file.
        ValueError: other or missing columns, a bad or duplicate row, a field longer than
            ``csv.field_size_limit()``, undecodable text, a file without a label, a label out
            of range (one-line messages naming the file and line).

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     p = pathlib.Path(tmp) / "labels.csv"
        ...     _ = p.write_text("file,label\\nb.png,7\\na.png,3\\n")
        ...     print(load_labels_csv(p, ["a.png", "b.png"]).tolist(),
        ...           load_labels_csv(p, ["a.png", "b.png"], label_base=1).tolist())
        [3, 7] [2, 6]
    """
    label_base = _check_label_base(label_base)
    if num_classes is not None:
        num_classes = v.check_int_at_least(num_classes, "num_classes", 1)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels CSV {str(path)!r} not found")
    low = label_base
    high = None if num_classes is None else label_base + num_classes - 1
    bound = f"{low}..{high}" if high is not None else f">= {low}"
    convention = f" (label_base={label_base})" if label_base else ""
    found: dict[str, int] = {}
    lines_read = 0  # complete lines read before a csv.Error
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.DictReader(handle)
            columns = [c.strip() for c in (reader.fieldnames or [])]
            if sorted(columns) != sorted(LABEL_COLUMNS):
                unknown = [c for c in columns if c not in LABEL_COLUMNS]
                raise ValueError(
                    f"labels CSV {str(path)!r} must have exactly the columns "
                    f"{list(LABEL_COLUMNS)}, got {columns}"
                    + (f" (unknown: {unknown})" if unknown else "")
                )
            reader.fieldnames = columns
            for record in reader:
                line = lines_read = reader.line_num
                name = (record.get("file") or "").strip()
                text = (record.get("label") or "").strip()
                if None in record or not name:
                    raise ValueError(
                        f"{str(path)!r} line {line}: expected 'file,label', got {record}"
                    )
                try:
                    label = int(text)
                except ValueError:
                    raise ValueError(
                        f"{str(path)!r} line {line}: label must be an integer, got {text!r}"
                    ) from None
                if label < low or (high is not None and label > high):
                    hint = " (0 is the background class, not a label)" if label == 0 else ""
                    raise ValueError(
                        f"{str(path)!r} line {line}: label must be in {bound}{convention}, got "
                        f"{label}{hint if label_base else ''}"
                    )
                if name in found:
                    raise ValueError(f"{str(path)!r} line {line}: file {name!r} listed twice")
                found[name] = label - label_base
    except csv.Error as err:
        raise ValueError(
            f"labels CSV {str(path)!r} line {lines_read + 1}: {_one_line(err)}; is it a "
            f"'file,label' CSV? (fields are limited to csv.field_size_limit() = "
            f"{csv.field_size_limit()} characters)"
        ) from None
    except UnicodeDecodeError as err:
        raise ValueError(f"labels CSV {str(path)!r} is not UTF-8 text: {_one_line(err)}") from None
    missing = [name for name in file_names if name not in found]
    if missing:
        raise ValueError(
            f"labels CSV {str(path)!r} has no row for {len(missing)} image(s): "
            f"{', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}"
        )
    return np.array([found[name] for name in file_names], np.int64)


def load_labelled_folder(
    directory: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str],
    *,
    label_base: int,
    size: Sequence[int] | None = None,
    num_classes: int | None = None,
    extensions: Sequence[str] = DEFAULT_EXTENSIONS,
    limit: int | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
) -> LabelledImages:
    """Loads a folder of images and their labels from a ``file,label`` CSV.

    The CSV is read and checked first (cheap), then the images, sorted by file name
    (:func:`load_image_folder`). Every image of the folder (or the first ``limit``) needs a row.

    Args:
        directory: folder holding the images.
        labels_csv: CSV with the columns ``file,label`` (see :func:`load_labels_csv`).
        label_base: required, the CSV's label convention: 0 (class indices ``0..K-1``) or 1
            (``1..K``, like the NIPS 2017 dev set's ``TrueLabel``). Returned labels are 0-based;
            add 1 yourself for a 1001-logit model with a background class at 0 (or use the
            model wrapper's label offset).
        size: optional ``(height, width)`` to center-crop and resize every image to.
        num_classes: if given, 0-based labels must lie in ``[0, num_classes)``.
        extensions: image file extensions to read.
        limit: read at most this many images (the first ones by name).
        max_pixels: refuse images larger than this (see :func:`read_image`).

    Returns:
        :class:`LabelledImages` ``(images [N, H, W, 3] float32, labels [N] int64, names)``.

    Raises:
        FileNotFoundError: no folder or CSV.
        ValueError: a bad CSV (see :func:`load_labels_csv`), a label out of range, an image
            without a label, an unreadable or too large image (named).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = pathlib.Path(tmp)
        ...     for name in ("cat.png", "dog.png"):
        ...         Image.new("RGB", (4, 4)).save(root / name)
        ...     _ = (root / "labels.csv").write_text("file,label\\ndog.png,1000\\ncat.png,1\\n")
        ...     data = load_labelled_folder(root, root / "labels.csv", label_base=1,
        ...                                 num_classes=1000)
        >>> data.images.shape, data.labels.tolist(), data.names
        ((2, 4, 4, 3), [0, 999], ['cat.png', 'dog.png'])
    """
    label_base = _check_label_base(label_base)
    target = _check_size(size)
    max_pixels = _check_max_pixels(max_pixels)
    if limit is not None:
        limit = v.check_int_at_least(limit, "limit", 1)
    files = list_images(directory, extensions)
    if not files:
        raise ValueError(f"no images with extensions {tuple(extensions)} in {str(directory)!r}")
    if limit is not None:
        files = files[:limit]
    names = [p.name for p in files]
    labels = load_labels_csv(labels_csv, names, num_classes, label_base=label_base)
    folder = load_image_folder(
        directory, target, extensions=extensions, limit=len(files), max_pixels=max_pixels
    )
    if folder.file_names != names:  # pragma: no cover - the folder changed while reading
        raise ValueError(f"the images of {str(directory)!r} changed while being read")
    logger.info("labelled %d images of %s from %s", len(names), directory, labels_csv)
    return LabelledImages(folder.images, labels, names)
