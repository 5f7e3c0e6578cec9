"""The white-box loop shared by the reproductions: every attack of a preset on every model.

:func:`run_white_box` runs :func:`~tfsmooth.evaluation.protocol.evaluate_attack` for each
``(model, attack)`` pair with per-image records in ``<out>/records/<model>__<attack>.jsonl``
(resumable, :mod:`tfsmooth.evaluation.records`) and returns the rows of ``results.json``.
:func:`tfsmooth.evaluation.reproduce.reproduce_mnist` and
:func:`tfsmooth.evaluation.reproduce_imagenet.reproduce_imagenet` both use it; they differ in
their data, models, presets and reports only.

With ``workers`` (a :class:`~tfsmooth.evaluation.distributed.WorkerSpec` of several workers),
each worker records its share of the fixed batches of every run in its own folder
``<out>/workers/worker-<i>/records/``; the chief (worker 0) then waits for the others, merges
their records into ``<out>/records/`` and returns the rows; the other workers return no rows
(see :mod:`tfsmooth.evaluation.distributed`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from tfsmooth._io import OutputDir
from tfsmooth._version import __version__
from tfsmooth.evaluation import distributed
from tfsmooth.evaluation.distributed import WorkerSpec
from tfsmooth.evaluation.protocol import EvaluationResult, Measure, attack_shard, evaluate_attack
from tfsmooth.models.base import Model

logger = logging.getLogger(__name__)

__all__ = [
    "WhiteBox",
    "progress_for",
    "record_file_name",
    "run_white_box",
    "safe_name",
    "worker_summary",
]


def safe_name(text: str) -> str:
    """A file-name-safe version of a model or attack name (``"C&W"`` -> ``"CW"``).

    Example:
        >>> safe_name("sC&W"), safe_name("my model/v2")
        ('sCW', 'my_model_v2')
    """
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", text.replace("&", "")) or "model"


def record_file_name(model: str, attack: str, suffix: str = ".jsonl") -> str:
    """``<model>__<attack>.jsonl``, the record file of one white-box run.

    Example:
        >>> record_file_name("c4", "C&W")
        'c4__CW.jsonl'
    """
    return f"{safe_name(model)}__{safe_name(attack)}{suffix}"


class WhiteBox:
    """What :func:`run_white_box` returns.

    Attributes:
        rows: one row per ``(model, attack)`` (``EvaluationResult.to_row()`` plus ``extra``).
        results: ``{model: {attack: EvaluationResult}}``.
        accuracy: ``{model: clean accuracy}``.
        worker_files: ``{"<model>__<attack>": path}`` of this worker's own record files (a
            multi-worker run only).
    """

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.results: dict[str, dict[str, EvaluationResult]] = {}
        self.accuracy: dict[str, float] = {}
        self.worker_files: dict[str, str] = {}

    def table(self) -> dict[str, dict[str, tuple[float, float]]]:
        """``{model: {attack: (Psuc, D)}}`` (``NaN`` where undefined), for findings."""
        return {
            model: {
                attack: (
                    float("nan") if r.psuc is None else float(r.psuc),
                    float("nan") if r.mean_l2 is None else float(r.mean_l2),
                )
                for attack, r in by_attack.items()
            }
            for model, by_attack in self.results.items()
        }


def worker_summary(
    workers: WorkerSpec,
    box: WhiteBox,
    *,
    experiment: str,
    source: str,
    n_images: int,
    started: float,
) -> dict[str, Any]:
    """The summary a reproduction returns on a worker other than the chief.

    That worker has recorded its share of the batches of every white-box run and writes no
    results: the summary has no ``rows``, a ``table`` that says so, and the worker's own record
    files in ``files``.

    Args:
        workers: this worker's :class:`~tfsmooth.evaluation.distributed.WorkerSpec`.
        box: what :func:`run_white_box` returned on it.
        experiment: ``"mnist"`` or ``"imagenet"`` (in ``meta``).
        source: where the images came from, in words (in ``meta``).
        n_images: the number of images of the run.
        started: ``time.perf_counter()`` when the run started.
    """
    meta = {
        "experiment": experiment,
        "data_source": source,
        "n_test_images": int(n_images),
        "clean_accuracy": box.accuracy,
        "version": __version__,
        "worker": workers.index,
        "workers": workers.count,
    }
    table = (
        f"{workers}: recorded its share of the batches (batch % {workers.count} == "
        f"{workers.index}) of {len(box.worker_files)} run(s); worker 0 (the chief) merges the "
        "records and writes the results."
    )
    seconds = time.perf_counter() - started
    return {"rows": [], "meta": meta, "table": table, "files": box.worker_files, "seconds": seconds}


def open_run_folders(
    stack: contextlib.ExitStack[Any],
    out_dir: str | os.PathLike[str],
    *,
    run: Mapping[str, Any],
    outputs: list[str],
    subdirs: list[str],
    record_names: list[str],
    resume: bool,
    overwrite: bool,
    workers: WorkerSpec | None,
) -> pathlib.Path:
    """Opens (locks) a reproduction's output folders in ``stack``; returns ``out``.

    A single process or the chief of a multi-worker job opens ``out_dir`` itself (its outputs
    and ``subdirs``); every worker of a multi-worker job also opens its own
    ``worker_folder(out, index)``, whose records of the same run are always continued (a rerun
    worker resumes; ``overwrite`` alone starts them over).
    """
    shared = workers if workers is not None and workers.distributed else None
    if shared is None or shared.chief:
        out = stack.enter_context(
            OutputDir(
                out_dir,
                run=run,
                outputs=outputs,
                subdirs=subdirs,
                resume=resume,
                overwrite=overwrite,
            )
        ).path
    else:
        out = pathlib.Path(out_dir)
    if shared is not None:
        stack.enter_context(
            OutputDir(
                distributed.worker_folder(out, shared.index),
                run=run,
                outputs=[f"records/{name}" for name in record_names],
                subdirs=["records"],
                resume=resume or not overwrite,
                overwrite=overwrite,
            )
        )
    return out


def progress_for(progress: Any, model: str, attack: str) -> Any:
    if callable(progress) and progress is not True:
        return lambda done, total: progress(model, attack, done, total)
    return progress


def run_white_box(
    out: pathlib.Path,
    nets: Mapping[str, Model],
    attacks: Mapping[str, tuple[Any, Any]],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    resume: bool,
    overwrite: bool,
    progress: Any = None,
    strategy: Any = None,
    measure_for: Callable[[str, str, Model], Measure | None] | None = None,
    extra: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None = None,
    workers: WorkerSpec | None = None,
) -> WhiteBox:
    """Every attack on every model, with resumable records under ``out/records``.

    Args:
        out: the output folder; ``out/records`` must exist (open and locked by this process,
            unless ``workers`` makes it a worker other than the chief).
        nets: ``{model name: model}``.
        attacks: ``{attack name: (attack, epsilons)}`` (:func:`~tfsmooth.evaluation.presets.build_attacks`).
        images: ``[N0, H, W, C]``.
        labels: ``[N0]``, aligned with the models' logits.
        batch_size: images per batch.
        resume: continue the recorded runs.
        overwrite: start over where records of another run exist.
        progress: ``True`` (progress bars) or ``progress(model, attack, done, total)``.
        strategy: optional ``tf.distribute.Strategy``.
        measure_for: optional ``measure_for(model, attack, net)`` giving the ``measure`` of
            :func:`~tfsmooth.evaluation.protocol.evaluate_attack` for that run.
        extra: keys added to every row, or a function of the model name giving them.
        workers: this process's place in a multi-worker run: its share of the batches goes to
            ``worker_folder(out, index)/records`` (that folder open and locked by this process,
            ``records`` in it); the chief then merges all the workers' records into
            ``out/records`` (waiting for them) and returns the rows, the others return none.

    Returns:
        :class:`WhiteBox`.
    """
    if workers is not None and not isinstance(workers, WorkerSpec):
        raise TypeError(f"`workers` must be a WorkerSpec or None, got {type(workers).__name__}")
    if workers is not None and workers.distributed:
        return _run_shared(
            out,
            nets,
            attacks,
            images,
            labels,
            batch_size=batch_size,
            resume=resume,
            overwrite=overwrite,
            progress=progress,
            strategy=strategy,
            measure_for=measure_for,
            extra=extra,
            workers=workers,
        )
    box = WhiteBox()
    for model_name, net in nets.items():
        box.results[model_name] = {}
        added = extra(model_name) if callable(extra) else dict(extra or {})
        for attack_name, (attack, epsilons) in attacks.items():
            logger.info("%s on %s", attack_name, model_name)
            result = evaluate_attack(
                net,
                attack,
                images,
                labels,
                epsilons=epsilons,
                batch_size=batch_size,
                records_path=out / "records" / record_file_name(model_name, attack_name),
                resume=resume,
                overwrite=overwrite,
                progress=progress_for(progress, model_name, attack_name),
                strategy=strategy,
                attack_name=attack_name,
                model_name=model_name,
                measure=None if measure_for is None else measure_for(model_name, attack_name, net),
            )
            box.results[model_name][attack_name] = result
            box.accuracy[model_name] = result.clean_accuracy
            box.rows.append({**result.to_row(), **added})
    return box


def _run_shared(
    out: pathlib.Path,
    nets: Mapping[str, Model],
    attacks: Mapping[str, tuple[Any, Any]],
    images: np.ndarray,
    labels: np.ndarray,
    *,
    batch_size: int,
    resume: bool,
    overwrite: bool,
    progress: Any,
    strategy: Any,
    measure_for: Callable[[str, str, Model], Measure | None] | None,
    extra: Mapping[str, Any] | Callable[[str], Mapping[str, Any]] | None,
    workers: WorkerSpec,
) -> WhiteBox:
    """:func:`run_white_box` of one worker of several: its share first, then (chief) the merge."""
    box = WhiteBox()
    own = distributed.worker_folder(out, workers.index) / "records"
    headers: dict[tuple[str, str], dict[str, Any]] = {}
    # 1. This worker's share of every run (no waiting in between).
    for model_name, net in nets.items():
        for attack_name, (attack, epsilons) in attacks.items():
            logger.info("%s: %s on %s, its share", workers, attack_name, model_name)
            name = record_file_name(model_name, attack_name)
            part = attack_shard(
                net,
                attack,
                images,
                labels,
                shard=workers,
                epsilons=epsilons,
                batch_size=batch_size,
                records_path=own / name,
                resume=True,  # the worker's folder (opened by the caller) allows it
                overwrite=overwrite,
                progress=progress_for(progress, model_name, attack_name),
                strategy=strategy,
                attack_name=attack_name,
                model_name=model_name,
                measure=None if measure_for is None else measure_for(model_name, attack_name, net),
            )
            headers[model_name, attack_name] = part.store.header
            box.accuracy[model_name] = part.clean_accuracy
            box.worker_files[name.removesuffix(".jsonl")] = str(own / name)
    if not workers.chief:
        return box
    # 2. The chief: every worker's records, merged into the records of a single-process run.
    for model_name, net in nets.items():
        box.results[model_name] = {}
        added = extra(model_name) if callable(extra) else dict(extra or {})
        for attack_name, (attack, epsilons) in attacks.items():
            name = record_file_name(model_name, attack_name)
            logger.info("%s: waiting for the records of %s on %s", workers, attack_name, model_name)
            distributed.merge_worker_records(
                out / "records" / name,
                [
                    distributed.worker_folder(out, i) / "records" / name
                    for i in range(workers.count)
                ],
                headers[model_name, attack_name],
                workers=workers,
                resume=resume,
                overwrite=overwrite,
            )
            result = evaluate_attack(  # every image is recorded: reads the merged records
                net,
                attack,
                images,
                labels,
                epsilons=epsilons,
                batch_size=batch_size,
                records_path=out / "records" / name,
                resume=True,
                strategy=strategy,
                attack_name=attack_name,
                model_name=model_name,
                measure=None,
            )
            box.results[model_name][attack_name] = result
            box.accuracy[model_name] = result.clean_accuracy
            box.rows.append({**result.to_row(), **added})
    return box
