"""A torch-free, pickle-safe reader of PyTorch's legacy (pre-1.6) ``torch.save`` files.

A legacy ``.pth`` file is five pickles followed by raw tensor data::

    pickle  magic number 0x1950a86a20f9469cfc6c
    pickle  protocol version 1001
    pickle  system info {"protocol_version", "little_endian", "type_sizes"}
    pickle  the saved object (here a state dict: an ``OrderedDict`` of tensors); each tensor is
            ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)`` and each
            storage a *persistent id* ``("storage", torch.FloatStorage, key, location, numel,
            view_metadata)``
    pickle  the list of storage keys, in the order their data follows
    for each key: int64 element count (little endian), then count * itemsize raw bytes

Unpickling runs code named by the file, so this reader never uses :mod:`pickle`'s default class
lookup: :class:`_RestrictedUnpickler` resolves only the handful of globals the format needs
(:data:`ALLOWED_GLOBALS`), each to a harmless stand-in defined here, and refuses everything else
with a :class:`ValueError` before anything is called. Tensors come back as NumPy arrays (copied,
C-contiguous) with their PyTorch shapes and dtypes.

Example:
    >>> import io
    >>> load_legacy_state_dict(io.BytesIO(b"PK\\x03\\x04 not legacy"))
    Traceback (most recent call last):
    ...
    ValueError: ... is a zip archive ...
"""

from __future__ import annotations

import collections
import io
import logging
import os
import pickle
import struct
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, NoReturn

import numpy as np

logger = logging.getLogger(__name__)

__all__ = ["ALLOWED_GLOBALS", "MAGIC_NUMBER", "PROTOCOL_VERSION", "load_legacy_state_dict"]

#: First pickle of a legacy ``torch.save`` file.
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
#: Second pickle of a legacy ``torch.save`` file.
PROTOCOL_VERSION = 1001

#: Storage classes and the little-endian NumPy dtype of their elements.
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "<f8",
    "FloatStorage": "<f4",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


class _StorageType:
    """Stand-in for a ``torch.*Storage`` class: only its element dtype matters."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])

    def __repr__(self) -> str:
        return f"torch.{self.name}"

    def __setstate__(self, state: Any) -> None:
        _refuse_state(self)


class _Storage:
    """A storage named by a persistent id; its data is read after the pickles."""

    def __init__(self, key: str, storage_type: _StorageType, numel: int) -> None:
        self.key = key
        self.dtype = storage_type.dtype
        self.numel = numel
        self.data: np.ndarray | None = None
        self.view_of: tuple[_Storage, int] | None = None  # (root storage, element offset)

    def __setstate__(self, state: Any) -> None:
        _refuse_state(self)

    def array(self) -> np.ndarray:
        if self.view_of is not None:
            root, offset = self.view_of
            return root.array()[offset : offset + self.numel]
        if self.data is None:
            raise ValueError(f"storage {self.key!r} has no data in the file")
        return self.data


class _TensorRef:
    """What ``_rebuild_tensor_v2`` returns here: a storage slice, materialized later."""

    def __init__(self, storage: Any, offset: Any, size: Any, stride: Any) -> None:
        if not isinstance(storage, _Storage):
            _refuse(f"a tensor whose storage is {type(storage).__name__}, not a storage id")
        if not _is_int(offset) or offset < 0:
            _refuse(f"a tensor with storage offset {offset!r}")
        for name, value in (("size", size), ("stride", stride)):
            if not isinstance(value, tuple) or not all(_is_int(i) and i >= 0 for i in value):
                _refuse(f"a tensor with {name} {value!r}")
        if len(size) != len(stride):
            _refuse(f"a tensor with size {size} and stride {stride} of different lengths")
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(int(i) for i in size)
        self.stride = tuple(int(i) for i in stride)

    def __setstate__(self, state: Any) -> None:
        _refuse_state(self)

    def to_numpy(self) -> np.ndarray:
        flat = self.storage.array()
        count = int(np.prod(self.size, dtype=np.int64))
        if count == 0:
            return np.zeros(self.size, flat.dtype)
        last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
        if last >= flat.size:
            raise ValueError(
                f"tensor of size {self.size}, stride {self.stride} and offset {self.offset} "
                f"reads past the end of its storage of {flat.size} elements"
            )
        item = flat.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[self.offset :],
            shape=self.size,
            strides=tuple(s * item for s in self.stride),
            writeable=False,
        )
        return np.array(view, order="C", copy=True)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _refuse(what: str) -> NoReturn:
    raise ValueError(f"refusing to load this PyTorch file: it holds {what}")


def _refuse_state(obj: Any) -> NoReturn:
    _refuse(f"state to set on {obj!r}, which a state dict never does")


class _Function:
    """An allowed global function; immutable, so the file cannot alter it (pickle's BUILD)."""

    __slots__ = ("_function", "_name")

    def __init__(self, function: Callable[..., Any], name: str) -> None:
        self._function = function
        self._name = name

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __setstate__(self, state: Any) -> None:
        _refuse_state(self)

    def __repr__(self) -> str:
        return self._name


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any = False,
    backward_hooks: Any = None,
    metadata: Any = None,
) -> _TensorRef:
    del requires_grad, backward_hooks, metadata  # irrelevant for inference weights
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    del requires_grad, backward_hooks
    if not isinstance(data, _TensorRef):
        _refuse(f"a parameter wrapping {type(data).__name__}, not a tensor")
    return data


