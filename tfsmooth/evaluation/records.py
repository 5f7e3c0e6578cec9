r"""The record store of every runner: per-image JSONL records, locked, appended, resumable.

A record file holds one run: its first line is a *header* (``"format"``, the keys that identify
the run — model, attack, epsilons, batch size, number of images, fingerprints of the data and of
the model weights, ... —, the package ``"version"`` and ``"run"``, a fingerprint of the
identifying keys), then one JSON object per image (*record*), keyed by ``"index"`` (the image's
place in the input set) and tagged with its ``"batch"`` and the ``"run"``.

:class:`RecordFile` is the only code that writes them (used by
:func:`~tfsmooth.evaluation.protocol.evaluate_attack`, the ImageNet runners and the transfer runs
of :mod:`~tfsmooth.evaluation.reproduce_imagenet`, and ``tools/cw_budget.py``):

- **one writer**: an exclusive lock on ``.<name>.lock`` beside the file (``flock``; released
  by the operating system when the process dies, so a killed run never blocks the next one). A
  second writer — another process or another :class:`RecordFile` — gets
  :class:`~tfsmooth._io.RunLockedError` "another tfsmooth run is writing to ... (pid N)";
- **fixed batches**: the images are cut into fixed slices of ``batch_size`` (the header's);
  :meth:`RecordFile.batches` yields each with the images not recorded yet, a batch of which only
  part was recorded is attacked again as a whole (same composition, so the same results for
  deterministic attacks, C&W's per-batch early abort included) and only its missing records are
  kept — a resumed run equals an uninterrupted one;
- **append + flush + fsync** once per batch; the file is created (header and first batch, written
  to a temporary file and renamed) only when the first batch is recorded, so a run that fails
  before that leaves no file behind;
- **resume** (``resume=True``): the header must match (a :class:`ValueError` lists the keys
  that differ); a truncated *last* line (the mark of a killed process) is dropped and its image
  recomputed; every other line is checked (types and ranges of every field, the run, no image
  twice) and a line that fails is a :class:`ValueError` naming it — the file is left untouched;
- **overwrite** (``overwrite=True``): an existing file that cannot be resumed is replaced.

Example:
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     path = os.path.join(tmp, "r.jsonl")
    ...     header = {"format": TRANSFER_RECORDS_FORMAT, "n_images": 3, "batch_size": 2,
    ...               "targets": ["b"]}
    ...     with RecordFile(path, header) as store:
    ...         for batch in store.batches(2):
    ...             _ = store.append([{"index": int(i), "label": 0, "attacked": False,
    ...                                "success_source": False, "l2": None, "seconds": 0.0,
    ...                                "correct": {"b": False}, "fooled": {"b": False}}
    ...                               for i in batch.missing], batch=batch.id)
    ...     sorted(store.records), len(read_records(path)[1])
    ([0, 1, 2], 3)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import pathlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import numpy as np

from tfsmooth._io import FileLock, _create_exclusive
from tfsmooth._version import __version__

logger = logging.getLogger(__name__)

__all__ = [
    "IDENTITY_KEYS",
    "RECORDS_FORMAT",
    "TRANSFER_RECORDS_FORMAT",
    "RecordBatch",
    "RecordFile",
    "data_fingerprint",
    "model_fingerprint",
    "read_records",
]

#: ``"format"`` of the records of :func:`~tfsmooth.evaluation.protocol.evaluate_attack` and
#: :func:`~tfsmooth.evaluation.reproduce_imagenet.attack_images`.
RECORDS_FORMAT = "tfsmooth-evaluation-records/1"
#: ``"format"`` of the records of the transfer runs (Table 3).
TRANSFER_RECORDS_FORMAT = "tfsmooth-transfer-records/1"

#: Header keys that must match for a run to be resumed (by default; see :class:`RecordFile`).
IDENTITY_KEYS = (
    "format",
    "model",
    "model_fingerprint",
    "attack",
    "attack_config",
    "epsilons",
    "batch_size",
    "n_images",
    "data_fingerprint",
)

_HINT = "remove it or pass overwrite=True (--overwrite) to start over"


# -- fingerprints --------------------------------------------------------------------------------
def data_fingerprint(images: Any, labels: Any) -> str:
    """SHA-1 of the images (as float32) and labels (as int64), in hex.

    Example:
        >>> a = data_fingerprint(np.zeros([1, 2, 2, 1]), [3])
        >>> a == data_fingerprint(np.zeros([1, 2, 2, 1], "float32"), np.array([3])), len(a)
        (True, 40)
    """
    digest = hashlib.sha1()
    images = np.ascontiguousarray(np.asarray(images, dtype=np.float32))
    labels = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    digest.update(repr(images.shape).encode())
    digest.update(images.tobytes())
    digest.update(labels.tobytes())
    return digest.hexdigest()


def model_fingerprint(model: Any) -> str | None:
    """SHA-1 of a model's weights, or ``None`` if it has none.

    The weights of a Keras model (wrapped in a :class:`~tfsmooth.models.Model` or not), else
    the variables of a ``tf.Module`` / loaded SavedModel, including one behind the TF-Hub
    wrapper of :func:`~tfsmooth.models.load_hub_model` (its ``loaded`` object): a resumed run
    refuses records made with other weights.

    Example:
        >>> model_fingerprint(lambda x: x) is None
        True
        >>> module = tf.Module()
        >>> module.w = tf.Variable([1.0, 2.0])
        >>> len(model_fingerprint(module))
        40
    """
    from tfsmooth.models.base import Model

    inner = model.model if isinstance(model, Model) else model
    weights = getattr(inner, "weights", None)
    if not weights:
        owner = getattr(inner, "loaded", inner)
        weights = getattr(owner, "variables", None)
    if not weights:
        return None
    digest = hashlib.sha1()
    for weight in weights:
        value = np.ascontiguousarray(
            np.asarray(weight.numpy() if hasattr(weight, "numpy") else weight)
        )
        digest.update(f"{value.dtype}{value.shape}".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def _run_fingerprint(header: Mapping[str, Any], keys: Iterable[str]) -> str:
    payload = json.dumps({k: header.get(k) for k in keys}, sort_keys=True, default=str)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


# -- record checks -------------------------------------------------------------------------------
def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _distance(x: Any) -> bool:
    return x is None or (_is_number(x) and x >= 0)


def _relative_path(x: Any) -> bool:
    return x is None or (
        isinstance(x, str)
        and not os.path.isabs(x)
        and ".." not in pathlib.PurePosixPath(x).parts
        and bool(x)
    )


_Check = tuple[Callable[[Any], bool], str]
_INT: _Check = (_is_int, "an integer")
_BOOL: _Check = (lambda x: isinstance(x, bool), "true or false")
_STR: _Check = (lambda x: isinstance(x, str), "a string")
_DISTANCE: _Check = (_distance, "null or a finite number >= 0")
_EPSILON: _Check = (lambda x: x is None or (_is_number(x) and x >= 0), "null or a number >= 0")
_SECONDS: _Check = (lambda x: x is None or (_is_number(x) and x >= 0), "a number >= 0")
_FILE: _Check = (_relative_path, "null or a relative path inside the output folder")
_BATCH: _Check = (lambda x: _is_int(x) and x >= 0, "an integer >= 0")

#: Required fields of each format, optional fields (checked when present).
_SCHEMAS: dict[str, tuple[dict[str, _Check], dict[str, _Check]]] = {
    RECORDS_FORMAT: (
        {
            "model": _STR,
            "attack": _STR,
            "label": _INT,
            "correct": _BOOL,
            "success": _BOOL,
            "l2": _DISTANCE,
            "linf": _DISTANCE,
            "best_epsilon": _EPSILON,
            "adv_label": _INT,
            "seconds": _SECONDS,
        },
        {
            "file": _STR,
            "clean_label": _INT,
            "png_success": _BOOL,
            "adversarial": _FILE,
            "perturbation": _FILE,
            "measures": (
                lambda x: (
                    isinstance(x, dict)
                    and all(
                        isinstance(k, str) and (m is None or _is_number(m)) for k, m in x.items()
                    )
                ),
                "an object {name: null or a finite number}",
            ),
        },
    ),
    TRANSFER_RECORDS_FORMAT: (
        {
            "label": _INT,
            "attacked": _BOOL,
            "success_source": _BOOL,
            "l2": _DISTANCE,
            "seconds": _SECONDS,
            "correct": (lambda x: isinstance(x, dict), "an object {target: bool}"),
            "fooled": (lambda x: isinstance(x, dict), "an object {target: bool}"),
        },
        {},
    ),
}


def _check_header(header: Any, where: str) -> None:
    if not isinstance(header, dict) or header.get("format") not in _SCHEMAS:
        raise ValueError(
            f"{where} is not a tfsmooth record file: expected a first line with "
            f'"format": one of {sorted(_SCHEMAS)}; {_HINT}, or choose another records_path'
        )
    n = header.get("n_images")
    if not (isinstance(n, int) and not isinstance(n, bool) and n >= 1):
        raise ValueError(f"{where}: header `n_images` must be an integer >= 1, got {n!r}; {_HINT}")
    if header.get("format") == TRANSFER_RECORDS_FORMAT and not (
        isinstance(header.get("targets"), list)
        and all(isinstance(t, str) for t in header["targets"])
    ):
        raise ValueError(f"{where}: header `targets` must be a list of names; {_HINT}")


def _record_problem(record: Any, header: Mapping[str, Any]) -> str | None:
    """What is wrong with ``record`` (``None`` if nothing)."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    required, optional = _SCHEMAS[header["format"]]
    checks = {"index": _INT, "batch": _BATCH, "run": _STR, **required}
    missing = sorted(set(checks) - set(record))
    if missing:
        return f"missing fields {missing}"
    for key, (check, expected) in {**checks, **optional}.items():
        if key in record and not check(record[key]):
            return f"`{key}` must be {expected}, got {record[key]!r}"
    n = header["n_images"]
    if not 0 <= record["index"] < n:
        return f"`index` must be in 0..{n - 1} (the header's n_images = {n}), got {record['index']}"
    if "run" in header and record["run"] != header["run"]:
        return f"`run` is {record['run']!r}, the header's run is {header['run']!r} (another run)"
    if header["format"] == RECORDS_FORMAT and record["success"] and not record["correct"]:
        return "`success` is true for an image that is not `correct`"
    if header["format"] == TRANSFER_RECORDS_FORMAT:
        targets = sorted(header["targets"])
        for key in ("correct", "fooled"):
            value = record[key]
            if sorted(value) != targets or not all(isinstance(x, bool) for x in value.values()):
                return f"`{key}` must map the targets {targets} to true/false, got {value!r}"
    return None


