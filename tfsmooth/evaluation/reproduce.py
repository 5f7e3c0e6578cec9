"""Reproduction of the paper's MNIST experiments (Tables 1–2, Figures 2 and 5).

:func:`reproduce_mnist` runs the six attacks (FGSM, I-FGSM, PGD2, C&W, sPGD2, sC&W) with the
settings of :data:`~tfsmooth.evaluation.presets.MNIST` on the plain C4 (``"c4"``, Table 1) and
the adversarially trained C4 (``"c4-adv"``, Table 2) over MNIST test images, and writes into
``out_dir``:

- ``records/<model>__<attack>.jsonl`` — per-image records (resumable, see
  :mod:`tfsmooth.evaluation.protocol`); ``C&W`` is spelled ``CW`` in file names;
- ``results.json`` — ``{"meta": ..., "rows": ...}`` (:mod:`tfsmooth.evaluation.report`) and
  ``results.csv``;
- ``report.md`` — our numbers beside the paper's;
- ``oc_<model>.png`` — operating characteristics (Fig. 2) if matplotlib is installed;
- ``worst_cases.png`` — worst cases of C&W and sC&W on ``c4`` (Fig. 5 style).

The folder is locked while the run writes to it, and earlier results in it are never replaced
unless asked (``resume`` for the same run, ``overwrite``): see :class:`tfsmooth._io.OutputDir`.

With ``workers`` (a :class:`~tfsmooth.evaluation.distributed.WorkerSpec`, from ``TF_CONFIG`` on
the command line) the run is shared by several processes over one ``out_dir`` that they all
see: each records its share in ``out_dir/workers/worker-<i>`` (its own locked folder) and the
chief (worker 0) merges the records and writes everything above
(:mod:`tfsmooth.evaluation.distributed`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import time
from typing import Any

import numpy as np

from tfsmooth import _validation as v
from tfsmooth._version import __version__
from tfsmooth.evaluation import presets as presets_lib
from tfsmooth.evaluation import report as report_lib
from tfsmooth.evaluation.distributed import WorkerSpec
from tfsmooth.evaluation.driver import (
    open_run_folders,
    record_file_name,
    run_white_box,
    worker_summary,
)
from tfsmooth.evaluation.protocol import EvaluationResult

logger = logging.getLogger(__name__)

__all__ = ["MNIST_MODELS", "paper_findings", "reproduce_mnist"]

#: Model names of the MNIST reproduction and their bundled C4 weights.
MNIST_MODELS = {"c4": "mnist", "c4-adv": "mnist-adv"}


#: The findings of Tables 1 and 2 that the reproduction checks: ``(text, model, kind, args)``.
#: ``"psuc_at_least"``: Psuc of ``args[0]`` >= ``args[1]``; ``"psuc_below"``: Psuc of
#: ``args[0]`` below that of every attack in ``args[1:]``; ``"d_above"`` / ``"d_below"``: D of
#: ``args[0]`` above / below D of ``args[1]``; ``"psuc_drop"``: Psuc of ``args[0]`` on ``model`` at most ``args[1]`` times
#: its Psuc on ``c4``.
FINDINGS: tuple[tuple[str, str, str, tuple[Any, ...]], ...] = (
    ("Psuc(I-FGSM) ≥ 0.97", "c4", "psuc_at_least", ("I-FGSM", 0.97)),
    ("Psuc(PGD2) ≥ 0.97", "c4", "psuc_at_least", ("PGD2", 0.97)),
    ("Psuc(C&W) ≥ 0.97", "c4", "psuc_at_least", ("C&W", 0.97)),
    ("Psuc(sC&W) ≥ 0.97", "c4", "psuc_at_least", ("sC&W", 0.97)),
    (
        "Psuc(FGSM) below I-FGSM, PGD2, C&W, sC&W",
        "c4",
        "psuc_below",
        ("FGSM", "I-FGSM", "PGD2", "C&W", "sC&W"),
    ),
    ("D: FGSM > I-FGSM", "c4", "d_above", ("FGSM", "I-FGSM")),
    ("D: I-FGSM > C&W", "c4", "d_above", ("I-FGSM", "C&W")),
    ("D: PGD2 < C&W", "c4", "d_below", ("PGD2", "C&W")),
    ("D: sC&W < C&W", "c4", "d_below", ("sC&W", "C&W")),
    ("D: sPGD2 > PGD2", "c4", "d_above", ("sPGD2", "PGD2")),
    (
        "adversarial training: Psuc(FGSM) at most half of the plain C4's",
        "c4-adv",
        "psuc_drop",
        ("FGSM", 0.5),
    ),
    ("adversarial training: Psuc(sC&W) ≥ 0.95", "c4-adv", "psuc_at_least", ("sC&W", 0.95)),
)


def paper_findings(
    rows: Any, paper: dict[str, dict[str, tuple[float, float]]] | None = None
) -> list[dict[str, Any]]:
    """Checks the findings of the paper's Tables 1–2 (:data:`FINDINGS`) on our rows and on its own.

    Args:
        rows: result rows (``model``, ``attack``, ``psuc``, ``mean_l2``).
        paper: ``{model: {attack: (psuc, D)}}``; default the paper's MNIST numbers.

    Returns:
        One dict per finding: ``finding``, ``model``, ``ours`` and ``paper`` (the values
        compared, as text), ``holds`` (``True``/``False``; ``None`` when a row is missing) and
        ``holds_in_paper``.

    Example:
        >>> rows = [dict(model="c4", attack="PGD2", psuc=1.0, mean_l2=1.7),
        ...         dict(model="c4", attack="C&W", psuc=1.0, mean_l2=2.2)]
        >>> [f["holds"] for f in paper_findings(rows) if f["finding"] == "D: PGD2 < C&W"]
        [True]
    """
    paper = paper if paper is not None else presets_lib.PAPER_RESULTS["mnist"]
    if not isinstance(rows, (list, tuple)) or not all(isinstance(r, dict) for r in rows):
        raise TypeError(f"`rows` must be a list of dicts, got {type(rows).__name__}")
    ours = {(r["model"], r["attack"]): (r["psuc"], r["mean_l2"]) for r in rows}
    theirs = {(m, a): value for m, table in paper.items() for a, value in table.items()}

    def judge(table: dict[Any, Any], model: str, kind: str, args: Any) -> tuple[Any, str]:
        def get(attack: str, m: str = model) -> Any:
            return table.get((m, attack))

        if kind == "psuc_at_least":
            value = get(args[0])
            if value is None:
                return None, "–"
            return value[0] >= args[1], f"{value[0]:.3f}"
        if kind == "psuc_below":
            values = [get(a) for a in args]
            if any(x is None for x in values):
                return None, "–"
            psuc = [x[0] for x in values]
            return all(psuc[0] < p for p in psuc[1:]), " vs ".join(f"{p:.3f}" for p in psuc)
        if kind in ("d_above", "d_below"):
            a, b = get(args[0]), get(args[1])
            if a is None or b is None or a[1] is None or b[1] is None:
                return None, "–"
            holds = a[1] > b[1] if kind == "d_above" else a[1] < b[1]
            return holds, f"{a[1]:.2f} vs {b[1]:.2f}"
        if kind == "psuc_drop":
            after, before = get(args[0]), get(args[0], "c4")
            if after is None or before is None:
                return None, "–"
            return after[0] <= args[1] * before[0], f"{before[0]:.3f} → {after[0]:.3f}"
        raise ValueError(f"unknown finding kind {kind!r}")

    out = []
    for text, model, kind, args in FINDINGS:
        holds, ours_text = judge(ours, model, kind, args)
        holds_paper, paper_text = judge(theirs, model, kind, args)
        out.append(
            {
                "finding": text,
                "model": model,
                "ours": ours_text,
                "paper": paper_text,
                "holds": holds,
                "holds_in_paper": holds_paper,
            }
        )
    return out


def _findings_table(findings: list[dict[str, Any]]) -> list[str]:
    def mark(value: Any) -> str:
        return "–" if value is None else ("yes" if value else "**no**")

    lines = [
        "## The paper's findings, checked",
        "",
        "| model | finding | ours | paper | holds here | holds in the paper |",
        "|---|---|---|---|---|---|",
    ]
    for f in findings:
        lines.append(
            f"| {f['model']} | {f['finding']} | {f['ours']} | {f['paper']} | "
            f"{mark(f['holds'])} | {mark(f['holds_in_paper'])} |"
        )
    return lines + [""]


def reproduce_mnist(
    out_dir: str | os.PathLike[str],
    *,
    n: int | None = None,
    quick: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    progress: Any = False,
    batch_size: int = 100,
    strategy: Any = None,
    models: Any = ("c4", "c4-adv"),
    attacks: Any = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    source: str = "auto",
    figures: bool = True,
    workers: WorkerSpec | None = None,
) -> dict[str, Any]:
    """Runs the paper's MNIST experiments and writes results, report and figures to ``out_dir``.

    Args:
        out_dir: output directory (created).
        n: number of test images (the first ``n``); ``None`` for all available (10,000 with
            TFDS or the Keras cache, 1,000 with the sample shipped in the package).
        quick: use :data:`~tfsmooth.evaluation.presets.MNIST_QUICK` (fewer iterations; the
            report says so).
        resume: continue the run recorded in ``out_dir`` (the same arguments; by the same
            batches); without it (or ``overwrite``), earlier results raise ``ValueError``.
        overwrite: replace the files of an earlier run (or foreign files) in ``out_dir``
            (``--overwrite``); with ``resume``, record files of the same run are continued.
        progress: ``True`` for a progress bar per run, or a callable
            ``progress(model, attack, done, total)``.
        batch_size: images per batch.
        strategy: optional ``tf.distribute.Strategy`` (see
            :func:`~tfsmooth.evaluation.protocol.evaluate_attack`).
        models: subset of ``("c4", "c4-adv")``.
        attacks: subset of the attack names (default: all six).
        overrides: ``{attack name: {kwarg: value}}`` merged into the preset's keyword
            arguments (e.g. ``{"C&W": {"steps": 10}}``), recorded in ``meta``.
        source: MNIST source for :func:`~tfsmooth.data.load_mnist`.
        figures: draw the PNG figures (needs matplotlib; skipped with a warning if missing).
        workers: this process's :class:`~tfsmooth.evaluation.distributed.WorkerSpec` in a
            multi-worker run (``None``: a single process). Every worker is given the same
            arguments; each records its share of the batches in ``out_dir/workers/worker-<i>``
            (continued when rerun with the same arguments), the chief (worker 0) waits for the
            others and writes the results (the same as a single process's).

    Returns:
        A summary dict: ``rows`` (as in ``results.json``), ``meta``, ``table`` (markdown),
        ``files`` (paths written) and ``seconds``. A worker other than the chief returns no
        rows, a ``table`` that says so, and its own record files in ``files``.

    Raises:
        ValueError: ``n < 1`` or larger than the data, unknown model or attack names, an
            ``out_dir`` that cannot be written or holds earlier results (see ``resume`` and
            ``overwrite``), record files of another run.
        RunLockedError: another run writes to ``out_dir`` (an ``OSError``).

    Example:
        >>> reproduce_mnist("/tmp/never", n=0)
        Traceback (most recent call last):
        ...
        ValueError: `n` must be an integer >= 1, got 0
    """
    from tfsmooth.data import load_mnist
    from tfsmooth.models import mnist_c4_model

    started = time.perf_counter()
    if n is not None:
        n = v.check_int_at_least(n, "n", 1)
    batch_size = v.check_int_at_least(batch_size, "batch_size", 1)
    models = list(models)
    for name in models:
        v.check_choice(name, "models", MNIST_MODELS)
    if not models:
        raise ValueError("`models` must name at least one of ('c4', 'c4-adv')")
    preset = presets_lib.MNIST_QUICK if quick else presets_lib.MNIST
    if attacks is not None:
        preset = preset.select(attacks)
    if overrides:
        changed = dict(preset.attacks)
        for name, kwargs in overrides.items():
            if name not in presets_lib.ATTACK_NAMES:
                raise ValueError(
                    f"`overrides` keys must be among {presets_lib.ATTACK_NAMES}, got {name!r}"
                )
            if name in changed:  # overrides of attacks left out by `attacks` are ignored
                changed[name] = changed[name].replace(kwargs=kwargs)
        preset = presets_lib.dataclasses.replace(preset, attacks=changed)

    data = load_mnist("test", source=source)
    if n is not None and n > len(data):
        raise ValueError(
            f"`n` must be at most the number of test images available ({len(data)} from "
            f"{data.source}), got {n}"
        )
    images = data.images[:n] if n is not None else data.images
    labels = data.labels[:n] if n is not None else data.labels
    built = presets_lib.build_attacks(preset)
    run = {
        "experiment": "mnist",
        "models": models,
        "attacks": list(built),
        "n_images": int(images.shape[0]),
        "quick": bool(quick),
        "overrides": overrides or {},
        "batch_size": batch_size,
    }
    outputs = [f"records/{record_file_name(m, a)}" for m in models for a in built]
    outputs += ["results.json", "results.csv", "report.md"]
    if figures:
        outputs += [f"oc_{m}.png" for m in models] + ["worst_cases.png"]
    if workers is not None and not isinstance(workers, WorkerSpec):
        raise TypeError(f"`workers` must be a WorkerSpec or None, got {type(workers).__name__}")
    shared = workers if workers is not None and workers.distributed else None
    with contextlib.ExitStack() as stack:
        out = open_run_folders(
            stack,
            out_dir,
            run=run,
            outputs=outputs,
            subdirs=["records"],
            record_names=[record_file_name(m, a) for m in models for a in built],
            resume=resume,
            overwrite=overwrite,
            workers=workers,
        )
        nets = {name: mnist_c4_model(MNIST_MODELS[name]) for name in models}
        box = run_white_box(
            out,
            nets,
            built,
            images,
            labels,
            batch_size=batch_size,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            strategy=strategy,
            workers=workers,
        )
        if shared is not None and not shared.chief:
            return worker_summary(
                shared,
                box,
                experiment="mnist",
                source=data.source,
                n_images=int(images.shape[0]),
                started=started,
            )
        rows, results, accuracy = box.rows, box.results, box.accuracy

        meta = {
            "experiment": "mnist",
            "data_source": data.source,
            "n_test_images": int(images.shape[0]),
            "clean_accuracy": accuracy,
            "version": __version__,
            "quick": bool(quick),
            "preset": preset.to_dict(),
            "overrides": overrides or {},
            "batch_size": batch_size,
            "findings": paper_findings(rows),
        }
        files = {
            "results": str(report_lib.write_results(out / "results.json", rows, meta)),
            "csv": str(report_lib.write_csv(out / "results.csv", rows)),
        }
        table = report_lib.markdown_table(rows, presets_lib.PAPER_RESULTS["mnist"])
        if figures:
            files.update(_figures(out, results, nets, images, labels, built))
        files["report"] = str(_write_report(out / "report.md", table, meta, files))
        seconds = time.perf_counter() - started
        return {"rows": rows, "meta": meta, "table": table, "files": files, "seconds": seconds}


def _figures(
    out: pathlib.Path,
    results: dict[str, dict[str, EvaluationResult]],
    nets: dict[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    built: dict[str, tuple[Any, Any]],
) -> dict[str, str]:
    try:
        from tfsmooth import plot
    except ImportError as err:  # pragma: no cover - plot imports matplotlib lazily
        logger.warning("figures skipped: %s", err)
        return {}
    files: dict[str, str] = {}
    try:
        for model_name, by_attack in results.items():
            path = out / f"oc_{model_name}.png"
            plot.plot_operating_characteristics(
                by_attack, path, title=f"Operating characteristics, MNIST, {model_name}"
            )
            files[f"oc_{model_name}"] = str(path)
        worst = _worst_cases(results, nets, images, labels, built)
        if worst is not None:
            rows, titles = worst
            path = out / "worst_cases.png"
            plot.plot_image_grid(rows, path, titles)
            files["worst_cases"] = str(path)
    except ImportError as err:
        logger.warning("figures skipped: %s", err)
    return files


def _worst_cases(
    results: dict[str, dict[str, EvaluationResult]],
    nets: dict[str, Any],
    images: np.ndarray,
    labels: np.ndarray,
    built: dict[str, tuple[Any, Any]],
) -> tuple[list[list[np.ndarray]], list[list[str]]] | None:
    """Fig. 5 style: for C&W and sC&W, the image of largest distortion, attacked by both.

    The adversarials are not stored in the records, so both attacks are run again on the
    chosen images (as a batch of their own: C&W's early abort may make them differ slightly
    from the recorded run).
    """
    model_name = "c4" if "c4" in results else next(iter(results))
    by_attack = results[model_name]
    names = [a for a in ("C&W", "sC&W") if a in by_attack]
    if not names:
        return None
    chosen: list[int] = []
    worst_of: dict[int, list[str]] = {}
    for name in names:
        result = by_attack[name]
        if result.n_success:
            index = int(np.nanargmax(np.where(result.success, result.l2, np.nan)))
            if index not in worst_of:
                chosen.append(index)
            worst_of.setdefault(index, []).append(name)
    if not chosen:
        return None
    x = images[chosen]
    y = labels[chosen]
    adversarial = {}
    for name in names:
        attack, epsilons = built[name]
        adversarial[name] = np.asarray(attack(nets[model_name], x, y, epsilons=epsilons).clipped)
    grid, titles = [], []
    for row, index in enumerate(chosen):
        images_row = [x[row]]
        titles_row = [f"#{index} (label {y[row]})"]
        for name in names:
            delta = adversarial[name][row] - x[row]
            d = float(np.sqrt(np.sum(delta**2)))
            star = "*" if name in worst_of[index] else ""
            images_row += [adversarial[name][row], delta]
            titles_row += [f"{name}{star} D={d:.2f}", f"{name} perturbation"]
        grid.append(images_row)
        titles.append(titles_row)
    return grid, titles


def _write_report(
    path: pathlib.Path, table: str, meta: dict[str, Any], files: dict[str, str]
) -> pathlib.Path:
    lines = report_lib.report_preamble(
        "MNIST reproduction of *Smooth Adversarial Examples* (Tables 1–2)",
        f"MNIST test, {meta['n_test_images']} images from `{meta['data_source']}` "
        "(the paper uses all 10,000)",
        meta,
    )
    lines += [
        "",
        "Psuc = N_suc / N over the correctly classified images; D = mean L2 distortion over the "
        "successes (pixels in [0, 1]). `c4` is Table 1 (MNIST column), `c4-adv` Table 2.",
        "",
        table,
    ]
    lines += _findings_table(meta["findings"])
    lines += report_lib.figure_line(files, lambda k: k.startswith("oc_") or k == "worst_cases")
    path.write_text("\n".join(lines), encoding="utf-8")
    return path
