"""Small file helpers shared by the library's writers: PNG output, locks and output folders.

Output folders (:class:`OutputDir`, used by ``reproduce_mnist``, ``reproduce_imagenet`` and
``attack_images``, i.e. ``tfsmooth reproduce`` and ``tfsmooth attack``):

- **One writer.** A run holds an exclusive lock on ``<out>/.tfsmooth.lock`` (``flock``; the file
  holds the writer's pid) from start to end. A second run on the same folder fails at once with
  "another tfsmooth run is writing to ... (pid N)". The operating system drops the lock when the
  process dies, so a killed run never blocks the next one.
- **Our own files are listed.** ``<out>/.tfsmooth-run.json`` (the *manifest*) lists every file
  tfsmooth writes in the folder and the run (a small dict of the arguments that decide the
  results: experiment, models, attacks, number of images, ...) that wrote it. A file is "ours"
  if and only if the manifest lists it; nothing else (name, content) counts.
- **Nothing is replaced silently.** Before anything is computed, each file the run is going to
  write is checked: if it exists, the run goes on only if ``overwrite=True`` (``--overwrite``), or
  if ``resume=True`` (``--resume``) and the manifest says the file was written by the same run.
  Otherwise a :class:`ValueError` names the files and says what to pass. With ``overwrite`` and
  without ``resume`` those files are removed first, so no result of the earlier run is left
  behind next to the new ones; with both, the run continues what it can (record files of the
  same run are resumed) and replaces the rest.
- **No symlink is followed for our own files**: the write probe is created with
  ``O_CREAT | O_EXCL | O_NOFOLLOW`` under a random name and removed; the lock file is opened with
  ``O_NOFOLLOW``; the manifest is replaced atomically (a symlink there is replaced, not
  followed); a symlink where an output goes counts as a foreign file.
- **A failed start leaves nothing behind**: folders this run created, and a manifest it created,
  are removed again if the run fails before any of its files exists.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pathlib
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "LOCK_NAME",
    "MANIFEST_NAME",
    "FileLock",
    "OutputDir",
    "RunLockedError",
    "check_out_dir",
    "save_png",
]

#: Lock file of an output folder.
LOCK_NAME = ".tfsmooth.lock"
#: Manifest of an output folder: the files tfsmooth wrote there, and the runs that wrote them.
MANIFEST_NAME = ".tfsmooth-run.json"
#: Value of the ``"format"`` key of the manifest.
MANIFEST_FORMAT = "tfsmooth-run/1"

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def save_png(array: Any, path: str | os.PathLike[str]) -> None:
    """Writes an RGB or grey image with values in ``[0, 1]`` as an 8-bit PNG (values clipped).

    The file is written atomically (:func:`write_atomic`): a reader, e.g. another worker of a
    multi-worker run, sees either no file or the whole image, never a half-written one.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_png(np.zeros((2, 3, 1)), os.path.join(tmp, "a.png"))
        ...     sorted(os.listdir(tmp))
        ['a.png']
    """
    import io

    from PIL import Image

    pixels = np.clip(np.round(np.asarray(array, dtype=np.float64) * 255.0), 0, 255)
    pixels = pixels.astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())


# -- locks ---------------------------------------------------------------------------------------
class RunLockedError(OSError):
    """Another process (or another open store of this one) is writing to the same place."""


def _try_lock(fd: int) -> bool:
    """Exclusive non-blocking lock on ``fd``; ``False`` if someone else holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        try:
            import msvcrt
        except ImportError:
            logger.warning("no file locking on this platform: concurrent runs are not detected")
            return True
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
        except OSError:
            return False
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except (BlockingIOError, PermissionError):
        return False
    return True


