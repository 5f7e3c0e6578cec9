"""Tests of tfsmooth.data.samples (foolbox's sample photos) and labelled image folders."""

from __future__ import annotations

import csv
import importlib.util
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfsmooth.data import samples as samples_lib
from tfsmooth.data.folder import (
    LabelledImages,
    load_image_folder,
    load_labelled_folder,
    load_labels_csv,
    read_image,
)
from tfsmooth.data.samples import (
    SAMPLE_CLASSES,
    SAMPLE_DATASETS,
    Samples,
    load_samples,
    sample_datasets,
    samples_directory,
)

_HAS_FOOLBOX = importlib.util.find_spec("foolbox") is not None
needs_foolbox = pytest.mark.skipif(not _HAS_FOOLBOX, reason="foolbox==3.3.4 not installed")

_NATIVE = {
    "imagenet": (512, 512, 3),
    "cifar10": (32, 32, 3),
    "cifar100": (32, 32, 3),
    "mnist": (28, 28, 1),
    "fashionMNIST": (28, 28, 1),
}


# -- foolbox samples -------------------------------------------------------------------------------
@needs_foolbox
@pytest.mark.parametrize("dataset", SAMPLE_DATASETS)
def test_twenty_labelled_samples_per_dataset(dataset):
    limit = 3 if dataset == "imagenet" else None  # 20 JPEG decodes of 512x512 are slow-ish
    images, labels, names = load_samples(dataset, limit=limit)
    n = limit or 20
    assert images.shape == (n, *_NATIVE[dataset]) and images.dtype == np.float32
    assert labels.shape == (n,) and labels.dtype == np.int64
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.std() > 0.05
    assert labels.min() >= 0 and labels.max() < SAMPLE_CLASSES[dataset]
    assert len(names) == n and all(name.startswith(dataset + "_") for name in names)
    assert [int(Path(name).stem.split("_")[-1]) for name in names] == labels.tolist()
    assert [int(name.split("_")[1]) for name in names] == list(range(n))


@needs_foolbox
def test_all_twenty_imagenet_photos_resized_with_known_labels():
    data = load_samples("imagenet", size=(64, 64))
    assert isinstance(data, Samples) and Samples is LabelledImages
    assert data.images.shape == (20, 64, 64, 3)
    assert data.labels[:5].tolist() == [243, 559, 438, 990, 949]  # foolbox's own file labels
    assert len(set(data.labels.tolist())) >= 15


@needs_foolbox
def test_cifar10_is_not_confused_with_cifar100():
    assert all(not n.startswith("cifar100") for n in load_samples("cifar10").names)
    assert load_samples("cifar100").labels.max() >= 10


@needs_foolbox
def test_grayscale_samples_match_the_files_and_case_insensitive_name():
    images, labels, names = load_samples("FashionMnist", limit=2)
    raw = np.asarray(Image.open(samples_directory() / names[0]), np.float32) / 255.0
    np.testing.assert_allclose(images[0, ..., 0], raw, atol=1e-6)
    assert names[0].startswith("fashionMNIST_")
    assert load_samples("mnist", size=(14, 14), limit=1).images.shape == (1, 14, 14, 1)


@needs_foolbox
def test_sample_datasets_lists_installed_ones():
    assert sample_datasets() == SAMPLE_DATASETS
    assert samples_directory().is_dir()


