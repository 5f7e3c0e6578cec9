"""The documentation's figure script and committed figure."""

from __future__ import annotations

import importlib.util
import pathlib

import numpy as np
import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


def _load_make_figures():
    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_figure_is_a_small_png():
    path = DOCS / "_static" / "smoothing.png"
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) < 300 * 1024


def test_to_display_is_symmetric_around_mid_grey():
    to_display = _load_make_figures().to_display
    shown = to_display(np.array([-2.0, 0.0, 1.0]))
    np.testing.assert_allclose(shown, [0.0, 0.5, 0.75])
    np.testing.assert_allclose(to_display(np.zeros(3)), 0.5)


def test_smoothing_figure_writes_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("skimage")
    out = tmp_path / "figure.png"
    _load_make_figures().smoothing_figure(out, size=24)
    assert out.read_bytes()[:4] == b"\x89PNG"
    from PIL import Image

    with Image.open(out) as image:
        assert image.width > 4 * 24 and image.height > 24