#: ``(module, name)`` globals a legacy state dict may reference, and their stand-ins.
ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _Function(
        _rebuild_tensor_v2, "torch._utils._rebuild_tensor_v2"
    ),
    ("torch._utils", "_rebuild_parameter"): _Function(
        _rebuild_parameter, "torch._utils._rebuild_parameter"
    ),
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only :data:`ALLOWED_GLOBALS`; storages become :class:`_Storage` placeholders."""

    def __init__(self, file: IO[bytes], storages: dict[str, _Storage]) -> None:
        super().__init__(file)
        self.storages = storages

    def find_class(self, module: str, name: str) -> Any:
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            allowed = ", ".join(f"{m}.{n}" for m, n in ALLOWED_GLOBALS)
            raise ValueError(
                f"refusing to load this PyTorch file: it references the Python object "
                f"{module}.{name}, which a plain state dict of tensors never does (it could run "
                f"arbitrary code). Only these are accepted: {allowed}"
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage" or len(pid) != 6:
            _refuse(f"the persistent id {pid!r} (expected a storage)")
        _, storage_type, key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            _refuse(f"a storage of type {storage_type!r}")
        if not isinstance(key, str) or not _is_int(numel) or numel < 0:
            _refuse(f"the malformed storage id {pid!r}")
        root = self.storages.get(key)
        if root is None:
            root = self.storages[key] = _Storage(key, storage_type, numel)
        elif root.dtype != storage_type.dtype or root.numel != numel:
            _refuse(f"storage {key!r} declared twice with different types or sizes")
        if view_metadata is None:
            return root
        if not (isinstance(view_metadata, tuple) and len(view_metadata) == 3):
            _refuse(f"the malformed storage view {view_metadata!r}")
        view_key, offset, view_size = view_metadata
        if not (_is_int(offset) and _is_int(view_size) and 0 <= offset <= offset + view_size):
            _refuse(f"the malformed storage view {view_metadata!r}")
        if offset + view_size > numel:
            _refuse(f"a view of {view_size} elements at {offset} past its storage of {numel}")
        view = _Storage(str(view_key), storage_type, view_size)
        view.view_of = (root, offset)
        return view


def _load_pickle(handle: IO[bytes], storages: dict[str, _Storage], what: str) -> Any:
    try:
        return _RestrictedUnpickler(handle, storages).load()
    except ValueError:
        raise
    except Exception as err:  # truncated or corrupt pickle: EOFError, UnpicklingError, ...
        raise ValueError(f"not a legacy PyTorch file: could not read its {what} ({err})") from err


def _read_exact(handle: IO[bytes], count: int, what: str) -> bytes:
    data = handle.read(count)
    if len(data) != count:
        raise ValueError(
            f"truncated PyTorch file: expected {count} bytes of {what}, got {len(data)}"
        )
    return data


def load_legacy_state_dict(source: str | os.PathLike[str] | IO[bytes]) -> dict[str, np.ndarray]:
    """Reads a legacy (pre-1.6) ``torch.save`` state dict into NumPy arrays, without torch.

    Only the objects a plain state dict is made of are accepted (see the module docstring);
    any other pickled global (a class, a function such as ``os.system``) is refused before it
    is called.

    Args:
        source: path of the ``.pth`` file, or a binary file object positioned at its start.

    Returns:
        A ``dict`` from parameter name (e.g. ``"_conv_stem.weight"``) to a C-contiguous array in
        PyTorch's layout and dtype (``float32`` weights ``[out, in, kh, kw]``, ``int64``
        counters), in the file's order.

    Raises:
        ValueError: not a legacy PyTorch file (wrong magic number or protocol, a zip archive,
            big-endian data, truncated or trailing data), or it references any other pickled
            object, or its top-level object is not a dict of tensors.
        FileNotFoundError: ``source`` is a path that does not exist.

    Example:
        >>> import io, pickle
        >>> load_legacy_state_dict(io.BytesIO(pickle.dumps(42)))
        Traceback (most recent call last):
        ...
        ValueError: not a legacy PyTorch file: magic number 42 ...
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"PyTorch file {str(path)!r} does not exist")
        return _load(path.read_bytes(), str(path))
    return _load(source.read(), str(getattr(source, "name", "<stream>")))


