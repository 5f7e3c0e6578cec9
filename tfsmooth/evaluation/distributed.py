r"""Multi-worker runs: the fixed batches shared out over processes that meet in one folder.

A run over ``count`` workers (processes, usually on several machines) is the single-process run
cut along its fixed batches (:class:`~tfsmooth.evaluation.records.RecordFile`): worker ``i``
attacks the batches whose id satisfies ``id % count == i`` and records them in its own folder,
``<out>/workers/worker-<i>/records/<model>__<attack>.jsonl`` (its own lock and manifest, so the
workers never contend for one file; a worker that dies is rerun with the same command and
continues its records). Worker 0, the *chief*, attacks its share too, then waits until the
records of every worker cover all images, merges them into the usual
``<out>/records/<model>__<attack>.jsonl`` and writes ``results.json`` and the report. The
batches have the same composition as in a single-process run, so the merged records are the
same records (up to the ``seconds`` timing field) and the results are the same results.

The workers exchange nothing but these files: ``<out>`` must be one folder that every worker
sees (a shared file system: NFS, Lustre, a Kubernetes ``ReadWriteMany`` volume, ...). No
collective ops and no ``tf.distribute.MultiWorkerMirroredStrategy`` are needed (nor wanted: a
collective job stops as a whole when one worker dies; here a worker is rerun on its own).

The cluster is described as TensorFlow users expect, by ``TF_CONFIG``
(``{"cluster": {"worker": ["host:port", ...]}, "task": {"type": "worker", "index": i}}``); the
library never reads the environment: the command line parses ``$TF_CONFIG`` with
:meth:`WorkerSpec.from_tf_config` and passes the :class:`WorkerSpec` on.

Within one process, :func:`select_devices` turns a ``--devices`` value (``all``, ``N``,
``cpu``, device names) into the ``tf.distribute.MirroredStrategy`` whose devices
:func:`~tfsmooth.evaluation.protocol.evaluate_attack` splits each batch over (or no strategy
where there is one device).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tfsmooth.evaluation.records import RecordFile, read_records

logger = logging.getLogger(__name__)

__all__ = [
    "DeviceSelection",
    "WorkerSpec",
    "WorkerTimeoutError",
    "merge_worker_records",
    "parse_devices",
    "select_devices",
    "worker_folder",
]

#: Sub-folder of ``<out>`` holding the workers' own folders.
WORKERS_DIR = "workers"


class WorkerTimeoutError(TimeoutError):
    """The chief waited too long for another worker's records."""


