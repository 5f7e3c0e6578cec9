"""How invisible the adversarials are: per-image measures, PNG round trips, Fig. 1 panels.

:func:`photo_measure` is a ``measure`` for :func:`~tfsmooth.evaluation.protocol.evaluate_attack`:
for every successful adversarial of a batch it computes the perceptual metrics of
:func:`tfsmooth.metrics.perceptual_report` (PSNR, SSIM on luma, Dirichlet energy of the
perturbation per unit norm on the clean image's graph, total variation, magnification-based
visibility), writes the adversarial as an 8-bit PNG, reads it back and checks that the model is
still fooled (``png_adversarial``: 1 or 0). The reproduction's rows then carry their means
over the successes (``mean_psnr``, ..., ``mean_png_adversarial``).

:func:`magnified_panel` draws the paper's Fig. 1 on real photos: each photo, its adversarial
magnification (Appendix A) and the magnification of each attack's adversarial, from the PNGs
that :func:`photo_measure` wrote.
"""

from __future__ import annotations

import logging
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from tfsmooth.evaluation.driver import safe_name
from tfsmooth.evaluation.protocol import Measure
from tfsmooth.models.base import Model

logger = logging.getLogger(__name__)

__all__ = ["MEASURES", "adversarial_png", "magnified_panel", "photo_measure"]

#: The measures of :func:`photo_measure`, in report order.
MEASURES = (
    "psnr",
    "ssim_luma",
    "dirichlet_energy",
    "total_variation",
    "visibility",
    "png_adversarial",
)


def adversarial_png(model: str, attack: str, index: int) -> str:
    """Path of an adversarial PNG relative to the output folder.

    Example:
        >>> adversarial_png("efficientnet_lite0", "sC&W", 3)
        'adversarials/efficientnet_lite0__sCW/0003.png'
    """
    return f"adversarials/{safe_name(model)}__{safe_name(attack)}/{index:04d}.png"


def _read_png(path: pathlib.Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        array = np.asarray(image, np.float32) / 255.0
    return array[..., None] if array.ndim == 2 else array


def photo_measure(
    net: Model, labels: np.ndarray, out: pathlib.Path, model_name: str, attack_name: str
) -> Measure:
    """The ``measure`` of one white-box run on photos (see the module docstring).

    Args:
        net: the attacked model (its predictions on the PNGs read back decide
            ``png_adversarial``).
        labels: the labels of the whole input set ``[N0]`` (indexed by the measure's indices).
        out: the output folder; PNGs go to ``out/<adversarial_png(...)>``.
        model_name: the model's name in file names.
        attack_name: the attack's name in file names.

    Returns:
        ``measure(indices, clean, adversarial) -> {name: [m] values}``.
    """
    from tfsmooth import metrics
    from tfsmooth._io import save_png

    def measure(indices: np.ndarray, clean: np.ndarray, adversarial: np.ndarray) -> dict[str, Any]:
        values = metrics.perceptual_report(clean, adversarial)
        values.pop("l2", None)
        read_back = []
        for index, image in zip(indices, adversarial):
            path = out / adversarial_png(model_name, attack_name, int(index))
            path.parent.mkdir(parents=True, exist_ok=True)
            save_png(image, path)
            read_back.append(_read_png(path))
        predicted = np.asarray(net.predict(np.stack(read_back).astype(np.float32)))
        values["png_adversarial"] = (predicted != labels[indices]).astype(np.float64)
        return values

    return measure


def magnified_panel(
    path: pathlib.Path,
    out: pathlib.Path,
    images: np.ndarray,
    results: dict[str, Any],
    model_name: str,
    indices: Sequence[int],
) -> pathlib.Path | None:
    """Fig. 1 on photos: each photo, its magnification and each attack's magnified adversarial.

    Args:
        path: the PNG to write.
        out: the output folder holding the adversarial PNGs of :func:`photo_measure`.
        images: the clean images ``[N0, H, W, 3]``.
        results: ``{attack: EvaluationResult}`` of ``model_name``.
        model_name: the model.
        indices: the photos to draw (one row each).

    Returns:
        ``path``, or ``None`` if no adversarial PNG of these photos exists.
    """
    from tfsmooth import plot
    from tfsmooth.magnification import magnify, to_display

    rows, titles = [], []
    for index in indices:
        found = []
        for attack, result in results.items():
            file = out / adversarial_png(model_name, attack, int(index))
            if result.success[index] and file.is_file():
                found.append((attack, float(result.l2[index]), _read_png(file)))
        if not found:
            continue
        batch = np.stack([images[index]] + [image for _, _, image in found]).astype(np.float32)
        magnified = magnify(batch).numpy()
        # one display scale per photo: the clean image's own magnification
        clip = float(np.percentile(np.abs(magnified[0]), 99.0)) or 1.0
        shown = to_display(magnified, clip=clip).numpy()
        rows.append([images[index], shown[0]] + list(shown[1:]))
        titles.append(
            [f"#{index}", "magnified"] + [f"{attack} D={d:.2f}" for attack, d, _ in found]
        )
    if not rows:
        return None
    return plot.plot_image_grid(rows, path, titles, scale=2.2)
