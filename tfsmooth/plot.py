"""Figures: operating characteristics (paper Fig. 2–3) and image grids (Fig. 4–5).

matplotlib is optional (``pip install tfsmooth[plot]``); it is imported inside the functions,
with the non-interactive ``Agg`` backend.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["plot_image_grid", "plot_operating_characteristics"]


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "tfsmooth.plot needs matplotlib: pip install matplotlib (or tfsmooth[plot])"
        ) from err
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _curve(result: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(result, "operating_characteristic"):
        thresholds, probabilities = result.operating_characteristic()
    else:
        thresholds, probabilities = result
    return np.asarray(thresholds, np.float64), np.asarray(probabilities, np.float64)


def plot_operating_characteristics(
    results_by_attack: dict[str, Any],
    path: str | os.PathLike[str],
    title: str | None = None,
    *,
    max_distortion: float | None = None,
) -> pathlib.Path:
    """Draws :math:`P(D)` against :math:`D` for several attacks (paper Fig. 2) into a PNG.

    Args:
        results_by_attack: ``{attack name: result}``, each result an
            :class:`~tfsmooth.evaluation.EvaluationResult` or a pair ``(thresholds,
            probabilities)`` as returned by
            :func:`~tfsmooth.evaluation.metrics.operating_characteristic`.
        path: output file (PNG, or any format matplotlib infers from the suffix).
        title: figure title.
        max_distortion: right end of the D axis (default: the largest threshold).

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     p = plot_operating_characteristics({"A": ([1.0, 2.0], [0.5, 1.0])}, tmp + "/oc.png")
        ...     p.stat().st_size > 0
        True
    """
    if not isinstance(results_by_attack, dict) or not results_by_attack:
        raise ValueError("`results_by_attack` must be a non-empty dict {attack: result}")
    plt = _pyplot()
    curves = {name: _curve(r) for name, r in results_by_attack.items()}
    right = max_distortion
    if right is None:
        ends = [c[0][-1] for c in curves.values() if c[0].size]
        right = max(ends) * 1.05 if ends else 1.0
    figure, axes = plt.subplots(figsize=(5, 3.5))
    try:
        for name, (thresholds, probabilities) in curves.items():
            x = np.concatenate([[0.0], thresholds, [right]])
            y = np.concatenate(
                [[0.0], probabilities, [probabilities[-1] if probabilities.size else 0.0]]
            )
            axes.step(x, y, where="post", label=name)
        axes.set_xlim(0.0, right)
        axes.set_ylim(0.0, 1.02)
        axes.set_xlabel("distortion D (L2)")
        axes.set_ylabel("P(D)")
        if title:
            axes.set_title(title)
        axes.grid(True, alpha=0.3)
        axes.legend(loc="lower right", fontsize="small")
        figure.tight_layout()
        path = pathlib.Path(path)
        figure.savefig(path, dpi=120)
    finally:
        plt.close(figure)
    return path


def _displayable(image: Any) -> tuple[np.ndarray, dict[str, Any]]:
    array = np.asarray(image, dtype=np.float64)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3):
        raise ValueError(f"each image must be [H, W] or [H, W, C], got shape {array.shape}")
    low, high = float(np.min(array)), float(np.max(array))
    if low < 0.0 or high > 1.0:  # a perturbation: scale to [0, 1] as the paper's figures do
        span = high - low
        array = (array - low) / span if span > 0 else np.zeros_like(array) + 0.5
    options = {"cmap": "gray", "vmin": 0.0, "vmax": 1.0} if array.ndim == 2 else {}
    return array, options


def plot_image_grid(
    rows_of_images: Any,
    path: str | os.PathLike[str],
    titles: Any = None,
    *,
    scale: float = 1.6,
) -> pathlib.Path:
    """Draws rows of images (e.g. original / adversarial / perturbation, Fig. 5) into a PNG.

    Images in ``[0, 1]`` are drawn as they are; any other image (a perturbation) is scaled to
    ``[0, 1]`` first, as in the paper's figures.

    Args:
        rows_of_images: a list of rows, each a list of images ``[H, W]``, ``[H, W, 1]`` or
            ``[H, W, 3]``; rows may have different lengths.
        path: output file.
        titles: optional list of rows of titles (same layout), or ``None``.
        scale: inches per image.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     p = plot_image_grid([[np.zeros([4, 4]), np.ones([4, 4, 1]) - 0.5]], tmp + "/g.png",
        ...                         [["a", "b"]])
        ...     p.exists()
        True
    """
    rows = [list(r) for r in rows_of_images]
    if not rows or not any(rows):
        raise ValueError("`rows_of_images` must hold at least one image")
    if titles is not None:
        titles = [list(t) for t in titles]
        if len(titles) != len(rows) or any(len(t) != len(r) for t, r in zip(titles, rows)):
            raise ValueError("`titles` must have the layout of `rows_of_images`")
    plt = _pyplot()
    columns = max(len(r) for r in rows)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(scale * columns, scale * len(rows) + 0.3), squeeze=False
    )
    try:
        for i, row in enumerate(rows):
            for j in range(columns):
                ax = axes[i][j]
                ax.axis("off")
                if j >= len(row):
                    continue
                array, options = _displayable(row[j])
                ax.imshow(array, **options)
                if titles is not None:
                    ax.set_title(str(titles[i][j]), fontsize=7)
        figure.tight_layout()
        path = pathlib.Path(path)
        figure.savefig(path, dpi=120)
    finally:
        plt.close(figure)
    return path