def read_records(path: Any) -> tuple[dict[str, Any], list[dict[str, Any]], int | None]:
    """Reads and checks a record file (see the module docstring).

    Every record is checked: the fields of its format with their types and ranges (``index`` an
    integer in ``0..n_images - 1``, ``success`` true/false, ``l2`` null or a finite number
    ``>= 0``, ...), the ``run`` of the header, no image twice.

    Args:
        path: the JSONL file.

    Returns:
        ``(header, records, truncated_at)``: the header dict, the parsed records, and the byte
        offset where a truncated last line starts (``None`` if the file ends cleanly).

    Raises:
        ValueError: the file is empty, its first line is not a tfsmooth header, or a line other
            than the last one is not a valid record (the message names the line and the field).

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = os.path.join(tmp, "r.jsonl")
        ...     _ = open(path, "w").write('{"format": "%s", "n_images": 1}\\n{"index": 0' %
        ...                               RECORDS_FORMAT)
        ...     read_records(path)
        ({'format': 'tfsmooth-evaluation-records/1', 'n_images': 1}, [], 59)
    """
    path = pathlib.Path(path)
    data = path.read_bytes()
    if not data:
        raise ValueError(f"{path} is empty: expected a tfsmooth record file (JSONL with header)")
    lines = data.split(b"\n")
    ends_cleanly = data.endswith(b"\n")
    if ends_cleanly:
        lines = lines[:-1]
    try:
        header = json.loads(lines[0])
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    _check_header(header, str(path))
    if len(lines) == 1 and not ends_cleanly:
        raise ValueError(f"{path}: header line is not terminated; the file is corrupted; {_HINT}")
    records: list[dict[str, Any]] = []
    seen: dict[int, int] = {}
    truncated_at: int | None = None
    offset = len(lines[0]) + 1
    for number, raw in enumerate(lines[1:], start=2):
        if number == len(lines) and not ends_cleanly:  # cut by a kill: recompute that image
            truncated_at = offset
            break
        try:
            record = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            problem: str | None = f"not JSON ({raw[:80]!r})"
        else:
            problem = _record_problem(record, header)
            if problem is None and record["index"] in seen:
                problem = f"image {record['index']} is recorded twice (first on line "
                problem += f"{seen[record['index']]}): two runs wrote to this file"
        if problem is not None:
            raise ValueError(
                f"{path}, line {number}: not a valid record: {problem}; the file is corrupted — "
                f"{_HINT}"
            )
        seen[record["index"]] = number
        records.append(record)
        offset += len(raw) + 1
    return header, records, truncated_at