class FileLock:
    """An exclusive advisory lock held through a small lock file that names the holder's pid.

    ``flock`` locks belong to an open file, so a second lock on the same file fails both from
    another process and from another :class:`FileLock` of the same process; the operating
    system releases the lock when the process dies. :meth:`release` removes the lock file (a lock
    file left by a killed process is taken over by the next run). After locking, the lock file is
    checked to still be the one at ``path`` (a releasing holder may have removed it meanwhile).

    Args:
        path: the lock file (opened without following symlinks).
        target: what the lock protects, for the error message.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with FileLock(os.path.join(tmp, ".lock"), target="the folder"):
        ...         FileLock(os.path.join(tmp, ".lock"), target="the folder").acquire()
        Traceback (most recent call last):
        ...
        tfsmooth._io.RunLockedError: another tfsmooth run is writing to the folder (pid ...
    """

    def __init__(self, path: str | os.PathLike[str], *, target: str) -> None:
        self.path = pathlib.Path(path)
        self.target = target
        self._fd: int | None = None

    @property
    def locked(self) -> bool:
        """Whether this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> FileLock:
        """Takes the lock.

        Raises:
            RunLockedError: someone else holds it (the message names the pid in the lock file).
            ValueError: the lock file is a symbolic link or cannot be created.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.path} is already locked by this object")
        for _ in range(10):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
            except OSError as err:
                kind = " (a symbolic link: remove it)" if self.path.is_symlink() else ""
                raise ValueError(f"cannot open the lock file {self.path}{kind}: {err}") from err
            if not _try_lock(fd):
                pid = _read_pid(fd)
                os.close(fd)
                mine = " — this process" if pid == os.getpid() else ""
                raise RunLockedError(
                    f"another tfsmooth run is writing to {self.target} "
                    f"(pid {pid if pid is not None else 'unknown'}{mine}): wait until it ends, "
                    "or write to another folder (--out)"
                )
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path, follow_symlinks=False))
            except FileNotFoundError:
                same = False
            if not same:  # removed by a releasing holder after we opened it: try again
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            self._fd = fd
            return self
        raise RunLockedError(f"could not lock {self.path}: it keeps being replaced")

    def release(self) -> None:
        """Removes the lock file and releases the lock (no-op if not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(self._fd), os.stat(self.path, follow_symlinks=False)):
                os.unlink(self.path)
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FileLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError, AttributeError):  # no os.pread on Windows
        return None


# -- safe small writes ---------------------------------------------------------------------------
def _create_exclusive(directory: pathlib.Path, prefix: str) -> tuple[int, pathlib.Path]:
    """A new file of random name in ``directory`` (``O_CREAT | O_EXCL | O_NOFOLLOW``)."""
    error: OSError | None = None
    for _ in range(5):
        path = directory / f"{prefix}{secrets.token_hex(8)}"
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC
            return os.open(path, flags, 0o644), path
        except FileExistsError as err:
            error = err
    raise OSError(f"could not create a new file in {directory}: {error}")


def write_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Writes ``data`` to a new temporary file beside ``path``, fsyncs it, renames it to ``path``.

    A symlink at ``path`` is replaced, never followed.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_atomic(os.path.join(tmp, "a.json"), b"{}")
        ...     sorted(os.listdir(tmp))
        ['a.json']
    """
    path = pathlib.Path(path)
    fd, tmp = _create_exclusive(path.parent, f".{path.name}.tmp-")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _probe(path: pathlib.Path) -> None:
    """Checks that ``path`` can be written with a file of random name (never a symlink)."""
    fd, probe = _create_exclusive(path, ".tfsmooth-write-test-")
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        os.unlink(probe)


def _make_dirs(path: pathlib.Path) -> list[pathlib.Path]:
    """Creates ``path`` and its missing parents; returns those created, outermost first."""
    missing = []
    current = path
    while not os.path.lexists(current) and current != current.parent:
        missing.append(current)
        current = current.parent
    path.mkdir(parents=True, exist_ok=True)
    return missing[::-1]


def _remove_empty(dirs: Iterable[pathlib.Path]) -> None:
    for directory in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            directory.rmdir()


def check_out_dir(out_dir: Any, *subdirs: str) -> pathlib.Path:
    """Creates ``out_dir`` (and ``subdirs`` in it) and checks that it can be written.

    The check writes and removes a file of random name created with
    ``O_CREAT | O_EXCL | O_NOFOLLOW``, so it never follows a symlink. Folders it created are
    removed again when the check fails. (For a folder that a run owns, with a lock and a manifest
    of the files written, use :class:`OutputDir`.)

    Raises:
        TypeError: ``out_dir`` is not a path.
        ValueError: it is an existing file, or it cannot be created or written.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     out = check_out_dir(os.path.join(tmp, "out"), "records")
        ...     sorted(p.name for p in out.iterdir())
        ['records']
    """
    path, _ = _checked_dir(out_dir, subdirs)
    return path


def _checked_dir(out_dir: Any, subdirs: Iterable[str]) -> tuple[pathlib.Path, list[pathlib.Path]]:
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"`out_dir` must be a path, got {type(out_dir).__name__}")
    path = pathlib.Path(out_dir)
    if os.path.lexists(path) and not path.is_dir():
        raise ValueError(f"`out_dir` must be a directory, got an existing file {path}")
    created: list[pathlib.Path] = []
    try:
        created += _make_dirs(path)
        for name in subdirs:
            sub = path / name
            if os.path.lexists(sub) and (sub.is_symlink() or not sub.is_dir()):
                raise ValueError(f"{sub} must be a folder, got a file or a symbolic link")
            created += _make_dirs(sub)
        _probe(path)
    except OSError as err:
        _remove_empty(created)
        raise ValueError(f"`out_dir` {path} is not writable: {err}") from err
    except BaseException:
        _remove_empty(created)
        raise
    return path, created


