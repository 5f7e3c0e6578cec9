"""The NIPS 2017 adversarial competition development set (1000 ImageNet-like images, 299x299).

The paper's ImageNet experiments (section 5) use this set. It is not downloaded by tfsmooth: get
it once (e.g. with the competition's ``download_images.py``, in the CleverHans repository under
``examples/nips17_adversarial_competition/dataset/``) and point :func:`load_nips17` at
the directory. Expected layout::

    <directory>/dev_dataset.csv     (or images.csv)
    <directory>/<ImageId>.png       (or <directory>/images/<ImageId>.png)

The CSV has the columns ``ImageId,URL,x1,y1,x2,y2,y3,y4,TrueLabel,TargetClass,
OriginalLandingURL,License,Author,AuthorProfileURL``; only ``ImageId``, ``TrueLabel`` and
``TargetClass`` are required. Labels follow the 1001-class convention of the TF-slim / TF-Hub
ImageNet models: 1..1000, with 0 the background class (so they index the logits of
:func:`tfsmooth.models.hub.load_hub_model` and :func:`tfsmooth.models.slim.load_slim_inception_v3`
directly).
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from tfsmooth import _validation as v
from tfsmooth.data.folder import read_image

logger = logging.getLogger(__name__)

__all__ = [
    "CSV_NAMES",
    "IMAGE_SIZE",
    "KNOWN_COLUMNS",
    "REQUIRED_COLUMNS",
    "Nips17Dataset",
    "iter_nips17_batches",
    "load_nips17",
]

#: CSV file names looked for, in this order.
CSV_NAMES = ("dev_dataset.csv", "images.csv")
#: Columns that must be present.
REQUIRED_COLUMNS = ("ImageId", "TrueLabel", "TargetClass")
#: All columns of the competition's ``dev_dataset.csv``.
KNOWN_COLUMNS = (
    "ImageId",
    "URL",
    "x1",
    "y1",
    "x2",
    "y2",
    "y3",
    "y4",
    "TrueLabel",
    "TargetClass",
    "OriginalLandingURL",
    "License",
    "Author",
    "AuthorProfileURL",
)
#: ``(height, width)`` of every image of the set.
IMAGE_SIZE = (299, 299)
_LABEL_RANGE = (1, 1000)


@dataclasses.dataclass(repr=False)
class Nips17Dataset:
    """Images and labels of (part of) the NIPS 2017 dev set.

    Attributes:
        images: float32 ``[N, 299, 299, 3]`` in ``[0, 1]``.
        labels: int64 ``[N]``, the ``TrueLabel`` column, 1..1000 (0 = background).
        target_labels: int64 ``[N]``, the ``TargetClass`` column (for targeted attacks).
        image_ids: the N ``ImageId`` strings.
        source: where the data came from (the CSV file).
    """

    images: np.ndarray
    labels: np.ndarray
    target_labels: np.ndarray
    image_ids: list[str]
    source: str

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        return (
            f"Nips17Dataset(n={len(self)}, images={self.images.dtype}{list(self.images.shape)}, "
            f"source={self.source!r})"
        )


@dataclasses.dataclass(frozen=True)
class _Row:
    image_id: str
    label: int
    target: int
    line: int
    path: Path


def _find_csv(directory: Path) -> Path:
    if directory.is_file():
        return directory
    if not directory.is_dir():
        raise FileNotFoundError(
            f"NIPS 2017 directory {str(directory)!r} not found; download the dev set (images and "
            f"dev_dataset.csv) and pass its directory"
        )
    for name in CSV_NAMES:
        if (directory / name).is_file():
            return directory / name
    raise FileNotFoundError(
        f"no {' or '.join(CSV_NAMES)} in {str(directory)!r}; expected the NIPS 2017 dev set "
        f"layout <dir>/dev_dataset.csv + <dir>/<ImageId>.png (or <dir>/images/<ImageId>.png)"
    )


def _parse_label(text: str | None, column: str, csv_path: Path, line: int) -> int:
    where = f"{str(csv_path)!r} line {line}"
    if text is None or not text.strip():
        raise ValueError(f"{where}: empty {column}")
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{where}: {column} must be an integer, got {text!r}") from None
    low, high = _LABEL_RANGE
    if not low <= value <= high:
        raise ValueError(
            f"{where}: {column} must lie in {low}..{high} (1001-class convention, 0 = "
            f"background), got {value}"
        )
    return value


def _read_index(directory: str | os.PathLike[str], limit: int | None) -> tuple[Path, list[_Row]]:
    """Parses and checks the CSV, and locates every image file (without reading it)."""
    if not isinstance(directory, (str, os.PathLike)):
        raise TypeError(f"`directory` must be a path, got {type(directory).__name__}")
    if limit is not None:
        limit = v.check_int_at_least(limit, "limit", 1)
    csv_path = _find_csv(Path(directory).expanduser())
    image_dirs = [csv_path.parent, csv_path.parent / "images"]
    rows: list[_Row] = []
    seen: dict[str, int] = {}
    with open(csv_path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in REQUIRED_COLUMNS if c not in columns]
        unknown = [c for c in columns if c not in KNOWN_COLUMNS]
        if missing:
            raise ValueError(
                f"{str(csv_path)!r} lacks the column(s) {missing}; expected at least "
                f"{list(REQUIRED_COLUMNS)}, got {columns}"
                + (f" (unknown: {unknown})" if unknown else "")
            )
        if unknown:
            raise ValueError(
                f"{str(csv_path)!r} has unknown column(s) {unknown}; expected columns of the "
                f"NIPS 2017 dev set {list(KNOWN_COLUMNS)} (at least {list(REQUIRED_COLUMNS)})"
            )
        reader.fieldnames = columns
        for record in reader:
            line = reader.line_num
            if None in record or any(record.get(c) is None for c in columns):
                raise ValueError(
                    f"{str(csv_path)!r} line {line}: expected {len(columns)} fields "
                    f"({', '.join(columns)}), got a row of another length"
                )
            image_id = (record["ImageId"] or "").strip()
            if not image_id or "/" in image_id or "\\" in image_id or image_id in (".", ".."):
                raise ValueError(f"{str(csv_path)!r} line {line}: bad ImageId {image_id!r}")
            if image_id in seen:
                raise ValueError(
                    f"{str(csv_path)!r} line {line}: ImageId {image_id!r} already on line "
                    f"{seen[image_id]}"
                )
            seen[image_id] = line
            label = _parse_label(record["TrueLabel"], "TrueLabel", csv_path, line)
            target = _parse_label(record["TargetClass"], "TargetClass", csv_path, line)
            candidates = [d / f"{image_id}.png" for d in image_dirs]
            path = next((p for p in candidates if p.is_file()), None)
            if path is None:
                raise FileNotFoundError(
                    f"image of {str(csv_path)!r} line {line} (ImageId {image_id!r}) not found: "
                    f"looked for {' and '.join(str(p) for p in candidates)}"
                )
            rows.append(_Row(image_id, label, target, line, path))
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"{str(csv_path)!r} has no data rows")
    return csv_path, rows


def _load_rows(rows: list[_Row], source: str) -> Nips17Dataset:
    images = np.empty((len(rows), *IMAGE_SIZE, 3), np.float32)
    for index, row in enumerate(rows):
        image = read_image(row.path)
        if image.shape[:2] != IMAGE_SIZE:
            raise ValueError(
                f"{str(row.path)!r} (ImageId {row.image_id!r}) is {image.shape[0]}x"
                f"{image.shape[1]}, expected {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]} (height x width) "
                f"like every image of the NIPS 2017 dev set"
            )
        images[index] = image
    return Nips17Dataset(
        images=images,
        labels=np.array([r.label for r in rows], np.int64),
        target_labels=np.array([r.target for r in rows], np.int64),
        image_ids=[r.image_id for r in rows],
        source=source,
    )


def load_nips17(directory: str | os.PathLike[str], *, limit: int | None = None) -> Nips17Dataset:
    """Loads the NIPS 2017 dev set (or its first ``limit`` rows) into memory.

    The whole set is 1000 images, about 1 GiB as float32; use :func:`iter_nips17_batches` to
    stream it instead.

    Args:
        directory: the data set directory (or the CSV file itself); see the module docstring for
            the layout.
        limit: keep only the first ``limit`` rows of the CSV.

    Returns:
        :class:`Nips17Dataset`, in CSV order.

    Raises:
        FileNotFoundError: no directory / CSV, or an image file is missing (named, with its row).
        ValueError: missing columns, a malformed row, a label outside 1..1000, a duplicate
            ImageId, an unreadable image or one not 299x299 (named).

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = pathlib.Path(tmp)
        ...     _ = (root / "images.csv").write_text("ImageId,TrueLabel,TargetClass\\nabc,306,7\\n")
        ...     Image.new("RGB", (299, 299), (0, 128, 255)).save(root / "abc.png")
        ...     data = load_nips17(root)
        >>> data.images.shape, data.labels.tolist(), data.target_labels.tolist(), data.image_ids
        ((1, 299, 299, 3), [306], [7], ['abc'])
    """
    csv_path, rows = _read_index(directory, limit)
    data = _load_rows(rows, source=f"NIPS 2017 dev set ({csv_path})")
    logger.info("loaded %d NIPS 2017 images from %s", len(data), csv_path)
    return data


def iter_nips17_batches(
    directory: str | os.PathLike[str], batch_size: int, *, limit: int | None = None
) -> Iterator[Nips17Dataset]:
    """Streams the NIPS 2017 dev set in batches (the last one may be smaller).

    The arguments, the CSV and the presence of every image file are checked when this function
    is called, so a broken data set fails at once rather than after hours of attacks; images are
    read (and their size checked) batch by batch.

    Args:
        directory: as in :func:`load_nips17`.
        batch_size: images per batch.
        limit: stop after the first ``limit`` rows.

    Yields:
        :class:`Nips17Dataset` batches, in CSV order.

    Example:
        >>> import tempfile, pathlib
        >>> from PIL import Image
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     root = pathlib.Path(tmp)
        ...     (root / "images").mkdir()
        ...     rows = "".join(f"im{i},{i + 1},{i + 2}\\n" for i in range(3))
        ...     _ = (root / "images.csv").write_text("ImageId,TrueLabel,TargetClass\\n" + rows)
        ...     for i in range(3):
        ...         Image.new("RGB", (299, 299)).save(root / "images" / f"im{i}.png")
        ...     print([b.image_ids for b in iter_nips17_batches(root, batch_size=2)])
        [['im0', 'im1'], ['im2']]
    """
    batch_size = v.check_int_at_least(batch_size, "batch_size", 1)
    csv_path, rows = _read_index(directory, limit)  # checked now, not at the first next()
    return _batches(rows, batch_size, f"NIPS 2017 dev set ({csv_path})")


def _batches(rows: list[_Row], batch_size: int, source: str) -> Iterator[Nips17Dataset]:
    for start in range(0, len(rows), batch_size):
        yield _load_rows(rows[start : start + batch_size], source=source)
