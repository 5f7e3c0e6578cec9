"""Tests of tfsmooth.data.nips17 on small generated copies of the dev set layout."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfsmooth.data.nips17 import (
    KNOWN_COLUMNS,
    Nips17Dataset,
    iter_nips17_batches,
    load_nips17,
)

IDS = ["0c7ac4a8c9dfa802", "0e0d5d3e3dc1a66c", "1a3e6a2e8d6c8c30", "2b4d0ed6b8b1c0a9", "3f1c"]
LABELS = [306, 1, 1000, 42, 7]
TARGETS = [73, 500, 2, 999, 1000]


def _color(index: int) -> tuple[int, int, int]:
    return (10 * index, 255 - 20 * index, 3 * index + 1)


def _write(
    root: Path,
    *,
    csv_name: str = "dev_dataset.csv",
    columns: tuple[str, ...] = KNOWN_COLUMNS,
    rows: list[dict[str, object]] | None = None,
    image_dir: str = "",
    size: tuple[int, int] = (299, 299),
) -> Path:
    """A dev-set copy: CSV with ``columns`` and one solid PNG per row."""
    root.mkdir(parents=True, exist_ok=True)
    if rows is None:
        rows = [
            {"ImageId": i, "TrueLabel": y, "TargetClass": t, "URL": f"https://x/{i}.jpg"}
            for i, y, t in zip(IDS, LABELS, TARGETS)
        ]
    with open(root / csv_name, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "0") for c in columns})
    (root / image_dir).mkdir(exist_ok=True)
    for index, row in enumerate(rows):
        Image.new("RGB", size, _color(index)).save(root / image_dir / f"{row['ImageId']}.png")
    return root


def test_load_full_dev_csv(tmp_path):
    _write(tmp_path)
    data = load_nips17(tmp_path)
    assert isinstance(data, Nips17Dataset) and len(data) == 5
    assert data.images.shape == (5, 299, 299, 3) and data.images.dtype == np.float32
    assert data.labels.dtype == np.int64 and data.target_labels.dtype == np.int64
    assert data.labels.tolist() == LABELS  # TrueLabel as in the file (1001-class convention)
    assert data.target_labels.tolist() == TARGETS
    assert data.image_ids == IDS  # CSV order
    for index in range(5):
        np.testing.assert_allclose(data.images[index, 100, 200], np.array(_color(index)) / 255.0)
    assert "dev_dataset.csv" in data.source
    assert "n=5" in repr(data)


def test_images_csv_minimal_columns_and_images_subdir(tmp_path):
    _write(
        tmp_path,
        csv_name="images.csv",
        columns=("ImageId", "TrueLabel", "TargetClass"),
        image_dir="images",
    )
    data = load_nips17(tmp_path)
    assert data.image_ids == IDS and data.labels.tolist() == LABELS
    assert "images.csv" in data.source


def test_csv_path_and_limit(tmp_path):
    _write(tmp_path)
    data = load_nips17(tmp_path / "dev_dataset.csv", limit=2)
    assert data.image_ids == IDS[:2] and data.images.shape[0] == 2


def test_dev_dataset_csv_is_preferred(tmp_path):
    _write(tmp_path)
    (tmp_path / "images.csv").write_text("ImageId,TrueLabel,TargetClass\nnothing,1,1\n")
    assert load_nips17(tmp_path).image_ids == IDS


def test_iter_batches_matches_load(tmp_path):
    _write(tmp_path)
    batches = list(iter_nips17_batches(tmp_path, batch_size=2))
    assert [len(b) for b in batches] == [2, 2, 1]
    whole = load_nips17(tmp_path)
    np.testing.assert_array_equal(np.concatenate([b.images for b in batches]), whole.images)
    assert sum((b.image_ids for b in batches), []) == whole.image_ids
    np.testing.assert_array_equal(np.concatenate([b.labels for b in batches]), whole.labels)
    assert [len(b) for b in iter_nips17_batches(tmp_path, 4, limit=3)] == [3]


def test_iter_checks_eagerly(tmp_path):
    _write(tmp_path)
    (tmp_path / f"{IDS[3]}.png").unlink()
    with pytest.raises(FileNotFoundError, match=IDS[3]):
        iter_nips17_batches(tmp_path, 2)  # before any batch is requested
    with pytest.raises(ValueError, match="batch_size"):
        iter_nips17_batches(tmp_path, 0)


def test_missing_required_column(tmp_path):
    _write(tmp_path, columns=("ImageId", "URL", "TrueLable", "TargetClass"))
    with pytest.raises(
        ValueError, match=r"dev_dataset.csv.*\['TrueLabel'\].*unknown: \['TrueLable'\]"
    ):
        load_nips17(tmp_path)


def test_unknown_extra_column_is_an_error(tmp_path):
    _write(tmp_path, columns=("ImageId", "TrueLabel", "TargetClass", "Notes"))
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['Notes'\]"):
        load_nips17(tmp_path)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("TrueLabel", 0, r"line 3: TrueLabel must lie in 1..1000.*got 0"),
        ("TrueLabel", 1001, r"line 3: TrueLabel must lie in 1..1000.*got 1001"),
        ("TargetClass", -5, r"line 3: TargetClass must lie in 1..1000"),
        ("TrueLabel", "cat", r"line 3: TrueLabel must be an integer, got 'cat'"),
        ("TrueLabel", "", r"line 3: empty TrueLabel"),
        ("ImageId", "../up", r"line 3: bad ImageId"),
        ("ImageId", IDS[0], r"line 3: ImageId '0c7ac4a8c9dfa802' already on line 2"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, field, value, message):
    rows = [
        {"ImageId": i, "TrueLabel": y, "TargetClass": t}
        for i, y, t in zip(IDS[:3], LABELS, TARGETS)
    ]
    _write(tmp_path, rows=rows)  # images of the good ids
    rows[1][field] = value
    with open(tmp_path / "dev_dataset.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["ImageId", "TrueLabel", "TargetClass"])
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(ValueError, match=message) as info:
        load_nips17(tmp_path)
    assert "dev_dataset.csv" in str(info.value)


def test_short_row(tmp_path):
    _write(tmp_path, columns=("ImageId", "TrueLabel", "TargetClass"))
    with open(tmp_path / "dev_dataset.csv", "a") as handle:
        handle.write("lonely,5\n")
    with pytest.raises(ValueError, match="line 7: expected 3 fields"):
        load_nips17(tmp_path)


def test_missing_image_names_id_line_and_places(tmp_path):
    _write(tmp_path)
    (tmp_path / f"{IDS[2]}.png").unlink()
    with pytest.raises(FileNotFoundError) as info:
        load_nips17(tmp_path)
    message = str(info.value)
    assert IDS[2] in message and "line 4" in message
    assert str(tmp_path / "images" / f"{IDS[2]}.png") in message


def test_wrong_image_size_is_named(tmp_path):
    _write(tmp_path)
    Image.new("RGB", (300, 299)).save(tmp_path / f"{IDS[1]}.png")
    with pytest.raises(ValueError, match=rf"{IDS[1]}.png.*299x300, expected 299x299"):
        load_nips17(tmp_path)


def test_grayscale_image_is_converted(tmp_path):
    _write(tmp_path)
    Image.new("L", (299, 299), 255).save(tmp_path / f"{IDS[0]}.png")
    data = load_nips17(tmp_path, limit=1)
    np.testing.assert_allclose(data.images[0, 0, 0], [1.0, 1.0, 1.0])


def test_missing_directory_or_csv(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_nips17(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="dev_dataset.csv or images.csv"):
        load_nips17(tmp_path)


def test_header_only_csv(tmp_path):
    (tmp_path / "images.csv").write_text("ImageId,TrueLabel,TargetClass\n")
    with pytest.raises(ValueError, match="no data rows"):
        load_nips17(tmp_path)


def test_bad_arguments(tmp_path):
    _write(tmp_path)
    with pytest.raises(ValueError, match="limit"):
        load_nips17(tmp_path, limit=0)
    with pytest.raises(TypeError):
        load_nips17(3)  # type: ignore[arg-type]
