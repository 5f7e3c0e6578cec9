"""Transferability (paper §5.4, Table 3): adversarials crafted on a source model, tested on others.

The attacker knows only a surrogate (the *source*, model A) and may not try several distortion
targets: the attack runs once (a single epsilon, or ``None`` for C&W) on A, and its adversarial
images are fed to the defender's models (the *targets*, B — e.g. A behind a bilateral filter, an
adversarially trained network). For each target only the images classified correctly by *both*
A and that target count.

:func:`evaluate_transfer` is the only implementation (the Table 3 runs of
:func:`~tfsmooth.evaluation.reproduce_imagenet.reproduce_imagenet` call it): the images correct on
A and on at least one target are attacked once, in the fixed batches of a
:class:`~tfsmooth.evaluation.records.RecordFile` (:data:`TRANSFER_RECORDS_FORMAT`; every attack
call padded to the same size, so a resumed run attacks the same batches as an uninterrupted one),
and each adversarial is tested on every target. With ``records_path`` the per-image records go to
a JSONL file and an interrupted run can be resumed.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.attacks.base import Attack, FixedEpsilonAttack, as_model
from tfsmooth.evaluation import metrics
from tfsmooth.evaluation.protocol import _json_float, _make_progress
from tfsmooth.evaluation.records import (
    TRANSFER_RECORDS_FORMAT,
    RecordFile,
    data_fingerprint,
    model_fingerprint,
)
from tfsmooth.models.base import Model

__all__ = ["TransferResult", "evaluate_transfer"]

#: Name of the target in the records when ``targets`` is a single model.
SINGLE_TARGET = "target"


@dataclasses.dataclass
class TransferResult:
    """Outcome of :func:`evaluate_transfer` for one target (per-image arrays have length ``n0``).

    Attributes:
        n0: number of test images.
        n: number classified correctly by both the source and this target.
        n_success: number of those whose adversarial fools this target.
        psuc_source: success probability on the source model (white box), over the ``n``.
        psuc_target: success probability of the same images on the target, over the ``n``
            (``n_success / n``; ``NaN`` if ``n = 0``) — the ``Psuc`` of Table 3.
        mean_l2: conditional mean L2 distortion over the successes on the target (``NaN`` if
            none) — the ``D`` of Table 3.
        mean_l2_source: the same over the successes on the source (among the ``n``).
        epsilon: the single distortion target of the attack (``None`` for a minimization one).
        seconds: attack wall time (summed over the records, resumed runs included).
        correct: bool ``[n0]`` correct on both models.
        success_source: bool ``[n0]`` counted and fooling the source.
        success_target: bool ``[n0]`` counted and fooling the target.
        l2: float64 ``[n0]`` distortion of the adversarial image (``NaN`` where not counted).
    """

    n0: int
    n: int
    n_success: int
    psuc_source: float
    psuc_target: float
    mean_l2: float
    mean_l2_source: float
    epsilon: float | None
    seconds: float
    correct: np.ndarray
    success_source: np.ndarray
    success_target: np.ndarray
    l2: np.ndarray

    def to_row(self) -> dict[str, Any]:
        """A flat JSON-friendly summary (``NaN`` as ``None``): the numbers of a Table 3 row.

        Example:
            >>> r = TransferResult(2, 1, 1, 1.0, 1.0, 0.5, 0.5, 0.1, 0.01, np.array([True, False]),
            ...                    np.array([True, False]), np.array([True, False]),
            ...                    np.array([0.5, np.nan]))
            >>> r.to_row()["psuc"], r.to_row()["n_success"]
            (1.0, 1)
        """

        def clean(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return {
            "n0": self.n0,
            "n": self.n,
            "n_success": self.n_success,
            "psuc": clean(self.psuc_target),
            "mean_l2": clean(self.mean_l2),
            "psuc_source": clean(self.psuc_source),
            "mean_l2_source": clean(self.mean_l2_source),
            "epsilon": self.epsilon,
            "seconds": round(self.seconds, 3),
        }


def _check_targets(targets: Any) -> tuple[dict[str, Model], bool]:
    """``({name: model}, single)``; a single model is named :data:`SINGLE_TARGET`."""
    if isinstance(targets, Mapping):
        if not targets:
            raise ValueError("`targets` must name at least one model, got an empty dict")
        for name in targets:
            if not isinstance(name, str) or not name:
                raise TypeError(f"`targets` names must be non-empty strings, got {name!r}")
        return {name: as_model(model) for name, model in targets.items()}, False
    if not callable(targets):
        raise TypeError(
            "`targets` must be a model (tfsmooth Model, Keras model or callable) or a dict "
            f"{{name: model}}, got {type(targets).__name__}"
        )
    return {SINGLE_TARGET: as_model(targets)}, True


def evaluate_transfer(
    source: Any,
    targets: Any,
    attack: Attack,
    images: Any,
    labels: Any,
    *,
    epsilon: Any = None,
    batch_size: int = 100,
    records_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: Any = None,
    source_name: str | None = None,
    attack_name: str | None = None,
) -> TransferResult | dict[str, TransferResult]:
    """Crafts adversarials on ``source`` once and evaluates them on every target (paper §5.4).

    The images classified correctly by the source and by at least one target are attacked on
    the source with the single budget ``epsilon``, in the fixed batches of ``batch_size`` images
    of the record store (each attack call padded to ``min(batch_size, N0)`` images by repeating
    the last one), and each adversarial is classified by every target. A target's numbers count
    only the images correct on both the source and that target.

    Args:
        source: the attacker's model (:class:`~tfsmooth.models.Model`, Keras model or callable).
        targets: the defender's model (same input space), or a dict ``{name: model}`` of several
            (each adversarial is crafted once and tested on all of them).
        attack: the attack.
        images: float ``[N0, H, W, C]`` in the source's bounds.
        labels: integer ``[N0]`` (aligned with the models' logits).
        epsilon: one budget for a distortion-targeting attack (required there); ``None`` for a
            minimization attack.
        batch_size: images per batch, >= 1 (part of the records' identity).
        records_path: JSONL file for the per-image records
            (:data:`~tfsmooth.evaluation.records.TRANSFER_RECORDS_FORMAT`); ``None`` keeps them in
            memory. The header identifies the run: source name and weight fingerprint, target
            names and reprs, attack name and ``repr``, epsilon, batch size, number of images,
            data fingerprint.
        resume: continue the run recorded in ``records_path`` (its header must match; a truncated
            last line is dropped and recomputed).
        overwrite: replace an existing ``records_path`` that is not resumed.
        progress: ``None``, ``True`` (a Keras progress bar) or a callable ``(done, total)``.
        source_name: the source's name in the header (default: the model's ``name``).
        attack_name: the attack's name in the header (default: its class name).

    Returns:
        A :class:`TransferResult` for a single target model, ``{name: TransferResult}`` (in the
        order of ``targets``) for a dict.

    Raises:
        ValueError: a list of epsilons (transfer allows a single target), a distortion-targeting
            attack without ``epsilon``, bad shapes or labels, an empty ``targets``, a
            ``records_path`` that exists (without ``resume`` / ``overwrite``) or records another
            run (other settings, models or data).
        TypeError: ``attack`` is not an :class:`~tfsmooth.attacks.Attack`, a model is not
            callable, a target name is not a string.

    Example:
        >>> from tfsmooth.attacks import LinfFastGradientAttack
        >>> a = tf.keras.Sequential([tf.keras.Input([4, 4, 1]), tf.keras.layers.Flatten(),
        ...                          tf.keras.layers.Dense(3)])
        >>> images = np.random.default_rng(0).uniform(size=[5, 4, 4, 1]).astype("float32")
        >>> labels = np.argmax(a(images), axis=1)
        >>> result = evaluate_transfer(a, a, LinfFastGradientAttack(), images, labels, epsilon=1.0)
        >>> result.psuc_source == result.psuc_target
        True
        >>> both = evaluate_transfer(a, {"a": a, "b": a}, LinfFastGradientAttack(), images,
        ...                          labels, epsilon=1.0)
        >>> sorted(both), both["b"].n_success == result.n_success
        (['a', 'b'], True)
    """
    if not isinstance(attack, Attack):
        raise TypeError(f"`attack` must be a tfsmooth.attacks.Attack, got {type(attack).__name__}")
    if isinstance(epsilon, (list, tuple, np.ndarray)):
        raise ValueError(f"transferability uses a single epsilon, got {epsilon!r}")
    if isinstance(attack, FixedEpsilonAttack) and epsilon is None:
        raise ValueError(f"{type(attack).__name__} targets a distortion: pass `epsilon`")
    if epsilon is not None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.number)):
            raise TypeError(f"`epsilon` must be a number or None, got {epsilon!r}")
        epsilon = epsilon.item() if isinstance(epsilon, np.generic) else epsilon  # as JSON
    batch_size = v.check_int_at_least(batch_size, "batch_size", 1)
    for flag, value in (("resume", resume), ("overwrite", overwrite)):
        if not isinstance(value, bool):
            raise TypeError(f"`{flag}` must be a bool, got {value!r}")
    for key, name in (("source_name", source_name), ("attack_name", attack_name)):
        if name is not None and (not isinstance(name, str) or not name):
            raise TypeError(f"`{key}` must be a non-empty string or None, got {name!r}")
    source = as_model(source)
    models, single = _check_targets(targets)
    images_t = v.check_image_batch(images, "images", bounds=source.bounds)
    if isinstance(images, np.ndarray) and images.dtype == images_t.dtype.as_numpy_dtype:
        images_np = images  # no copy of a large data set
    else:
        images_np = images_t.numpy()
    n0 = int(images_np.shape[0])
    labels_np = np.asarray(labels)
    if labels_np.shape != (n0,) or not np.issubdtype(labels_np.dtype, np.integer):
        raise ValueError(
            f"`labels` must be integers of shape ({n0},), got {labels_np.dtype} {labels_np.shape}"
        )
    labels_np = labels_np.astype(np.int64)
    names = sorted(models)
    header = {
        "format": TRANSFER_RECORDS_FORMAT,
        "model": source_name or source.name,
        "model_fingerprint": model_fingerprint(source),
        "targets": names,
        "target_models": {name: repr(models[name]) for name in names},
        "attack": attack_name or type(attack).__name__,
        "attack_config": repr(attack),
        "epsilons": epsilon,
        "batch_size": batch_size,
        "n_images": n0,
        "data_fingerprint": data_fingerprint(images_np, labels_np),
    }
    with RecordFile(records_path, header, resume=resume, overwrite=overwrite) as store:
        if not store.complete:
            _run(store, source, models, attack, images_np, labels_np, epsilon, batch_size, progress)
        records = [store.records[i] for i in range(n0)]
    results = {name: _summary(records, name, epsilon) for name in models}
    return results[SINGLE_TARGET] if single else results


def _run(
    store: RecordFile,
    source: Model,
    targets: dict[str, Model],
    attack: Attack,
    images: np.ndarray,
    labels: np.ndarray,
    epsilon: float | None,
    batch_size: int,
    progress: Any,
) -> None:
    """Attacks the missing batches of ``store`` and records every image (one record each)."""
    n0 = images.shape[0]
    names = sorted(targets)
    clean_source = source.predict(images, batch_size).numpy() == labels
    correct = {
        name: clean_source & (targets[name].predict(images, batch_size).numpy() == labels)
        for name in names
    }
    chosen = np.logical_or.reduce([correct[name] for name in names])
    size = min(batch_size, n0)
    report = _make_progress(progress, n0)
    for batch in store.batches(batch_size):
        if batch.missing.size:
            started = time.perf_counter()
            idx = batch.indices[chosen[batch.indices]]
            ok = np.zeros(idx.size, bool)
            l2 = np.zeros(idx.size)
            predicted = {name: np.zeros(idx.size, np.int64) for name in names}
            if idx.size:
                pad = np.concatenate([idx, np.repeat(idx[-1:], size - idx.size)])
                x = tf.constant(images[pad])
                result = attack(source, x, tf.constant(labels[pad]), epsilons=epsilon)
                clipped = result.clipped[0] if isinstance(result.clipped, list) else result.clipped
                adversarial = clipped[: idx.size]
                ok = np.asarray(result.success)[0][: idx.size]
                delta = tf.reshape(adversarial - x[: idx.size], [idx.size, -1])
                l2 = tf.norm(delta, axis=1).numpy()
                for name in names:
                    predicted[name] = targets[name].predict(adversarial, batch_size).numpy()
            seconds = (time.perf_counter() - started) / batch.indices.size
            position = {int(index): j for j, index in enumerate(idx)}
            records = []
            for index in batch.missing:
                index = int(index)
                j = position.get(index)
                label = int(labels[index])
                records.append(
                    {
                        "index": index,
                        "label": label,
                        "attacked": j is not None,
                        "correct": {name: bool(correct[name][index]) for name in names},
                        "success_source": j is not None and bool(ok[j]),
                        "l2": None if j is None else _json_float(l2[j]),
                        "fooled": {
                            name: j is not None and int(predicted[name][j]) != label
                            for name in names
                        },
                        "seconds": seconds,
                    }
                )
            store.append(records, batch=batch.id)
        if report:
            report(len(store.records))


def _summary(records: list[dict[str, Any]], name: str, epsilon: float | None) -> TransferResult:
    """The :class:`TransferResult` of target ``name`` from the records of a run."""
    correct = np.array([r["correct"][name] for r in records], bool)
    attacked_l2 = np.array([np.nan if r["l2"] is None else r["l2"] for r in records], np.float64)
    success_source = np.array([r["success_source"] for r in records], bool) & correct
    success_target = np.array([r["fooled"][name] for r in records], bool) & correct
    return TransferResult(
        n0=len(records),
        n=int(correct.sum()),
        n_success=int(success_target.sum()),
        psuc_source=metrics.success_probability(success_source, correct),
        psuc_target=metrics.success_probability(success_target, correct),
        mean_l2=metrics.conditional_mean_distortion(attacked_l2, success_target),
        mean_l2_source=metrics.conditional_mean_distortion(attacked_l2, success_source),
        epsilon=epsilon,
        seconds=float(sum(r["seconds"] or 0.0 for r in records)),
        correct=correct,
        success_source=success_source,
        success_target=success_target,
        l2=np.where(correct, attacked_l2, np.nan),
    )
