"""Small file helpers shared by the library's writers (PNG output, output directories)."""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

__all__ = ["check_out_dir", "save_png"]


def save_png(array: Any, path: str | os.PathLike[str]) -> None:
    """Writes an RGB or grey image with values in ``[0, 1]`` as an 8-bit PNG (values clipped)."""
    from PIL import Image

    pixels = np.clip(np.round(np.asarray(array, dtype=np.float64) * 255.0), 0, 255)
    pixels = pixels.astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    Image.fromarray(pixels).save(path)


def check_out_dir(out_dir: Any, *subdirs: str) -> pathlib.Path:
    """Creates ``out_dir`` (and ``subdirs`` in it) and checks that it can be written.

    Raises:
        TypeError: ``out_dir`` is not a path.
        ValueError: it is an existing file, or it cannot be created or written.
    """
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"`out_dir` must be a path, got {type(out_dir).__name__}")
    path = pathlib.Path(out_dir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"`out_dir` must be a directory, got an existing file {path}")
    try:
        path.mkdir(parents=True, exist_ok=True)
        for name in subdirs:
            (path / name).mkdir(exist_ok=True)
        probe = path / ".write_test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"`out_dir` {path} is not writable: {err}") from err
    return path