# -- output folders ------------------------------------------------------------------------------
def _normalized(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def run_id(run: Mapping[str, Any]) -> str:
    """A short fingerprint of a run description (16 hex digits).

    Example:
        >>> run_id({"experiment": "mnist", "n": 8}) == run_id({"n": 8, "experiment": "mnist"})
        True
    """
    payload = json.dumps(_normalized(dict(run)), sort_keys=True)
    return hashlib.sha1(payload.encode()).hexdigest()[:16]


def _names(names: Iterable[str]) -> str:
    names = list(names)
    shown = ", ".join(names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")


class OutputDir:
    """An output folder owned by one run: locked, checked, with a manifest of the files written.

    See the module docstring for the rules. Use it as a context manager: the checks happen on
    entry (before anything is computed), the manifest is completed and the lock released on exit;
    on an error before any output exists, the folders and manifest created are removed again.

    Args:
        path: the folder (created).
        run: what identifies the run (JSON-serializable); ``resume`` accepts earlier files only if
            they were written by a run with the same description.
        outputs: the files (relative paths) the run may write. Each is checked on entry and listed
            in the manifest.
        subdirs: folders to create inside.
        resume: continue an earlier run of the same description (``--resume``).
        overwrite: replace existing files (``--overwrite``).

    Raises:
        ValueError: (on entry) an output exists and may not be replaced, the folder cannot be
            written, the manifest is not one of ours.
        RunLockedError: another run writes to the folder.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with OutputDir(tmp, run={"n": 1}, outputs=["a.txt"]) as out:
        ...         _ = (out.path / "a.txt").write_text("ours")
        ...     OutputDir(tmp, run={"n": 1}, outputs=["a.txt"]).open()
        Traceback (most recent call last):
        ...
        ValueError: ... holds results of an earlier tfsmooth run (a.txt): ...
    """

    def __init__(
        self,
        path: Any,
        *,
        run: Mapping[str, Any],
        outputs: Iterable[str] = (),
        subdirs: Iterable[str] = (),
        resume: bool = False,
        overwrite: bool = False,
    ) -> None:
        if not isinstance(path, (str, os.PathLike)):
            raise TypeError(f"`out_dir` must be a path, got {type(path).__name__}")
        for flag, value in (("resume", resume), ("overwrite", overwrite)):
            if not isinstance(value, bool):
                raise TypeError(f"`{flag}` must be a bool, got {value!r}")
        self.path = pathlib.Path(path)
        self.run = _normalized(dict(run))
        self.run_id = run_id(self.run)
        self.outputs = list(dict.fromkeys(os.fspath(name) for name in outputs))
        for name in self.outputs:
            if os.path.isabs(name) or ".." in pathlib.PurePath(name).parts:
                raise ValueError(f"outputs must be relative paths inside the folder, got {name!r}")
        self.subdirs = list(subdirs)
        self.resume = resume
        self.overwrite = overwrite
        self._lock: FileLock | None = None
        self._created: list[pathlib.Path] = []
        self._files: dict[str, str] = {}
        self._runs: dict[str, Any] = {}
        self._had_manifest = False

    @property
    def manifest_path(self) -> pathlib.Path:
        """``<path>/.tfsmooth-run.json``."""
        return self.path / MANIFEST_NAME

    # -- entry / exit
    def open(self) -> OutputDir:
        """Creates and locks the folder and checks the outputs (see the class docstring)."""
        self.path, self._created = _checked_dir(self.path, ())
        lock = FileLock(self.path / LOCK_NAME, target=f"the folder {self.path}")
        try:
            lock.acquire()
        except BaseException:
            _remove_empty(self._created)
            raise
        self._lock = lock
        try:
            self._read_manifest()
            self._check_outputs()
            for name in self.subdirs:
                sub = self.path / name
                if os.path.lexists(sub) and (sub.is_symlink() or not sub.is_dir()):
                    raise ValueError(f"{sub} must be a folder, got a file or a symbolic link")
                self._created += _make_dirs(sub)
            for name in self.outputs:
                self._files[name] = self.run_id
            self._runs[self.run_id] = self.run
            self._write_manifest()
        except BaseException:
            self.close(failed=True)
            raise
        return self

    def close(self, *, failed: bool = False) -> None:
        """Completes the manifest (or cleans up after a failed start) and releases the lock."""
        if self._lock is None:
            return
        try:
            existing = {n: r for n, r in self._files.items() if os.path.lexists(self.path / n)}
            if failed and not existing and not self._had_manifest:
                with contextlib.suppress(OSError):
                    os.unlink(self.manifest_path)
            elif self._files or self._had_manifest:
                self._files = existing
                self._write_manifest()
        finally:
            self._lock.release()
            self._lock = None
            if failed:
                _remove_empty(self._created)

    def __enter__(self) -> OutputDir:
        return self.open()

    def __exit__(self, exc_type: Any, *exc: object) -> None:
        self.close(failed=exc_type is not None)

    # -- manifest
    def _read_manifest(self) -> None:
        path = self.manifest_path
        if not os.path.lexists(path):
            return
        self._had_manifest = True
        manifest = None
        if not path.is_symlink() and path.is_file():
            try:
                manifest = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                manifest = None
        valid = (
            isinstance(manifest, dict)
            and manifest.get("format") == MANIFEST_FORMAT
            and isinstance(manifest.get("files"), dict)
            and isinstance(manifest.get("runs"), dict)
            and all(isinstance(k, str) and isinstance(r, str) for k, r in manifest["files"].items())
        )
        if not valid:
            if self.overwrite:
                logger.warning("%s is not a tfsmooth manifest: replacing it (overwrite)", path)
                return
            raise ValueError(
                f"{path} is not a tfsmooth run manifest (expected JSON with "
                f'"format": "{MANIFEST_FORMAT}"): remove it, pass --overwrite (overwrite=True), '
                "or choose another --out"
            )
        files: dict[str, str] = manifest["files"]  # type: ignore[index]
        runs: dict[str, Any] = manifest["runs"]  # type: ignore[index]
        self._files = {n: r for n, r in files.items() if os.path.lexists(self.path / n)}
        self._runs = {r: runs[r] for r in set(self._files.values()) if r in runs}

    def _write_manifest(self) -> None:
        used = set(self._files.values())
        manifest = {
            "format": MANIFEST_FORMAT,
            "note": "files written here by tfsmooth, and the runs that wrote them",
            "files": dict(sorted(self._files.items())),
            "runs": {r: self._runs[r] for r in sorted(used) if r in self._runs},
        }
        write_atomic(self.manifest_path, (json.dumps(manifest, indent=1) + "\n").encode())

    # -- checks
    def _check_outputs(self) -> None:
        foreign, earlier, other = [], [], []
        differ: set[str] = set()
        existing = []
        for name in self.outputs:
            path = self.path / name
            if not os.path.lexists(path):
                continue
            if path.is_dir() and not path.is_symlink():
                raise ValueError(f"{path} is a folder where tfsmooth writes a file: remove it")
            existing.append(name)
            owner = self._files.get(name)
            if path.is_symlink() or owner is None:
                foreign.append(name)
            elif not self.resume:
                earlier.append(name)
            elif owner != self.run_id:
                other.append(name)
                old = self._runs.get(owner, {})
                keys = set(old) | set(self.run)
                differ |= {k for k in keys if old.get(k) != self.run.get(k)}
        if self.overwrite:
            for name in existing:
                path = self.path / name
                if path.is_symlink() or not self.resume:  # never write through a symlink
                    os.unlink(path)
                    self._files.pop(name, None)
            if existing:
                logger.warning(
                    "%s: %s %d earlier file(s) (overwrite)",
                    self.path,
                    "replacing" if self.resume else "removed",
                    len(existing),
                )
            return
        where = f"`out_dir` {self.path}"
        if foreign:
            older = ""
            if self.resume and not self._had_manifest:
                older = (
                    f" (a folder written by a tfsmooth version without {MANIFEST_NAME}: "
                    "--resume --overwrite continues its record files and replaces the rest)"
                )
            raise ValueError(
                f"{where} holds files that tfsmooth did not write there ({_names(foreign)}; "
                f"not listed in {MANIFEST_NAME}, or symbolic links): pass --overwrite "
                f"(overwrite=True) to replace them, or choose another --out{older}"
            )
        if earlier:
            raise ValueError(
                f"{where} holds results of an earlier tfsmooth run ({_names(earlier)}): pass "
                "--resume (resume=True) to continue that run, --overwrite (overwrite=True) to "
                "replace them, or choose another --out"
            )
        if other:
            raise ValueError(
                f"{where} holds results of another run ({_names(other)}; the runs differ in "
                f"{sorted(differ)}): --resume continues only the same run; pass --overwrite "
                "(overwrite=True) to replace them, or choose another --out"
            )
