r"""The evaluation protocol of the paper (§5.1): batches, multi-ε runs, resumable JSONL records.

:func:`evaluate_attack` keeps the images the model classifies correctly (``N`` of ``N0``), runs
the attack batch by batch, and reduces each image to one record:

- *distortion-targeting* attacks (FGSM, I-FGSM, PGD2, sPGD2) run once per epsilon; an image is
  a success if any run succeeds and its distortion ``D`` is the smallest L2 over the successful
  runs (:func:`~tfsmooth.evaluation.metrics.combine_multi_epsilon`);
- *optimality-targeting* attacks (C&W, sC&W; ``epsilons=None``) run once; success is the
  attack's and ``D`` the L2 distortion of its output.

Records (one JSON object per line, written, flushed and fsynced once per batch) make a run
resumable; they are kept by :class:`~tfsmooth.evaluation.records.RecordFile` (locked against a
second writer, fixed batches, checked on read). The file starts with a header describing the run
(model, attack, epsilons, batch size, fingerprint of the data and of the model weights, package
version) and each record holds ``index`` (in the input set), ``model``, ``attack``, ``label``,
``correct``, ``clean_label`` (prediction on the clean image), ``success``, ``l2``, ``linf``,
``best_epsilon``, ``adv_label`` (prediction on the adversarial image), ``batch``, ``seconds``
(the image's share of its batch's wall time) and ``run`` (the run fingerprint), plus
``measures`` and the fields of an ``annotate`` hook when given. Calling again with ``resume=True`` skips the images already
recorded; a batch of which only part was recorded is attacked again as a whole (same batch
composition, so the same results for deterministic attacks) and only its missing records are
written.

Robustness: a truncated *last* line (the mark of a killed process) is dropped and that image
recomputed; any other unreadable or invalid line, a header that does not match this run, or a
file that is not a tfsmooth record file raises :class:`ValueError` and leaves the file untouched
(``overwrite=True`` starts over instead). :data:`RECORDS_FORMAT`, :func:`read_records`,
:func:`data_fingerprint` and :func:`model_fingerprint` live in
:mod:`~tfsmooth.evaluation.records` and are importable from here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from concurrent import futures as concurrent_futures
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.attacks.base import Attack, FixedEpsilonAttack, as_model
from tfsmooth.evaluation import metrics
from tfsmooth.evaluation.records import (
    IDENTITY_KEYS,
    RECORDS_FORMAT,
    RecordFile,
    data_fingerprint,
    model_fingerprint,
    read_records,
)
from tfsmooth.models.base import Model

logger = logging.getLogger(__name__)

__all__ = [
    "RECORDS_FORMAT",
    "EvaluationResult",
    "ShardRun",
    "attack_shard",
    "data_fingerprint",
    "evaluate_attack",
    "model_fingerprint",
    "read_records",
]


# -- result ------------------------------------------------------------------------------------
@dataclasses.dataclass
class EvaluationResult:
    """Outcome of :func:`evaluate_attack` (all per-image arrays have length ``n0``).

    Attributes:
        model: model name.
        attack: attack name.
        n0: number of test images.
        n: number classified correctly without attack.
        n_success: number of correctly classified images the attack fooled.
        psuc: :math:`P_{suc} = N_{suc} / N` (``NaN`` if ``n == 0``).
        mean_l2: conditional mean L2 distortion over the successes (``NaN`` if none).
        seconds: attack wall time summed over the batches (including earlier, resumed runs).
        clean_accuracy: ``n / n0``.
        labels: int64 ``[n0]`` true labels.
        correct: bool ``[n0]``.
        success: bool ``[n0]`` (false where not ``correct``).
        l2: float64 ``[n0]`` distortion of the chosen adversarial (``NaN`` where no success).
        linf: float64 ``[n0]`` (``NaN`` where no success).
        best_epsilon: float64 ``[n0]`` the epsilon of the chosen run (``NaN`` where no success
            or for attacks without epsilon).
        adv_label: int64 ``[n0]`` prediction on the adversarial image (the clean prediction
            where the image was not attacked).
        records_path: the JSONL file, if any.
        measures: ``{name: float64 [n0]}`` per-image values of the ``measure`` of
            :func:`evaluate_attack` (``NaN`` where none).
    """

    model: str
    attack: str
    n0: int
    n: int
    n_success: int
    psuc: float
    mean_l2: float
    seconds: float
    clean_accuracy: float
    labels: np.ndarray
    correct: np.ndarray
    success: np.ndarray
    l2: np.ndarray
    linf: np.ndarray
    best_epsilon: np.ndarray
    adv_label: np.ndarray
    records_path: str | None = None
    measures: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)

    def operating_characteristic(self) -> tuple[np.ndarray, np.ndarray]:
        """``(thresholds, P(D))`` of eq. 21 over the correctly classified images."""
        mask = self.correct
        if self.n == 0:
            return np.zeros([0]), np.zeros([0])
        return metrics.operating_characteristic(self.l2[mask], self.success[mask], self.n)

    def to_row(self) -> dict[str, Any]:
        """A flat, JSON-friendly summary (``NaN`` become ``None``)."""
        return {
            "model": self.model,
            "attack": self.attack,
            "n0": self.n0,
            "n": self.n,
            "n_success": self.n_success,
            "psuc": _none_if_nan(self.psuc),
            "mean_l2": _none_if_nan(self.mean_l2),
            "seconds": round(float(self.seconds), 3),
            "clean_accuracy": _none_if_nan(self.clean_accuracy),
            **{
                f"mean_{name}": _none_if_nan(
                    float(np.mean(values[self.success & np.isfinite(values)]))
                    if np.any(self.success & np.isfinite(values))
                    else float("nan")
                )
                for name, values in self.measures.items()
            },
        }

    @classmethod
    def from_records(
        cls,
        records: list[dict[str, Any]],
        *,
        n0: int,
        model: str,
        attack: str,
        records_path: str | None = None,
    ) -> EvaluationResult:
        """Rebuilds a result from the per-image records (one per index ``0..n0-1``)."""
        by_index = {int(r["index"]): r for r in records}
        missing = sorted(set(range(n0)) - set(by_index))
        if missing:
            raise ValueError(f"records miss {len(missing)} images, e.g. index {missing[0]}")

        def column(key: str, dtype: Any, default: Any = np.nan) -> np.ndarray:
            values = [by_index[i][key] for i in range(n0)]
            return np.array([default if x is None else x for x in values], dtype=dtype)

        labels = column("label", np.int64)
        correct = column("correct", bool)
        success = column("success", bool) & correct
        l2 = column("l2", np.float64)
        n = int(correct.sum())
        n_success = int(success.sum())
        return cls(
            model=model,
            attack=attack,
            n0=n0,
            n=n,
            n_success=n_success,
            psuc=metrics.success_probability(success, correct),
            mean_l2=metrics.conditional_mean_distortion(l2, success),
            seconds=float(sum(float(by_index[i].get("seconds") or 0.0) for i in range(n0))),
            clean_accuracy=n / n0 if n0 else float("nan"),
            labels=labels,
            correct=correct,
            success=success,
            l2=l2,
            linf=column("linf", np.float64),
            best_epsilon=column("best_epsilon", np.float64),
            adv_label=column("adv_label", np.int64, -1),
            records_path=records_path,
            measures={
                name: np.array(
                    [
                        np.nan
                        if (by_index[i].get("measures") or {}).get(name) is None
                        else by_index[i]["measures"][name]
                        for i in range(n0)
                    ],
                    np.float64,
                )
                for name in sorted(
                    {k for r in by_index.values() for k in (r.get("measures") or {})}
                )
            },
        )


def _none_if_nan(value: float) -> float | None:
    value = float(value)
    return None if math.isnan(value) else value


def _json_float(value: Any) -> float | None:
    value = float(value)
    return None if not math.isfinite(value) else value


# -- input checks ------------------------------------------------------------------------------
def _check_labels(labels: Any, n: int) -> np.ndarray:
    array = np.asarray(labels)
    if array.ndim != 1 or array.shape[0] != n:
        raise ValueError(f"`labels` must have shape ({n},), got {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"`labels` must be integers, got dtype {array.dtype}")
    return array.astype(np.int64)


def _epsilon_spec(epsilons: Any) -> list[float] | float | None:
    if epsilons is None:
        return None
    if isinstance(epsilons, (list, tuple, np.ndarray)):
        values = [float(e) for e in np.asarray(epsilons, dtype=np.float64).reshape(-1)]
        if not values:
            raise ValueError("`epsilons` must not be an empty list")
        return values
    return float(epsilons)


def _make_progress(progress: Any, total: int) -> Callable[[int], None] | None:
    if progress is None or progress is False:
        return None
    if progress is True:
        import keras

        bar = keras.utils.Progbar(total, unit_name="image")
        return lambda done: bar.update(done)
    if callable(progress):
        return lambda done: progress(done, total)
    raise TypeError(f"`progress` must be None, a bool or a callable, got {progress!r}")


# -- attack on one batch -----------------------------------------------------------------------
def _attack_chunk(
    model: Model, attack: Attack, images: tf.Tensor, labels: tf.Tensor, epsilons: Any
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """Attacks one chunk; returns success ``[K, n]``, L2 ``[K, n]``, Linf ``[K, n]``, labels
    ``[K, n]`` and the adversarials ``[K, n, H, W, C]``."""
    result = attack(model, images, labels, epsilons=epsilons)
    clipped = result.clipped if isinstance(result.clipped, list) else [result.clipped]
    adversarials = tf.stack(clipped, axis=0)  # [K, n, H, W, C]
    delta = tf.reshape(adversarials - images[None], [len(clipped), tf.shape(images)[0], -1])
    l2 = tf.norm(delta, axis=-1)
    linf = tf.reduce_max(tf.abs(delta), axis=-1)
    # the attack's own predictions (the forward pass that decided `success`); an attack of
    # another package may not give them: one forward pass per epsilon then
    predicted = getattr(result, "predicted", None)
    if predicted is None:
        predicted = tf.stack([tf.argmax(model(a), axis=-1) for a in clipped], axis=0)
    return tf.cast(result.success, tf.bool), l2, linf, tf.cast(predicted, tf.int64), adversarials


def _padded(array: np.ndarray, size: int) -> np.ndarray:
    """``array`` with its last row repeated up to ``size`` rows."""
    missing = size - array.shape[0]
    if missing <= 0:
        return array
    return np.concatenate([array, np.repeat(array[-1:], missing, axis=0)])


def _attack_batch(
    model: Model,
    attack: Attack,
    images: np.ndarray,
    labels: np.ndarray,
    epsilons: Any,
    strategy: Any,
    size: int,
    concurrent: bool = True,
) -> tuple[np.ndarray, ...]:
    """Attacks a batch, split evenly over the devices of ``strategy`` if given.

    Every call of the attack gets the same number of images (``size``, or ``size / replicas``
    rounded up): short chunks are padded by repeating their last image and the padding is
    dropped from the results. One input shape means one trace of the attack's ``tf.function``
    (varying batch sizes would retrace it, and relaxed traces break some attack loops).

    With a strategy, each replica's chunk runs under ``tf.device(replica device)`` from its own
    Python thread (``concurrent``; TensorFlow releases the GIL while it executes ops, so the
    replicas compute at the same time, with no host synchronization between them) and the
    threads are joined; ``concurrent=False`` runs the chunks one after the other (used for the
    first batch of a run, so the attack's ``tf.function`` is traced once, by one thread). The
    chunks and their results are the same either way. (``strategy.run`` would trace the
    attack's ``tf.function`` concurrently from the replica threads, and wants distributed
    values; dispatching per device is simple and exact.)
    """
    n = images.shape[0]
    devices = [None] if strategy is None else list(strategy.extended.worker_devices)
    per_device = -(-max(size, n) // len(devices))
    jobs = []
    for number, device in enumerate(devices):
        start = number * per_device
        if start >= n:
            break
        chunk = slice(start, start + per_device)
        jobs.append(
            (
                device,
                _padded(images[chunk], per_device),
                _padded(labels[chunk], per_device),
                min(per_device, n - start),
            )
        )

    def run(job: tuple[Any, np.ndarray, np.ndarray, int]) -> tuple[np.ndarray, ...]:
        device, x, y, real = job
        with contextlib.ExitStack() as stack:
            if device is not None:
                stack.enter_context(tf.device(device))
            outputs = _attack_chunk(model, attack, tf.constant(x), tf.constant(y), epsilons)
            return tuple(np.asarray(o)[:, :real] for o in outputs)

    if concurrent and len(jobs) > 1:
        with concurrent_futures.ThreadPoolExecutor(
            len(jobs), thread_name_prefix="tfsmooth-replica"
        ) as pool:
            parts = list(pool.map(run, jobs))
    else:
        parts = [run(job) for job in jobs]
    return tuple(np.concatenate([p[i] for p in parts], axis=1) for i in range(len(parts[0])))


#: ``measure(indices, clean, adversarial) -> {name: per-image values}`` (see evaluate_attack).
Measure = Callable[[np.ndarray, np.ndarray, np.ndarray], Mapping[str, Any]]
#: ``annotate(records, clean, adversarial) -> None``: adds fields to new records (see
#: evaluate_attack).
Annotate = Callable[[list[dict[str, Any]], np.ndarray, np.ndarray], None]
#: ``keep(record) -> bool``: whether a recorded image stays recorded on resume (see
#: evaluate_attack).
Keep = Callable[[Mapping[str, Any]], bool]


# -- the runner --------------------------------------------------------------------------------
def evaluate_attack(
    model: Any,
    attack: Attack,
    images: Any,
    labels: Any,
    *,
    epsilons: Any = None,
    batch_size: int = 100,
    records_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: Any = None,
    strategy: Any = None,
    attack_name: str | None = None,
    model_name: str | None = None,
    measure: Measure | None = None,
    header: Mapping[str, Any] | None = None,
    annotate: Annotate | None = None,
    keep: Keep | None = None,
) -> EvaluationResult:
    """Evaluates an attack on a test set with the protocol of the paper (§5.1).

    Args:
        model: a :class:`~tfsmooth.models.Model`, Keras model or callable (bounds ``(0, 1)``).
        attack: a :class:`~tfsmooth.attacks.Attack`.
        images: float ``[N0, H, W, C]`` in the model's bounds.
        labels: integer ``[N0]``.
        epsilons: for a :class:`~tfsmooth.attacks.FixedEpsilonAttack` a number or a list (one
            run each; success if any, distortion the minimum over the successful runs); for a
            minimization attack ``None`` (one run).
        batch_size: images per batch (the batches are fixed slices of the input set, so the
            batch ids of the records are stable across resumed runs).
        records_path: optional JSONL file of per-image records (see the module docstring).
        resume: continue the run recorded in ``records_path`` (by the same fixed batches).
        overwrite: start over if ``records_path`` exists and is not resumed (or cannot be:
            another run, corrupted).
        progress: ``None``/``False`` (silent), ``True`` (a ``keras.utils.Progbar``) or a callable
            ``progress(done, total)`` called after each batch.
        strategy: optional ``tf.distribute.Strategy`` (e.g. ``MirroredStrategy``): each batch
            is split evenly over its replica devices (``strategy.extended.worker_devices``),
            the chunks attacked concurrently, each on its device from its own thread (the
            first batch one chunk after the other, so the attack is traced once), and the
            results gathered in order. Attacks that treat every image on its own give the
            same results as without a strategy; C&W's early abort is decided per call, i.e.
            per device's chunk, so its results can depend on the number of devices.
        attack_name: name for records and rows (default: the attack's class name).
        model_name: name for records and rows (default: the model's name).
        measure: optional ``measure(indices, clean, adversarial) -> {name: values}`` called once
            per batch on the successful images not recorded yet (their indices ``[m]``, clean
            and adversarial images ``[m, H, W, C]``, the adversarial of the best epsilon),
            returning per-image values ``[m]`` (e.g. :func:`tfsmooth.metrics.perceptual_report`);
            stored in each record under ``"measures"`` and averaged over the successes in the
            rows (``mean_<name>``). It may also write files (the adversarials) as a side effect.
        header: optional keys added to the records' header that identify the run too (JSON
            values, e.g. the file names of the images): a resumed run must have the same. Not
            the keys the runner sets itself (``model``, ``attack``, ``epsilons``, ...).
        annotate: optional ``annotate(records, clean, adversarial)`` called once per batch,
            after ``measure``, on the new records (a list of dicts: the images of the batch not
            recorded yet, in index order), their clean images ``[r, H, W, C]`` and the
            adversarial each record describes (the one of the best epsilon where the attack
            succeeded, of the last epsilon where it failed, the clean image where the image was
            not attacked). It may add fields to the records (JSON values) and write files; it
            must not change the runner's fields.
        keep: optional ``keep(record) -> bool``: on resume, the recorded images for which it is
            false are attacked again (their batch as a whole, as for an interrupted run), e.g.
            records whose files are missing.

    Returns:
        :class:`EvaluationResult`.

    Raises:
        ValueError: bad shapes or sizes; ``records_path`` exists and neither ``resume`` nor
            ``overwrite`` is true; a record file that is foreign, corrupted (other than a
            truncated last line) or belongs to another run (different model, attack, epsilons,
            data or batch size), unless ``overwrite``.
        RunLockedError: another run writes to ``records_path`` (an ``OSError``).
        TypeError: ``attack`` is not an attack, bad ``progress``.

    Example:
        >>> from tfsmooth.attacks import LinfFastGradientAttack
        >>> net = tf.keras.Sequential([tf.keras.Input([4, 4, 1]), tf.keras.layers.Flatten(),
        ...                            tf.keras.layers.Dense(3)])
        >>> images = np.random.default_rng(0).uniform(size=[6, 4, 4, 1]).astype("float32")
        >>> labels = np.argmax(net(images), axis=1)
        >>> result = evaluate_attack(net, LinfFastGradientAttack(), images, labels,
        ...                          epsilons=[0.1, 1.0], batch_size=4)
        >>> result.n0, result.n, result.psuc
        (6, 6, 1.0)
    """
    run = _run(
        model,
        attack,
        images,
        labels,
        epsilons=epsilons,
        batch_size=batch_size,
        records_path=records_path,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        strategy=strategy,
        attack_name=attack_name,
        model_name=model_name,
        measure=measure,
        header=header,
        annotate=annotate,
        keep=keep,
        shard=None,
    )
    return EvaluationResult.from_records(
        list(run.store.records.values()),
        n0=run.store.n_images,
        model=run.model_name,
        attack=run.attack_name,
        records_path=None if records_path is None else str(records_path),
    )


@dataclasses.dataclass
class ShardRun:
    """What :func:`attack_shard` returns: one worker's share of a run, recorded.

    Attributes:
        store: the (closed) :class:`~tfsmooth.evaluation.records.RecordFile` of this worker:
            its ``header`` (the run's header, that of the merged file too) and its
            ``records`` (``{index: record}``, this worker's batches only).
        model_name: the model's name in the records.
        attack_name: the attack's name in the records.
        clean_accuracy: accuracy of the model on all ``n0`` images (no attack).
    """

    store: RecordFile
    model_name: str
    attack_name: str
    clean_accuracy: float


def attack_shard(
    model: Any,
    attack: Attack,
    images: Any,
    labels: Any,
    *,
    shard: Any,
    epsilons: Any = None,
    batch_size: int = 100,
    records_path: str | os.PathLike[str] | None = None,
    resume: bool = False,
    overwrite: bool = False,
    progress: Any = None,
    strategy: Any = None,
    attack_name: str | None = None,
    model_name: str | None = None,
    measure: Measure | None = None,
    header: Mapping[str, Any] | None = None,
    annotate: Annotate | None = None,
    keep: Keep | None = None,
) -> ShardRun:
    """One worker's share of :func:`evaluate_attack`: the fixed batches it owns, recorded.

    Attacks, with exactly the protocol of :func:`evaluate_attack`, only the fixed batches ``b``
    with ``shard.owns(b)`` (``b % shard.count == shard.index``) and records them in
    ``records_path`` (resumable the same way). The records of all the workers together are the
    records of :func:`evaluate_attack` on the same arguments (same batches, same header);
    :func:`tfsmooth.evaluation.distributed.merge_worker_records` joins them.

    Args:
        model: as for :func:`evaluate_attack`, and so are the arguments not listed here.
        attack: the attack.
        images: float ``[N0, H, W, C]``, all the images of the run (not only this share).
        labels: integer ``[N0]``.
        shard: a :class:`~tfsmooth.evaluation.distributed.WorkerSpec` (or anything with
            ``owns(batch) -> bool``).
        progress: as for :func:`evaluate_attack`, counting this worker's images.

    Returns:
        :class:`ShardRun`.

    Raises:
        ValueError: as :func:`evaluate_attack`.
        TypeError: as :func:`evaluate_attack`, or a ``shard`` without ``owns``.
        RunLockedError: another run writes to ``records_path``.

    Example:
        >>> from tfsmooth.attacks import LinfFastGradientAttack
        >>> from tfsmooth.evaluation.distributed import WorkerSpec
        >>> net = tf.keras.Sequential([tf.keras.Input([4, 4, 1]), tf.keras.layers.Flatten(),
        ...                            tf.keras.layers.Dense(3)])
        >>> images = np.random.default_rng(0).uniform(size=[6, 4, 4, 1]).astype("float32")
        >>> labels = np.argmax(net(images), axis=1)
        >>> part = attack_shard(net, LinfFastGradientAttack(), images, labels,
        ...                     shard=WorkerSpec(1, 2), epsilons=1.0, batch_size=2)
        >>> sorted(part.store.records)  # batch 1 of the batches 0, 1, 2
        [2, 3]
    """
    if not callable(getattr(shard, "owns", None)):
        raise TypeError(f"`shard` must be a WorkerSpec, got {type(shard).__name__}")
    return _run(
        model,
        attack,
        images,
        labels,
        epsilons=epsilons,
        batch_size=batch_size,
        records_path=records_path,
        resume=resume,
        overwrite=overwrite,
        progress=progress,
        strategy=strategy,
        attack_name=attack_name,
        model_name=model_name,
        measure=measure,
        header=header,
        annotate=annotate,
        keep=keep,
        shard=shard,
    )


def _run(
    model: Any,
    attack: Attack,
    images: Any,
    labels: Any,
    *,
    epsilons: Any,
    batch_size: int,
    records_path: str | os.PathLike[str] | None,
    resume: bool,
    overwrite: bool,
    progress: Any,
    strategy: Any,
    attack_name: str | None,
    model_name: str | None,
    measure: Measure | None,
    header: Mapping[str, Any] | None,
    annotate: Annotate | None,
    keep: Keep | None,
    shard: Any,
) -> ShardRun:
    """The runner of :func:`evaluate_attack` and :func:`attack_shard` (all batches if no
    ``shard``)."""
    if not isinstance(attack, Attack):
        raise TypeError(f"`attack` must be a tfsmooth.attacks.Attack, got {type(attack).__name__}")
    if not isinstance(resume, bool):
        raise TypeError(f"`resume` must be a bool, got {resume!r}")
    batch_size = v.check_int_at_least(batch_size, "batch_size", 1)
    model = as_model(model)
    images_t = v.check_image_batch(images, "images", bounds=model.bounds)
    images_np = np.asarray(images_t.numpy())
    n0 = int(images_np.shape[0])
    labels_np = _check_labels(labels, n0)
    if n0 < 1:
        raise ValueError("`images` must hold at least one image, got 0")
    eps = _epsilon_spec(epsilons)
    if isinstance(attack, FixedEpsilonAttack) and eps is None:
        raise ValueError(f"{type(attack).__name__} targets a distortion: pass `epsilons`")
    eps_list = eps if isinstance(eps, list) else [eps]
    model_name = model_name or model.name
    attack_name = attack_name or type(attack).__name__

    for hook, name in ((measure, "measure"), (annotate, "annotate"), (keep, "keep")):
        if hook is not None and not callable(hook):
            raise TypeError(f"`{name}` must be callable or None, got {type(hook).__name__}")
    run_header = {
        "format": RECORDS_FORMAT,
        "model": model_name,
        "model_fingerprint": model_fingerprint(model),
        "attack": attack_name,
        "attack_config": repr(attack),
        "epsilons": eps,
        "batch_size": batch_size,
        "n_images": n0,
        "data_fingerprint": data_fingerprint(images_np, labels_np),
    }
    if header is not None:
        if not isinstance(header, Mapping) or not all(isinstance(k, str) for k in header):
            raise TypeError(f"`header` must be a dict with string keys, got {header!r}")
        taken = sorted(set(header) & {*run_header, "version", "run"})
        if taken:
            raise ValueError(f"`header` must not set the runner's own keys, got {taken}")
        run_header.update(header)
    store = RecordFile(
        records_path,
        run_header,
        identity=(*IDENTITY_KEYS, *(header or {})),
        resume=resume,
        overwrite=overwrite,
    )
    owned = [batch for batch in store.batches(batch_size) if shard is None or shard.owns(batch.id)]
    report = _make_progress(progress, sum(batch.indices.size for batch in owned))
    traced = False
    with store:
        if records_path is not None:
            logger.info(
                "%s on %s: %d of %d images already recorded",
                attack_name,
                model_name,
                len(store.records),
                n0,
            )
        if keep is not None:
            dropped = [i for i, record in store.records.items() if not keep(record)]
            if dropped:
                logger.warning(
                    "%s: %d recorded image(s) not kept (e.g. image %d): attacking them again",
                    records_path,
                    len(dropped),
                    min(dropped),
                )
                store.discard(dropped)
        clean = model.predict(images_t, batch_size=batch_size).numpy()
        correct = clean == labels_np
        for batch in store.batches(batch_size):
            if shard is not None and not shard.owns(batch.id):
                continue
            if batch.missing.size:
                new = _evaluate_batch(
                    model,
                    attack,
                    images_np,
                    labels_np,
                    batch.indices,
                    batch.missing,
                    correct,
                    clean,
                    eps_list,
                    eps,
                    strategy,
                    min(batch_size, n0),
                    measure,
                    concurrent=traced,
                    names=(model_name, attack_name),
                    annotate=annotate,
                )
                traced = True
                store.append(new, batch=batch.id)
            if report:
                report(sum(int(i) in store.records for b in owned for i in b.indices))

    return ShardRun(
        store=store,
        model_name=model_name,
        attack_name=attack_name,
        clean_accuracy=float(np.mean(correct)),
    )


def _evaluate_batch(
    model: Model,
    attack: Attack,
    images: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    missing: np.ndarray,
    correct: np.ndarray,
    clean: np.ndarray,
    eps_list: list[Any],
    eps: Any,
    strategy: Any,
    size: int,
    measure: Measure | None = None,
    *,
    concurrent: bool = True,
    names: tuple[str, str],
    annotate: Annotate | None = None,
) -> list[dict[str, Any]]:
    """Attacks the images ``indices`` (all of one batch); returns the records of ``missing``
    (the images of the batch not recorded yet), in index order."""
    started = time.perf_counter()
    attacked = indices[correct[indices]]
    results: dict[int, dict[str, Any]] = {}
    chosen_images: dict[int, np.ndarray] = {}  # index -> the adversarial its record describes
    wanted = {int(i) for i in missing}
    if attacked.size:
        success, l2, linf, predicted, adversarials = _attack_batch(
            model, attack, images[attacked], labels[attacked], eps, strategy, size, concurrent
        )
        ok, distance, best = metrics.combine_multi_epsilon(success, l2, return_index=True)
        for j, index in enumerate(attacked):
            k = int(best[j]) if ok[j] else len(eps_list) - 1
            epsilon = eps_list[k] if ok[j] else None
            results[int(index)] = {
                "success": bool(ok[j]),
                "l2": _json_float(distance[j]) if ok[j] else None,
                "linf": _json_float(linf[k, j]) if ok[j] else None,
                "best_epsilon": None if epsilon is None else float(epsilon),
                "adv_label": int(predicted[k, j]),
            }
            if int(index) in wanted:
                chosen_images[int(index)] = adversarials[k, j]
    seconds = (time.perf_counter() - started) / len(indices)
    if measure is not None and attacked.size:
        chosen = np.array([j for j in np.flatnonzero(ok) if int(attacked[j]) in wanted], np.int64)
        if chosen.size:
            values = measure(
                attacked[chosen], images[attacked[chosen]], adversarials[best[chosen], chosen]
            )
            for name, column in values.items():
                column = np.asarray(column, np.float64).reshape(-1)
                if column.shape[0] != chosen.size:
                    raise ValueError(
                        f"`measure` returned {column.shape[0]} values of {name!r} for "
                        f"{chosen.size} images"
                    )
                for position, value in zip(chosen, column):
                    measures = results[int(attacked[position])].setdefault("measures", {})
                    measures[str(name)] = _json_float(value)
    model_name, attack_name = names
    records = []
    for index in missing:
        index = int(index)
        record = {
            "index": index,
            "label": int(labels[index]),
            "correct": bool(correct[index]),
            "clean_label": int(clean[index]),
            "success": False,
            "l2": None,
            "linf": None,
            "best_epsilon": None,
            "adv_label": int(clean[index]),
            "seconds": seconds,
            "model": model_name,
            "attack": attack_name,
        }
        record.update(results.get(index, {}))
        records.append(record)
    if annotate is not None and records:
        given = [dict(record) for record in records]
        annotate(
            records,
            images[missing],
            np.stack([chosen_images.get(int(i), images[int(i)]) for i in missing]),
        )
        for before, after in zip(given, records):
            changed = sorted(k for k in before if after.get(k, object()) != before[k])
            if changed:
                raise ValueError(
                    f"`annotate` must not change the runner's fields, changed {changed} of "
                    f"image {before['index']}"
                )
    return records