# -- the store -----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RecordBatch:
    """One fixed batch of a run.

    Attributes:
        id: batch number (``index // batch_size``).
        indices: int64 ``[size]`` the images of the batch (``id * batch_size ...``).
        missing: int64 the images of the batch without a record yet.
    """

    id: int
    indices: np.ndarray
    missing: np.ndarray


class RecordFile:
    """The JSONL records of one run: locked, appended per batch, resumable (module docstring).

    Args:
        path: the JSONL file, or ``None`` for records kept in memory only (same batching).
        header: the run's header: ``"format"`` (:data:`RECORDS_FORMAT` or
            :data:`TRANSFER_RECORDS_FORMAT`), ``"n_images"``, usually ``"batch_size"`` and the
            keys identifying the run (JSON-serializable; ``"version"`` and ``"run"`` are added).
        identity: the header keys that must match to resume (default :data:`IDENTITY_KEYS`
            for :data:`RECORDS_FORMAT`, all keys but ``"version"`` otherwise).
        resume: continue the run recorded in ``path`` if it exists.
        overwrite: replace an existing file that is not resumed (or cannot be: another run,
            corrupted, foreign).

    Raises:
        ValueError: (on :meth:`open`) ``path`` exists and neither ``resume`` nor ``overwrite``;
            the file belongs to another run, is corrupted or foreign (and not ``overwrite``).
        RunLockedError: (on :meth:`open`) another writer holds the file.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None,
        header: Mapping[str, Any],
        *,
        identity: Iterable[str] | None = None,
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        for flag, value in (("resume", resume), ("overwrite", overwrite)):
            if not isinstance(value, bool):
                raise TypeError(f"`{flag}` must be a bool, got {value!r}")
        if not isinstance(header, Mapping):
            raise TypeError(f"`header` must be a dict, got {type(header).__name__}")
        self.path = None if path is None else pathlib.Path(path)
        normalized = json.loads(json.dumps(dict(header), default=str))
        normalized.setdefault("version", __version__)
        _check_header(normalized, "`header`")
        if identity is None:
            if normalized["format"] == RECORDS_FORMAT:
                identity = IDENTITY_KEYS
            else:
                identity = [k for k in normalized if k not in ("version", "run")]
        self.identity = tuple(dict.fromkeys(["format", "n_images", *identity]))
        normalized["run"] = _run_fingerprint(normalized, self.identity)
        self.header: dict[str, Any] = normalized
        self.resume = resume
        self.overwrite = overwrite
        self._records: dict[int, dict[str, Any]] = {}
        self._lock: FileLock | None = None
        self._handle: Any = None
        self._open = False

    # -- properties
    @property
    def run(self) -> str:
        """The run fingerprint (``header["run"]``)."""
        return str(self.header["run"])

    @property
    def n_images(self) -> int:
        """Number of images of the run."""
        return int(self.header["n_images"])

    @property
    def records(self) -> dict[int, dict[str, Any]]:
        """``{index: record}`` of the images recorded so far (do not modify)."""
        return self._records

    @property
    def complete(self) -> bool:
        """Whether every image has a record."""
        return len(self._records) == self.n_images

    def __repr__(self) -> str:
        where = "memory" if self.path is None else str(self.path)
        return f"RecordFile({where}, {len(self._records)}/{self.n_images} records)"

    # -- open / close
    def open(self) -> RecordFile:
        """Locks the file and, with ``resume``, reads the records already there."""
        if self._open:
            raise RuntimeError(f"{self!r} is already open")
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(self.path.parent / f".{self.path.name}.lock", target=str(self.path))
            lock.acquire()
            try:
                self._load()
            except BaseException:
                lock.release()
                raise
            self._lock = lock
        self._open = True
        return self

    def _load(self) -> None:
        path = self.path
        if path is None or not os.path.lexists(path):
            return
        if not self.resume and not self.overwrite and not self._holds_no_record(path):
            raise ValueError(
                f"{path} exists: pass resume=True (--resume) to continue that run, "
                "overwrite=True (--overwrite) to start over, or remove the file"
            )
        if self.resume:
            try:
                header, records, truncated_at = read_records(path)
                self._check_same_run(header, records)
            except ValueError as err:
                if not self.overwrite:
                    raise
                logger.warning("%s; starting over (overwrite)", err)
            else:
                self._records = {r["index"]: r for r in records}
                if truncated_at is not None:
                    logger.warning("%s: dropping a truncated last line (interrupted run)", path)
                    with open(path, "r+b") as handle:
                        handle.truncate(truncated_at)
                        os.fsync(handle.fileno())
                self._handle = open(path, "a", encoding="utf-8")  # noqa: SIM115
                logger.info("%s: %d of %d images recorded", path, len(records), self.n_images)
                return
        logger.info("%s: replacing the earlier file", path)
        os.unlink(path)

    @staticmethod
    def _holds_no_record(path: pathlib.Path) -> bool:
        """A tfsmooth file with a header and no record (left by older versions) is replaced."""
        try:
            _, records, _ = read_records(path)
        except (OSError, ValueError):
            return False
        return not records

    def _check_same_run(self, header: dict[str, Any], records: list[dict[str, Any]]) -> None:
        differ = [k for k in self.identity if header.get(k) != self.header.get(k)]
        if not differ and header.get("run") != self.run:
            differ = ["run"]
        if differ:
            raise ValueError(
                f"{self.path} records another run (differs in {differ}); {_HINT}, or use "
                "another records_path / --out"
            )
        size = header.get("batch_size")
        for number, record in enumerate(records, start=2):
            if _is_int(size) and record["batch"] != record["index"] // size:
                raise ValueError(
                    f"{self.path}, line {number}: image {record['index']} is recorded in batch "
                    f"{record['batch']}, not in its fixed batch {record['index'] // size} "
                    f"(written by another tfsmooth version or run); {_HINT}"
                )

    def close(self) -> None:
        """Closes the file and releases the lock."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._open = False

    def __enter__(self) -> RecordFile:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- batches and records
    def batches(self, batch_size: int) -> Iterator[RecordBatch]:
        """The fixed batches of the run, each with the images still to record.

        Args:
            batch_size: must equal the header's ``batch_size`` if it has one.
        """
        expected = self.header.get("batch_size")
        if not _is_int(batch_size) or batch_size < 1:
            raise ValueError(f"`batch_size` must be an integer >= 1, got {batch_size!r}")
        if expected is not None and batch_size != expected:
            raise ValueError(
                f"`batch_size` must be the header's batch_size {expected}, got {batch_size}"
            )
        for batch_id, start in enumerate(range(0, self.n_images, batch_size)):
            indices = np.arange(start, min(start + batch_size, self.n_images), dtype=np.int64)
            missing = np.array([i for i in indices if int(i) not in self._records], np.int64)
            yield RecordBatch(batch_id, indices, missing)

    def append(self, records: Iterable[Mapping[str, Any]], *, batch: int) -> int:
        """Records the images of ``records`` not recorded yet: one write, flush and fsync.

        Args:
            records: dicts with the fields of the format (``index``, ...); ``batch`` and
                ``run`` are set here. Images already recorded are skipped.
            batch: the batch id (:attr:`RecordBatch.id`).

        Returns:
            The number of records written.

        Raises:
            ValueError: a record with a missing or bad field (nothing is written), or an image
                outside ``batch``.
        """
        if not self._open:
            raise RuntimeError(f"{self!r} is not open: use `with RecordFile(...)` or open()")
        size = self.header.get("batch_size")
        new: dict[int, dict[str, Any]] = {}
        for given in records:
            record = {**given, "batch": batch, "run": self.run}
            problem = _record_problem(record, self.header)
            if problem is None and _is_int(size) and record["index"] // size != batch:
                problem = f"image {record['index']} is not in batch {batch}"
            if problem is not None:
                raise ValueError(f"bad record for image {given.get('index')!r}: {problem}")
            if record["index"] not in self._records and record["index"] not in new:
                new[record["index"]] = record
        if not new:
            return 0
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in new.values())
        if self.path is not None:
            if self._handle is None:
                self._create(json.dumps(self.header) + "\n" + text)
            else:
                self._handle.write(text)
                self._handle.flush()
                os.fsync(self._handle.fileno())
        self._records.update(new)
        return len(new)

    def _create(self, text: str) -> None:
        """Header and first batch, in a temporary file renamed to ``path`` (all or nothing)."""
        if self.path is None:
            return
        fd, tmp = _create_exclusive(self.path.parent, f".{self.path.name}.tmp-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(self.path.parent)
        self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def discard(self, indices: Iterable[int]) -> None:
        """Forgets the records of ``indices`` (the file is rewritten without them, atomically)."""
        drop = {int(i) for i in indices} & set(self._records)
        if not drop:
            return
        for index in drop:
            del self._records[index]
        if self.path is None or self._handle is None:
            return
        self._handle.close()
        self._handle = None
        kept = sorted(self._records.values(), key=lambda r: (r["batch"], r["index"]))
        if not kept:
            os.unlink(self.path)
            return
        text = "".join(json.dumps(r, allow_nan=False) + "\n" for r in kept)
        self._create(json.dumps(self.header) + "\n" + text)


def _fsync_dir(directory: pathlib.Path) -> None:
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