def _load(data: bytes, name: str) -> dict[str, np.ndarray]:
    if data[:4] == b"PK\x03\x04":
        raise ValueError(
            f"{name!r} is a zip archive (the PyTorch >= 1.6 format), not the legacy format this "
            f"reader supports"
        )
    handle = io.BytesIO(data)
    storages: dict[str, _Storage] = {}
    magic = _load_pickle(handle, storages, "magic number")
    if magic != MAGIC_NUMBER:
        raise ValueError(f"not a legacy PyTorch file: magic number {magic!r} in {name!r}")
    protocol = _load_pickle(handle, storages, "protocol version")
    if protocol != PROTOCOL_VERSION:
        raise ValueError(f"unsupported PyTorch protocol version {protocol!r} in {name!r}")
    sys_info = _load_pickle(handle, storages, "system info")
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise ValueError(f"{name!r} was not saved on a little-endian machine: {sys_info!r}")
    state = _load_pickle(handle, storages, "state dict")
    keys = _load_pickle(handle, storages, "storage keys")
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError(f"malformed storage key list in {name!r}")
    if set(keys) != set(storages) or len(keys) != len(storages):
        raise ValueError(
            f"{name!r}: the storage keys listed ({len(keys)}) do not match the storages the "
            f"state dict uses ({len(storages)})"
        )
    for key in keys:
        storage = storages[key]
        (count,) = struct.unpack("<q", _read_exact(handle, 8, f"storage {key} header"))
        if count != storage.numel:
            raise ValueError(
                f"{name!r}: storage {key} holds {count} elements, its tensors declare "
                f"{storage.numel}"
            )
        offset = handle.tell()
        nbytes = count * storage.dtype.itemsize
        if offset + nbytes > len(data):
            raise ValueError(
                f"truncated PyTorch file {name!r}: storage {key} needs {nbytes} bytes, "
                f"{len(data) - offset} are left"
            )
        handle.seek(offset + nbytes)
        storage.data = np.frombuffer(data, storage.dtype, count=count, offset=offset)
    if handle.read(1):
        raise ValueError(f"{name!r}: unexpected data after the last storage")
    if not isinstance(state, dict):
        raise ValueError(f"{name!r} holds a {type(state).__name__}, expected a state dict")
    extra = set(getattr(state, "__dict__", {})) - {"_metadata"}  # torch's module versions
    if type(state) not in (dict, collections.OrderedDict) or extra:
        raise ValueError(f"{name!r}: the state dict carries unexpected attributes {sorted(extra)}")
    arrays: dict[str, np.ndarray] = {}
    for param, value in state.items():
        if not isinstance(param, str) or not isinstance(value, _TensorRef):
            raise ValueError(
                f"{name!r}: entry {param!r} is a {type(value).__name__}, expected a tensor"
            )
        arrays[param] = value.to_numpy()
    logger.debug("read %d tensors from %s", len(arrays), name)
    return arrays