@needs_foolbox
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dataset": "svhn"}, ValueError, "must be one of"),
        ({"dataset": 3}, ValueError, "must be one of"),
        ({"dataset": "mnist", "limit": 0}, ValueError, "limit"),
        ({"dataset": "mnist", "size": (0, 4)}, ValueError, "size"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        load_samples(**kwargs)


def test_missing_foolbox_gives_an_actionable_import_error(monkeypatch):
    def no_spec(name, *args):
        assert name == "foolbox"
        return None

    monkeypatch.setattr(samples_lib.importlib.util, "find_spec", no_spec)
    with pytest.raises(ImportError, match=r"pip install foolbox==3\.3\.4"):
        load_samples("mnist")
    with pytest.raises(ImportError, match="foolbox is not installed"):
        sample_datasets()


def test_foolbox_without_data_folder(monkeypatch, tmp_path):
    (tmp_path / "foolbox").mkdir()
    origin = tmp_path / "foolbox" / "__init__.py"
    origin.write_text("")

    class Spec:
        submodule_search_locations = [str(tmp_path / "foolbox")]
        origin = str(tmp_path / "foolbox" / "__init__.py")

    monkeypatch.setattr(samples_lib.importlib.util, "find_spec", lambda name, *a: Spec())
    with pytest.raises(ImportError, match="no data/ folder"):
        load_samples("mnist")


def test_samples_from_a_fake_install_do_not_import_foolbox(monkeypatch, tmp_path):
    data = tmp_path / "foolbox" / "data"
    data.mkdir(parents=True)
    for index, label in enumerate([3, 0, 9]):
        Image.new("L", (28, 28), 10 * index).save(data / f"mnist_{index:02d}_{label}.png")
    Image.new("RGB", (32, 32)).save(data / "cifar10_00_12.png")  # label out of range
    Image.new("L", (28, 28)).save(data / "notes_a.png")  # not a sample name: ignored

    class Spec:
        origin = str(data.parent / "__init__.py")
        submodule_search_locations = None

    monkeypatch.setattr(samples_lib.importlib.util, "find_spec", lambda name, *a: Spec())
    images, labels, names = load_samples("mnist")
    assert labels.tolist() == [3, 0, 9] and images.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(images[2], 20 / 255, atol=1e-6)
    assert sample_datasets() == ("cifar10", "mnist")
    with pytest.raises(ValueError, match=r"label 12, expected 0\.\.9"):
        load_samples("cifar10")
    with pytest.raises(ValueError, match="no 'imagenet' sample files"):
        load_samples("imagenet")


# -- labelled folders ------------------------------------------------------------------------------
def _folder(tmp_path: Path, names=("a.png", "b.png", "c.png")) -> Path:
    root = tmp_path / "images"
    root.mkdir()
    for index, name in enumerate(names):
        Image.new("RGB", (6, 5), (40 * index, 0, 0)).save(root / name)
    return root


def test_labelled_folder_zero_based(tmp_path):
    root = _folder(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\nc.png,9\na.png,0\nb.png,4\nunused.png,1\n")
    data = load_labelled_folder(root, labels, label_base=0, num_classes=10)
    assert isinstance(data, LabelledImages)
    assert data.names == ["a.png", "b.png", "c.png"]
    assert data.labels.tolist() == [0, 4, 9] and data.labels.dtype == np.int64
    assert data.images.shape == (3, 5, 6, 3) and data.images.dtype == np.float32
    np.testing.assert_allclose(data.images[2, 0, 0], [80 / 255, 0, 0], atol=1e-6)
    resized = load_labelled_folder(root, labels, label_base=0, size=(4, 4), limit=2)
    assert resized.images.shape == (2, 4, 4, 3) and resized.labels.tolist() == [0, 4]
    with pytest.raises(ValueError, match=r"label must be in 0\.\.8, got 9"):
        load_labelled_folder(root, labels, label_base=0, num_classes=9)


def test_labelled_folder_one_based_nips17_convention(tmp_path):
    root = _folder(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("label,file\n1000,c.png\n1,a.png\n306,b.png\n")
    data = load_labelled_folder(root, labels, label_base=1, num_classes=1000)
    assert data.labels.tolist() == [0, 305, 999]
    labels.write_text("file,label\na.png,0\nb.png,1\nc.png,2\n")
    with pytest.raises(
        ValueError, match=r"1\.\.1000 \(label_base=1\), got 0 \(0 is the background"
    ):
        load_labelled_folder(root, labels, label_base=1, num_classes=1000)
    labels.write_text("file,label\na.png,1\nb.png,1001\nc.png,2\n")
    with pytest.raises(ValueError, match=r"line 3: label must be in 1\.\.1000"):
        load_labelled_folder(root, labels, label_base=1, num_classes=1000)


def test_label_base_is_required_and_checked(tmp_path):
    root = _folder(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\na.png,0\nb.png,1\nc.png,2\n")
    with pytest.raises(TypeError):
        load_labelled_folder(root, labels)  # type: ignore[call-arg]
    for bad in (2, -1, True, "1", None):
        with pytest.raises(ValueError, match="label_base"):
            load_labelled_folder(root, labels, label_base=bad)


def test_labels_csv_errors(tmp_path):
    root = _folder(tmp_path)
    labels = tmp_path / "labels.csv"
    cases = {
        "file,label,extra\na.png,1,x\n": r"unknown: \['extra'\]",
        "file,label\na.png,cat\n": "integer",
        "file,label\na.png,-1\n": r"label must be in >= 0, got -1",
        "file,label\na.png,1\na.png,2\n": "twice",
        "file,label\na.png,1\nb.png,2\n": r"no row for 1 image\(s\): c.png",
    }
    for text, message in cases.items():
        labels.write_text(text)
        with pytest.raises(ValueError, match=message):
            load_labelled_folder(root, labels, label_base=0)
    with pytest.raises(FileNotFoundError, match="labels CSV"):
        load_labelled_folder(root, tmp_path / "none.csv", label_base=0)
    labels.write_bytes(b"file,label\n\xff\xfe,1\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_labels_csv(labels, ["a.png"])


def test_oversize_csv_field_is_a_one_line_value_error(tmp_path):
    root = _folder(tmp_path)
    labels = tmp_path / "labels.csv"
    huge = "x" * (csv.field_size_limit() + 10)
    labels.write_text(f"file,label\na.png,1\n{huge}.png,2\nc.png,3\n")
    with pytest.raises(ValueError, match=r"line 3: field larger than field limit") as info:
        load_labelled_folder(root, labels, label_base=0)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    assert "field_size_limit" in str(info.value)
    labels.write_text(f"file,{huge}\n")
    with pytest.raises(ValueError, match="line 1: field larger"):
        load_labels_csv(labels, ["a.png"])


def test_unreadable_image_names_the_file(tmp_path):
    root = _folder(tmp_path)
    (root / "b.png").write_bytes(b"this is not a png")
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\na.png,0\nb.png,1\nc.png,2\n")
    with pytest.raises(ValueError, match=r"b\.png") as info:
        load_labelled_folder(root, labels, label_base=0)
    assert "\n" not in str(info.value)
    # a truncated PNG: valid header, data cut off
    noise = np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "b.png")
    good = (root / "b.png").read_bytes()
    (root / "b.png").write_bytes(good[: int(len(good) * 0.8)])
    with pytest.raises(ValueError, match=r"could not read image .*b\.png") as info:
        load_labelled_folder(root, labels, label_base=0)
    assert "\n" not in str(info.value)


def _png_declaring(path: Path, width: int, height: int) -> None:
    """A tiny PNG whose header declares ``width x height`` 1-bit pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit grayscale
    rows = zlib.compress(b"\x00" * 64)  # far fewer rows than declared: never decoded anyway
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


def test_decompression_bomb_is_refused_before_decoding(tmp_path):
    root = _folder(tmp_path)
    _png_declaring(root / "b.png", 20000, 20000)  # 4e8 pixels > 2 * PIL.Image.MAX_IMAGE_PIXELS
    assert (root / "b.png").stat().st_size < 200
    labels = tmp_path / "labels.csv"
    labels.write_text("file,label\na.png,0\nb.png,1\nc.png,2\n")
    with pytest.raises(ValueError, match=r"b\.png.*decompression bomb") as info:
        load_labelled_folder(root, labels, label_base=0)
    assert "\n" not in str(info.value)
    # our own cap (DEFAULT_MAX_PIXELS = 64 Mpixel), below Pillow's: 9000 x 9000 = 8.1e7 pixels
    _png_declaring(root / "b.png", 9000, 9000)
    with pytest.raises(ValueError, match=r"9000x9000 = 81000000 pixels, more than max_pixels"):
        load_image_folder(root)
    # and a cap chosen by the caller on a real small image
    with pytest.raises(ValueError, match=r"a\.png.*6x5 = 30 pixels, more than max_pixels = 29"):
        read_image(root / "a.png", max_pixels=29)
    assert read_image(root / "a.png", max_pixels=30).shape == (5, 6, 3)


def test_pillow_limit_applies_when_our_cap_is_off(tmp_path, monkeypatch):
    _png_declaring(tmp_path / "big.png", 200, 100)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10_000)  # PIL.Image, as read_image sees it
    with pytest.raises(ValueError, match=r"more than PIL\.Image\.MAX_IMAGE_PIXELS = 10000"):
        read_image(tmp_path / "big.png", max_pixels=None)
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(tmp_path / "big.png", max_pixels=0)
