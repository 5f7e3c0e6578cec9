"""Tests of tfsmooth.data.folder on small generated image folders."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tfsmooth.data.folder import ImageFolder, list_images, load_image_folder, read_image


def _solid(path: Path, size: tuple[int, int], color, mode: str = "RGB") -> None:
    """Writes a solid image of ``size`` = (width, height)."""
    Image.new(mode, size, color).save(path)


def test_sorted_names_and_exact_values(tmp_path):
    _solid(tmp_path / "b.png", (5, 4), (10, 20, 30))
    _solid(tmp_path / "a.png", (5, 4), (255, 0, 128))
    _solid(tmp_path / "c.PNG", (5, 4), (0, 0, 0))
    result = load_image_folder(tmp_path)
    assert isinstance(result, ImageFolder)
    images, names = result
    assert names == ["a.png", "b.png", "c.PNG"]
    assert images.shape == (3, 4, 5, 3) and images.dtype == np.float32
    np.testing.assert_allclose(images[0], np.broadcast_to([1.0, 0.0, 128 / 255], (4, 5, 3)))
    np.testing.assert_allclose(images[1, 2, 3], [10 / 255, 20 / 255, 30 / 255], rtol=1e-6)
    assert images.min() >= 0.0 and images.max() <= 1.0


def test_different_sizes_without_size_name_the_odd_file(tmp_path):
    _solid(tmp_path / "a.png", (5, 4), "red")
    _solid(tmp_path / "b.png", (5, 4), "red")
    _solid(tmp_path / "odd.png", (6, 4), "red")
    with pytest.raises(ValueError, match=r"'odd.png' is 4x6 but 'a.png' is 4x5.*size="):
        load_image_folder(tmp_path)


def test_size_center_crops_then_resizes(tmp_path):
    # 12 wide x 6 high: red | green (6 columns in the middle) | blue
    pixels = np.zeros((6, 12, 3), np.uint8)
    pixels[:, :3, 0] = 255
    pixels[:, 3:9, 1] = 255
    pixels[:, 9:, 2] = 255
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    _solid(tmp_path / "tall.png", (3, 9), (0, 0, 255))
    images, names = load_image_folder(tmp_path, size=(6, 6))
    assert images.shape == (2, 6, 6, 3)
    np.testing.assert_allclose(
        images[names.index("wide.png")], np.broadcast_to([0, 1, 0], (6, 6, 3))
    )
    np.testing.assert_allclose(
        images[names.index("tall.png")], np.broadcast_to([0, 0, 1], (6, 6, 3))
    )


def test_resize_of_a_gradient_is_monotone_and_bounded(tmp_path):
    ramp = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (40, 1))
    Image.fromarray(ramp, mode="L").save(tmp_path / "ramp.png")
    images, _ = load_image_folder(tmp_path, size=(10, 10))
    row = images[0, 5, :, 0]
    assert np.all(np.diff(row) > 0)
    assert 0.0 <= row.min() < 0.1 and 0.9 < row.max() <= 1.0


@pytest.mark.parametrize(
    "mode, color, expected",
    [
        ("L", 51, [0.2, 0.2, 0.2]),
        ("LA", (51, 0), [0.2, 0.2, 0.2]),
        ("RGBA", (255, 0, 0, 0), [1.0, 0.0, 0.0]),  # alpha dropped, color kept
        ("1", 1, [1.0, 1.0, 1.0]),
    ],
)
def test_modes_become_rgb(tmp_path, mode, color, expected):
    _solid(tmp_path / "x.png", (3, 2), color, mode=mode)
    images, _ = load_image_folder(tmp_path)
    assert images.shape == (1, 2, 3, 3)
    np.testing.assert_allclose(images[0, 1, 2], expected, atol=1e-6)


def test_palette_image(tmp_path):
    image = Image.new("P", (4, 4))
    image.putpalette([0, 0, 0, 0, 255, 0] + [0] * 762)
    image.putpixel((1, 1), 1)
    image.save(tmp_path / "p.png")
    images, _ = load_image_folder(tmp_path)
    np.testing.assert_allclose(images[0, 1, 1], [0, 1, 0])
    np.testing.assert_allclose(images[0, 0, 0], [0, 0, 0])


def test_sixteen_bit_grayscale_is_scaled(tmp_path):
    values = np.full((3, 4), 65535 // 5, np.uint16)
    values[0, 0] = 65535
    Image.fromarray(values).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (3, 4, 3)
    np.testing.assert_allclose(image[1, 1], [0.2, 0.2, 0.2], atol=1e-4)
    np.testing.assert_allclose(image[0, 0], [1.0, 1.0, 1.0], atol=1e-6)


def test_jpeg_is_read_approximately(tmp_path):
    _solid(tmp_path / "j.jpg", (16, 16), (200, 100, 50))
    _solid(tmp_path / "k.jpeg", (16, 16), (200, 100, 50))
    images, names = load_image_folder(tmp_path)
    assert names == ["j.jpg", "k.jpeg"]
    np.testing.assert_allclose(images[:, 8, 8], [[200 / 255, 100 / 255, 50 / 255]] * 2, atol=0.03)


def test_filtering_extensions_hidden_and_subdirectories(tmp_path):
    _solid(tmp_path / "a.png", (2, 2), "white")
    _solid(tmp_path / "b.bmp", (2, 2), "white")
    _solid(tmp_path / ".hidden.png", (2, 2), "white")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    _solid(tmp_path / "sub" / "c.png", (2, 2), "white")
    assert [p.name for p in list_images(tmp_path)] == ["a.png"]
    _, names = load_image_folder(tmp_path, extensions=("png", ".BMP"))
    assert names == ["a.png", "b.bmp"]
    _, names = load_image_folder(tmp_path, extensions=".bmp")
    assert names == ["b.bmp"]


def test_limit(tmp_path):
    for i in range(4):
        _solid(tmp_path / f"{i}.png", (2, 2), (i, i, i))
    images, names = load_image_folder(tmp_path, limit=2)
    assert names == ["0.png", "1.png"] and images.shape[0] == 2
    with pytest.raises(ValueError):
        load_image_folder(tmp_path, limit=0)


def test_empty_folder_raises(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(tmp_path)
    (tmp_path / "readme.txt").write_text("")
    with pytest.raises(ValueError, match="no images"):
        load_image_folder(tmp_path)


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        load_image_folder(tmp_path / "absent")


def test_corrupt_image_is_named(tmp_path):
    _solid(tmp_path / "a.png", (2, 2), "white")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match="broken.png"):
        load_image_folder(tmp_path)


@pytest.mark.parametrize("size", [(0, 4), (4,), "44", (4, 4, 4)])
def test_bad_size(tmp_path, size):
    _solid(tmp_path / "a.png", (2, 2), "white")
    with pytest.raises(ValueError):
        load_image_folder(tmp_path, size=size)


def test_float_size_is_a_type_error(tmp_path):
    _solid(tmp_path / "a.png", (2, 2), "white")
    with pytest.raises(TypeError):
        load_image_folder(tmp_path, size=(2.0, 2))


def test_read_image_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "nope.png")


def test_logs_how_many(tmp_path, caplog):
    _solid(tmp_path / "a.png", (2, 2), "white")
    with caplog.at_level(logging.INFO, logger="tfsmooth.data.folder"):
        load_image_folder(tmp_path)
    assert "loaded 1 images" in caplog.text