@dataclasses.dataclass(frozen=True)
class WorkerSpec:
    """This process's place in a multi-worker run.

    Attributes:
        index: this worker's number, ``0 <= index < count`` (0 is the chief).
        count: number of workers.
        timeout: seconds the chief waits while no worker records anything new before it gives
            up with :class:`WorkerTimeoutError` (the clock restarts with every new record).
        poll_interval: seconds between two looks at the workers' records.
        addresses: the ``host:port`` of each task, for messages only (nothing connects to them).

    Example:
        >>> spec = WorkerSpec(1, 2)
        >>> spec.chief, spec.owns(0), spec.owns(3)
        (False, False, True)
    """

    index: int
    count: int
    timeout: float = 3600.0
    poll_interval: float = 1.0
    addresses: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("index", "count"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"`{name}` must be an integer, got {value!r}")
        if self.count < 1:
            raise ValueError(f"`count` must be at least 1, got {self.count}")
        if not 0 <= self.index < self.count:
            raise ValueError(f"`index` must be in 0..{self.count - 1}, got {self.index}")
        for name in ("timeout", "poll_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"`{name}` must be a number > 0, got {value!r}")
        if self.addresses and len(self.addresses) != self.count:
            raise ValueError(
                f"`addresses` must name the {self.count} workers, got {len(self.addresses)}"
            )

    @property
    def chief(self) -> bool:
        """Whether this is worker 0, which merges the records and writes the results."""
        return self.index == 0

    @property
    def distributed(self) -> bool:
        """Whether there is more than one worker."""
        return self.count > 1

    def owns(self, batch: int) -> bool:
        """Whether the fixed batch ``batch`` is this worker's to attack (``batch % count``)."""
        return batch % self.count == self.index

    def __str__(self) -> str:
        where = f" ({self.addresses[self.index]})" if self.addresses else ""
        return f"worker {self.index} of {self.count}{where}"

    @classmethod
    def from_tf_config(cls, config: str | Mapping[str, Any], **kwargs: Any) -> WorkerSpec | None:
        """The worker described by a ``TF_CONFIG`` value (JSON text or a parsed dict).

        The tasks are numbered as ``tf.distribute`` does: a ``"chief"`` task, if the cluster
        has one, is worker 0 and the ``"worker"`` tasks follow; otherwise ``"worker"`` 0 is the
        chief. ``"ps"`` and ``"evaluator"`` tasks have no part in an evaluation run.

        Args:
            config: the ``TF_CONFIG`` text or dict.
            **kwargs: ``timeout`` and ``poll_interval`` of the :class:`WorkerSpec`.

        Returns:
            The :class:`WorkerSpec`, or ``None`` for an empty config (no cluster).

        Raises:
            ValueError: not JSON, no ``"task"``, an unknown task type, an index outside the
                cluster.

        Example:
            >>> config = {"cluster": {"worker": ["a:2222", "b:2222"]},
            ...           "task": {"type": "worker", "index": 1}}
            >>> str(WorkerSpec.from_tf_config(json.dumps(config)))
            'worker 1 of 2 (b:2222)'
        """
        if isinstance(config, str):
            if not config.strip():
                return None
            try:
                config = json.loads(config)
            except json.JSONDecodeError as err:
                raise ValueError(f"TF_CONFIG is not valid JSON: {err}") from err
        if not isinstance(config, Mapping):
            raise ValueError(f"TF_CONFIG must be a JSON object, got {type(config).__name__}")
        cluster = config.get("cluster") or {}
        if not isinstance(cluster, Mapping):
            raise ValueError(f"TF_CONFIG `cluster` must be an object, got {cluster!r}")
        if not cluster:
            return None
        unknown = sorted(set(cluster) - {"chief", "worker"})
        if unknown:
            raise ValueError(
                f"TF_CONFIG `cluster` may hold only 'chief' and 'worker' tasks for an "
                f"evaluation run, got {unknown}"
            )
        tasks: list[tuple[str, int, str]] = []
        for kind in ("chief", "worker"):
            addresses = cluster.get(kind) or []
            if not isinstance(addresses, Sequence) or isinstance(addresses, str):
                raise ValueError(f"TF_CONFIG `cluster.{kind}` must be a list, got {addresses!r}")
            tasks += [(kind, i, str(a)) for i, a in enumerate(addresses)]
        if not tasks:
            return None
        task = config.get("task")
        if not isinstance(task, Mapping) or "type" not in task:
            raise ValueError(
                f'TF_CONFIG needs a `task` such as {{"type": "worker", "index": 0}}, got {task!r}'
            )
        task_type, index = task.get("type"), task.get("index", 0)
        if not isinstance(index, int) or isinstance(index, bool):
            raise ValueError(f"TF_CONFIG `task.index` must be an integer, got {index!r}")
        for number, (other_kind, other_index, _) in enumerate(tasks):
            if (other_kind, other_index) == (task_type, index):
                return cls(number, len(tasks), addresses=tuple(t[2] for t in tasks), **kwargs)
        raise ValueError(
            f"TF_CONFIG `task` {{'type': {task_type!r}, 'index': {index}}} is not in the cluster "
            f"({', '.join(f'{k}:{i}' for k, i, _ in tasks)})"
        )


# -- replicas: the devices of one process ----------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class DeviceSelection:
    """What :func:`select_devices` chose.

    Attributes:
        devices: the replica devices (``"/device:GPU:0"``, ...); one device or none means no
            strategy.
        strategy: a ``tf.distribute.MirroredStrategy`` over ``devices``, or ``None`` (one
            device: TensorFlow's own placement, a GPU if there is one).
        description: what the run uses, in words (for the command line to print).
    """

    devices: tuple[str, ...]
    strategy: Any
    description: str


_DEVICE_FORMS = (
    "'all' (every visible GPU), a number N >= 1 (the first N GPUs), 'cpu', or device names "
    "separated by commas (e.g. 'GPU:0,GPU:1')"
)


def parse_devices(devices: Any) -> str | int | tuple[str, ...]:
    """Checks a ``--devices`` value without looking at the machine.

    Args:
        devices: ``"all"``, ``"cpu"``, a number ``N >= 1`` (int or digits), or device names
            separated by commas (``"GPU:0,GPU:1"``, ``"/cpu:0,/cpu:1"``; a list of them too).

    Returns:
        ``"all"``, ``"cpu"``, ``N``, or the device names as ``("/device:GPU:0", ...)``.

    Raises:
        ValueError: anything else (an empty value, ``0``, a name that is not ``TYPE:INDEX``
            with TYPE CPU or GPU, a device named twice).
        TypeError: not a string, an integer or a list of strings.

    Example:
        >>> parse_devices("all"), parse_devices("2"), parse_devices("gpu:0, /GPU:1")
        ('all', 2, ('/device:GPU:0', '/device:GPU:1'))
        >>> parse_devices("0")
        Traceback (most recent call last):
        ...
        ValueError: --devices must be at least 1 device, got 0
    """
    if isinstance(devices, bool) or not isinstance(devices, (str, int, list, tuple)):
        raise TypeError(f"--devices must be a string, got {type(devices).__name__}")
    if isinstance(devices, int):
        if devices < 1:
            raise ValueError(f"--devices must be at least 1 device, got {devices}")
        return devices
    if isinstance(devices, str):
        text = devices.strip()
        if text.lower() in ("all", "cpu"):
            return text.lower()
        if text.isdigit():
            return parse_devices(int(text))
        names = [part.strip() for part in text.split(",")]
    else:
        if not all(isinstance(name, str) for name in devices):
            raise TypeError(f"--devices must be device names, got {devices!r}")
        names = [name.strip() for name in devices]
    parsed = []
    for name in names:
        bare = name.lstrip("/")
        bare = bare[len("device:") :] if bare.lower().startswith("device:") else bare
        kind, _, index = bare.partition(":")
        if kind.upper() not in ("CPU", "GPU") or not index.isdigit():
            raise ValueError(f"--devices must be {_DEVICE_FORMS}; got {devices!r}")
        parsed.append(f"/device:{kind.upper()}:{int(index)}")
    twice = sorted({name for name in parsed if parsed.count(name) > 1})
    if twice:
        raise ValueError(f"--devices names {twice[0]} twice, got {devices!r}")
    return tuple(parsed)


def select_devices(devices: Any) -> DeviceSelection:
    """The devices a run's batches are split over, and the strategy that does it.

    Each batch is cut evenly over the devices and the chunks attacked concurrently
    (:func:`~tfsmooth.evaluation.protocol.evaluate_attack` with ``strategy``); the results are
    those of one device.

    Args:
        devices: as :func:`parse_devices`: ``"all"`` (every visible GPU; with one or none, one
            device and no strategy), ``N`` (the first ``N`` GPUs; ``N = 1``: no strategy),
            ``"cpu"`` (the CPU only: a strategy over ``/device:CPU:0`` where GPUs are visible,
            none where not), or device names (a strategy over exactly those, even one, e.g.
            logical CPU devices made with ``tf.config.set_logical_device_configuration``).

    Returns:
        :class:`DeviceSelection`.

    Raises:
        ValueError: a bad value (:func:`parse_devices`), more GPUs than visible, a device that
            does not exist.
    """
    import tensorflow as tf

    spec = parse_devices(devices)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    if spec == "cpu":
        if not gpus:
            return DeviceSelection((), None, "the CPU (no GPU visible): one device, no strategy")
        chosen = ("/device:CPU:0",)
        return DeviceSelection(chosen, _mirrored(chosen), "the CPU only (GPUs left unused)")
    if spec == "all" or isinstance(spec, int):
        wanted = spec if isinstance(spec, int) else len(gpus)
        if wanted > len(gpus):
            visible = ", ".join(gpus) if gpus else "none"
            raise ValueError(
                f"--devices {spec}: {spec} GPUs requested, {len(gpus)} visible ({visible}); "
                f"pass --devices all, a number up to {len(gpus)}, or leave it out"
                if gpus
                else f"--devices {spec}: {spec} GPUs requested, but no GPU is visible; leave "
                "--devices out (or pass all / cpu) to run on the CPU"
            )
        chosen = tuple(gpus[:wanted])
        if not chosen:
            return DeviceSelection((), None, "the CPU (no GPU visible): one device, no strategy")
        if len(chosen) == 1:
            return DeviceSelection(chosen, None, f"one GPU ({chosen[0]}): no strategy")
        return DeviceSelection(
            chosen, _mirrored(chosen), f"{len(chosen)} GPUs ({', '.join(chosen)}), mirrored"
        )
    assert isinstance(spec, tuple)
    known = {_short(d.name): d.name for d in tf.config.list_logical_devices()}
    missing = [name for name in spec if _short(name) not in known]
    if missing:
        raise ValueError(
            f"--devices names {', '.join(missing)}, not a device of this machine (there are "
            f"{', '.join(sorted(known.values()))})"
        )
    chosen = tuple(known[_short(name)] for name in spec)
    return DeviceSelection(
        chosen,
        _mirrored(chosen),
        f"{len(chosen)} device{'s' if len(chosen) > 1 else ''} ({', '.join(chosen)}), mirrored",
    )


def _short(name: str) -> str:
    """``"/job:localhost/replica:0/task:0/device:CPU:0"`` -> ``"CPU:0"``."""
    return name.rsplit("device:", 1)[-1].upper()


def _mirrored(devices: tuple[str, ...]) -> Any:
    import tensorflow as tf

    return tf.distribute.MirroredStrategy(list(devices))


def worker_folder(out: str | os.PathLike[str], index: int) -> pathlib.Path:
    """``<out>/workers/worker-<index>``: the folder of one worker (its lock, manifest, records).

    Example:
        >>> worker_folder("results", 1).as_posix()
        'results/workers/worker-1'
    """
    return pathlib.Path(out) / WORKERS_DIR / f"worker-{int(index)}"


def _describe_missing(missing: list[int], batch_size: int, count: int) -> str:
    batches = sorted({i // batch_size for i in missing})
    owners = sorted({b % count for b in batches})
    shown = ", ".join(str(b) for b in batches[:6]) + (" ..." if len(batches) > 6 else "")
    return f"{len(missing)} images (batches {shown}) of worker(s) {owners}"


def merge_worker_records(
    path: str | os.PathLike[str],
    worker_paths: Sequence[str | os.PathLike[str]],
    header: Mapping[str, Any],
    *,
    workers: WorkerSpec,
    resume: bool = False,
    overwrite: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Waits until the workers' record files cover every image, then writes them into ``path``.

    Polls the record files of the workers (a file that does not exist yet, or whose header is
    of another run, counts as empty) every ``workers.poll_interval`` seconds until their records
    together cover the ``n_images`` of ``header``, then appends them batch by batch, in batch
    order, to the record file ``path`` (a :class:`~tfsmooth.evaluation.records.RecordFile` of
    the same header: the file a single-process run writes). Records already in ``path`` (with
    ``resume``) are kept.

    Args:
        path: the merged record file.
        worker_paths: the record file of each worker (this one's included).
        header: the run's header (:attr:`RecordFile.header` of this worker's file).
        workers: this process's :class:`WorkerSpec` (its ``timeout`` and ``poll_interval``).
        resume: continue a merged file of the same run.
        overwrite: replace a merged file of another run.
        sleep: the function that waits (tests pass a fake one).

    Returns:
        The number of records written to ``path``.

    Raises:
        WorkerTimeoutError: for ``workers.timeout`` seconds no worker recorded anything new (the
            message says which batches and workers are missing and how to rerun them).
        ValueError: a worker's file is corrupted, or ``path`` belongs to another run.

    Example:
        >>> import tempfile
        >>> from tfsmooth.evaluation.records import TRANSFER_RECORDS_FORMAT
        >>> header = {"format": TRANSFER_RECORDS_FORMAT, "n_images": 2, "batch_size": 1,
        ...           "targets": []}
        >>> def record(i):
        ...     return {"index": i, "label": 0, "attacked": False, "success_source": False,
        ...             "l2": None, "seconds": 0.0, "correct": {}, "fooled": {}}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     parts = [os.path.join(tmp, f"w{i}.jsonl") for i in range(2)]
        ...     for i, part in enumerate(parts):
        ...         with RecordFile(part, header) as store:
        ...             _ = store.append([record(i)], batch=i)
        ...     merge_worker_records(os.path.join(tmp, "all.jsonl"), parts, store.header,
        ...                          workers=WorkerSpec(0, 2))
        2
    """
    target = RecordFile(path, header, resume=resume, overwrite=overwrite)
    run = target.run
    n_images = target.n_images
    batch_size = int(target.header.get("batch_size") or 1)
    paths = [pathlib.Path(p) for p in worker_paths]
    with target:
        found: dict[int, dict[str, Any]] = dict(target.records)
        sizes: dict[pathlib.Path, int] = {}
        warned: set[pathlib.Path] = set()
        last_progress = time.monotonic()
        while True:
            for part in paths:
                if not os.path.lexists(part):
                    continue
                try:
                    size = part.stat().st_size
                except OSError:
                    continue
                if sizes.get(part) == size:
                    continue
                worker_header, records, _ = read_records(part)
                if worker_header.get("run") != run:
                    if part not in warned:
                        differ = [
                            k
                            for k in target.identity
                            if worker_header.get(k) != target.header.get(k)
                        ]
                        logger.warning(
                            "%s records another run (differs in %s): waiting for that worker "
                            "to be rerun with the same arguments (--overwrite replaces it)",
                            part,
                            differ or ["run"],
                        )
                        warned.add(part)
                    sizes[part] = size
                    continue
                before = len(found)
                for record in records:
                    found.setdefault(int(record["index"]), record)
                sizes[part] = size
                if len(found) > before:
                    last_progress = time.monotonic()
            missing = [i for i in range(n_images) if i not in found]
            if not missing:
                break
            waited = time.monotonic() - last_progress
            if waited >= workers.timeout:
                raise WorkerTimeoutError(
                    f"{workers}: waited {waited:.0f} s without a new record for {path}: still "
                    f"missing {_describe_missing(missing, batch_size, workers.count)}. Is that "
                    "worker running, and does it see the same --out folder? Rerun it with the "
                    "same command and TF_CONFIG (its records resume), then rerun this one "
                    "with --resume"
                )
            logger.debug("%s: waiting for %d images in %s", workers, len(missing), path)
            sleep(workers.poll_interval)
        written = 0
        for batch in target.batches(batch_size):
            if batch.missing.size:
                written += target.append([found[int(i)] for i in batch.missing], batch=batch.id)
    logger.info("%s: merged %d records into %s", workers, written, path)
    return written
