"""Figures are written as PNG files."""

import numpy as np
import pytest

from tfsmooth import plot
from tfsmooth.evaluation import EvaluationResult

pytest.importorskip("matplotlib")


def _is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_operating_characteristics_png(tmp_path):
    result = EvaluationResult.from_records(
        [
            dict(
                index=i,
                label=0,
                correct=True,
                success=i < 3,
                l2=float(i + 1) if i < 3 else None,
                linf=None,
                best_epsilon=None,
                adv_label=1,
                seconds=0.1,
            )
            for i in range(4)
        ],
        n0=4,
        model="m",
        attack="A",
    )
    path = plot.plot_operating_characteristics(
        {"A": result, "B": ([0.5, 2.0], [0.2, 0.9]), "C": (np.zeros(0), np.zeros(0))},
        tmp_path / "oc.png",
        title="t",
    )
    assert _is_png(path)
    with pytest.raises(ValueError):
        plot.plot_operating_characteristics({}, tmp_path / "x.png")


def test_image_grid_png(tmp_path):
    x = np.random.default_rng(0).uniform(size=[8, 8, 1])
    path = plot.plot_image_grid(
        [[x, x - 0.5], [x[..., 0]]], tmp_path / "g.png", [["a", "b"], ["c"]]
    )
    assert _is_png(path)
    with pytest.raises(ValueError, match="layout"):
        plot.plot_image_grid([[x]], tmp_path / "g.png", [["a", "b"]])
    with pytest.raises(ValueError, match="shape"):
        plot.plot_image_grid([[np.zeros(3)]], tmp_path / "g.png")
