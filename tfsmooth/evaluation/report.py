"""Results files and tables: ``results.json``, CSV, and markdown beside the paper's numbers.

``results.json`` is ``{"meta": {...}, "rows": [...]}``. Each row is a flat dict with at least
``model``, ``attack``, ``n``, ``n_success``, ``psuc``, ``mean_l2`` and ``seconds`` (``psuc`` /
``mean_l2`` may be ``null``); ``meta`` records the data source, number of test images, clean
accuracy per model, package version and settings.
"""

from __future__ import annotations

import csv
import json
import math
import os
import pathlib
from typing import Any

__all__ = [
    "REQUIRED_ROW_KEYS",
    "markdown_table",
    "read_results",
    "write_csv",
    "write_results",
]

#: Keys every row of a results file has.
REQUIRED_ROW_KEYS = ("model", "attack", "n", "n_success", "psuc", "mean_l2", "seconds")


def _check_rows(rows: Any) -> list[dict[str, Any]]:
    if not isinstance(rows, (list, tuple)):
        raise TypeError(f"`rows` must be a list of dicts, got {type(rows).__name__}")
    checked = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise TypeError(f"rows[{i}] must be a dict, got {type(row).__name__}")
        missing = [k for k in REQUIRED_ROW_KEYS if k not in row]
        if missing:
            raise ValueError(f"rows[{i}] misses keys {missing}; expected {REQUIRED_ROW_KEYS}")
        checked.append(dict(row))
    return checked


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(x) for k, x in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(x) for x in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    return value


def write_results(path: str | os.PathLike[str], rows: Any, meta: dict[str, Any]) -> pathlib.Path:
    """Writes ``{"meta": meta, "rows": rows}`` as JSON (NaN/inf become ``null``).

    Example:
        >>> import tempfile
        >>> row = dict(model="c4", attack="FGSM", n=2, n_success=1, psuc=0.5, mean_l2=3.0,
        ...            seconds=0.1)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     p = write_results(tmp + "/results.json", [row], {"version": "0"})
        ...     read_results(p)["rows"][0]["psuc"]
        0.5
    """
    if not isinstance(meta, dict):
        raise TypeError(f"`meta` must be a dict, got {type(meta).__name__}")
    rows = _check_rows(rows)
    path = pathlib.Path(path)
    payload = {"meta": _jsonable(meta), "rows": _jsonable(rows)}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def read_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Reads and checks a file written by :func:`write_results`.

    Raises:
        ValueError: not JSON, or not ``{"meta": {...}, "rows": [...]}`` with the required keys.
    """
    path = pathlib.Path(path)
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not JSON: {err}") from err
    if not isinstance(payload, dict) or set(payload) != {"meta", "rows"}:
        raise ValueError(f'{path}: expected {{"meta": ..., "rows": ...}}, got {type(payload)}')
    if not isinstance(payload["meta"], dict):
        raise ValueError(f"{path}: `meta` must be an object")
    payload["rows"] = _check_rows(payload["rows"])
    return payload


def write_csv(path: str | os.PathLike[str], rows: Any) -> pathlib.Path:
    """Writes the rows as CSV (columns: the required keys first, then the others, sorted).

    Example:
        >>> import tempfile
        >>> row = dict(model="c4", attack="C&W", n=1, n_success=1, psuc=1.0, mean_l2=None,
        ...            seconds=2.0)
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     print(write_csv(tmp + "/r.csv", [row]).read_text().splitlines()[1])
        c4,C&W,1,1,1.0,,2.0
    """
    rows = _check_rows(rows)
    extra = sorted({k for row in rows for k in row} - set(REQUIRED_ROW_KEYS))
    columns = list(REQUIRED_ROW_KEYS) + extra
    path = pathlib.Path(path)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in columns})
    return path


def _fmt(value: Any, digits: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def _diff(ours: Any, theirs: Any, digits: int) -> str:
    if ours is None or theirs is None or (isinstance(ours, float) and math.isnan(ours)):
        return "–"
    return f"{ours - theirs:+.{digits}f}"


def markdown_table(
    rows: Any, paper: dict[str, dict[str, tuple[float, float]]] | None = None
) -> str:
    """A markdown table of the rows, with the paper's ``(Psuc, D)`` beside ours when known.

    Args:
        rows: result rows (see the module docstring).
        paper: ``{model: {attack: (psuc, mean_l2)}}``, e.g. ``PAPER_RESULTS["mnist"]``.

    Example:
        >>> row = dict(model="c4", attack="FGSM", n=100, n_success=90, psuc=0.9, mean_l2=5.0,
        ...            seconds=1.0)
        >>> print(markdown_table([row], {"c4": {"FGSM": (0.89, 5.02)}}).splitlines()[2])
        | c4 | FGSM | 100 | 0.90 | 0.89 | +0.01 | 5.00 | 5.02 | -0.02 | 1.0 |
    """
    rows = _check_rows(rows)
    paper = paper or {}
    lines = [
        "| model | attack | N | Psuc | Psuc (paper) | ΔPsuc | D | D (paper) | ΔD | seconds |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ref = paper.get(row["model"], {}).get(row["attack"])
        p_ref, d_ref = ref if ref is not None else (None, None)
        lines.append(
            f"| {row['model']} | {row['attack']} | {row['n']} | {_fmt(row['psuc'], 2)} | "
            f"{_fmt(p_ref, 2)} | {_diff(row['psuc'], p_ref, 2)} | {_fmt(row['mean_l2'], 2)} | "
            f"{_fmt(d_ref, 2)} | {_diff(row['mean_l2'], d_ref, 2)} | "
            f"{_fmt(row['seconds'], 1)} |"
        )
    return "\n".join(lines) + "\n"


def report_preamble(title: str, data_line: str, meta: dict[str, Any]) -> list[str]:
    """The first lines of a reproduction's ``report.md``: title, quick-run banner, run facts.

    Args:
        title: the report's title (without ``#``).
        data_line: what data was used, e.g. ``"MNIST test, 1000 images from `tfds`"``.
        meta: the run's ``meta`` (``quick``, ``clean_accuracy``, ``version``, ``batch_size``,
            ``preset``).

    Example:
        >>> meta = {"quick": False, "clean_accuracy": {"c4": 0.97}, "version": "0",
        ...         "batch_size": 10, "preset": {"notes": "paper"}}
        >>> report_preamble("T", "data", meta)[0]
        '# T'
    """
    lines = [f"# {title}", ""]
    if meta["quick"]:
        lines += [
            "> **QUICK run**: fewer iterations than the paper's protocol; the numbers are "
            "indicative only.",
            "",
        ]
    accuracy = ", ".join(f"{m}: {a:.4f}" for m, a in meta["clean_accuracy"].items())
    return lines + [
        f"- data: {data_line}",
        f"- clean accuracy (N/N0): {accuracy}",
        f"- tfsmooth {meta['version']}, batch size {meta['batch_size']}",
        f"- settings: {meta['preset']['notes']}",
    ]


def figure_line(files: dict[str, str], keys: Any) -> list[str]:
    """A ``Figures: ...`` line naming the written figures whose key matches ``keys(key)``."""
    figures = [f for k, f in files.items() if keys(k)]
    if not figures:
        return []
    return ["", "Figures: " + ", ".join(f"`{pathlib.Path(f).name}`" for f in figures), ""]
