"""ImageNet classifiers from TF-Hub (or any SavedModel), loaded without ``tensorflow_hub``.

``hub.KerasLayer`` does not work with Keras 3, so this module loads the SavedModel itself with
:func:`tf.saved_model.load` and wraps it in a :class:`~tfsmooth.models.base.Model`. Nothing is
downloaded: a TF-Hub handle is looked up in the TF-Hub cache, laid out exactly as
``tensorflow_hub`` lays it out (``<cache>/<sha1 of the handle URL>``), so a model fetched once
with ``tensorflow_hub`` on a machine with internet (or extracted there by hand) is found offline.

The two classifiers of the paper (section 5) are known by name, see :data:`KNOWN_HANDLES`:
inputs in ``[0, 1]``, 1001 logits with class 0 = background, the convention of the NIPS 2017
labels (:mod:`tfsmooth.data.nips17`).

Example:
    >>> for handle, spec in sorted(KNOWN_HANDLES.items()):
    ...     print(handle, spec.input_size, spec.num_classes)
    google/imagenet/inception_v3/classification/5 (299, 299) 1001
    google/imagenet/resnet_v2_50/classification/5 (224, 224) 1001
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.models.base import Model

logger = logging.getLogger(__name__)

__all__ = [
    "KNOWN_HANDLES",
    "TFHUB_CACHE_ENV",
    "HubModelSpec",
    "hub_cache_path",
    "load_hub_model",
    "normalize_handle",
]

#: The environment variable ``tensorflow_hub`` reads its cache directory from.
TFHUB_CACHE_ENV = "TFHUB_CACHE_DIR"

_TFHUB_PREFIX = "https://tfhub.dev/"
_KAGGLE_PREFIX = "https://www.kaggle.com/models/"


@dataclasses.dataclass(frozen=True)
class HubModelSpec:
    """What tfsmooth knows about a TF-Hub image classifier.

    Attributes:
        handle: the short TF-Hub handle, e.g. ``"google/imagenet/inception_v3/classification/5"``.
        kaggle: the same model on Kaggle Models (where tfhub.dev now redirects).
        input_size: ``(height, width)`` the model was trained at; images are resized to it.
        num_classes: number of logits (1001 = ImageNet with background class 0).
    """

    handle: str
    kaggle: str
    input_size: tuple[int, int]
    num_classes: int = 1001

    @property
    def url(self) -> str:
        """The ``https://tfhub.dev/...`` URL, the string ``tensorflow_hub`` hashes for its cache."""
        return _TFHUB_PREFIX + self.handle

    @property
    def kaggle_url(self) -> str:
        """The ``https://www.kaggle.com/models/...`` URL of the model."""
        return _KAGGLE_PREFIX + self.kaggle


#: The classifiers of the paper's ImageNet experiments, by short TF-Hub handle.
KNOWN_HANDLES: dict[str, HubModelSpec] = {
    spec.handle: spec
    for spec in (
        HubModelSpec(
            handle="google/imagenet/inception_v3/classification/5",
            kaggle="google/inception-v3/TensorFlow2/classification/2",
            input_size=(299, 299),
        ),
        HubModelSpec(
            handle="google/imagenet/resnet_v2_50/classification/5",
            kaggle="google/resnet-v2/TensorFlow2/50-classification/2",
            input_size=(224, 224),
        ),
    )
}


def _kaggle_key(path: str) -> str:
    """Canonical form of a Kaggle model path (case, ``frameworks/``... segments removed)."""
    parts = [p for p in path.strip("/").split("/") if p]
    # https://www.kaggle.com/models/<owner>/<model>/frameworks/<fw>/variations/<var>/versions/<n>
    if len(parts) == 8 and parts[2:7:2] == ["frameworks", "variations", "versions"]:
        parts = [parts[0], parts[1], parts[3], parts[5], parts[7]]
    return "/".join(parts).lower()


_KAGGLE_TO_HANDLE = {_kaggle_key(spec.kaggle): spec.handle for spec in KNOWN_HANDLES.values()}
_SHORT_HANDLE = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+/[0-9]+$")


def normalize_handle(handle: str) -> str:
    """The ``https://...`` URL form of a TF-Hub / Kaggle handle (a short handle gets tfhub.dev).

    Known models (:data:`KNOWN_HANDLES`) given in any form map to their tfhub.dev URL; query
    strings (``?tf-hub-format=compressed``) and trailing slashes are dropped.

    Example:
        >>> normalize_handle("google/imagenet/resnet_v2_50/classification/5")
        'https://tfhub.dev/google/imagenet/resnet_v2_50/classification/5'
        >>> normalize_handle(
        ...     "https://www.kaggle.com/models/google/inception-v3/tensorFlow2/classification/2"
        ... )
        'https://tfhub.dev/google/imagenet/inception_v3/classification/5'
    """
    if not isinstance(handle, str) or not handle.strip():
        raise TypeError(f"`handle` must be a non-empty string, got {handle!r}")
    text = handle.strip().split("?", 1)[0].split("#", 1)[0].rstrip("/")
    lowered = text.lower()
    for prefix in ("https://tfhub.dev/", "http://tfhub.dev/", "tfhub.dev/"):
        if lowered.startswith(prefix):
            return _TFHUB_PREFIX + text[len(prefix) :]
    for prefix in (
        "https://www.kaggle.com/models/",
        "https://kaggle.com/models/",
        "www.kaggle.com/models/",
        "kaggle.com/models/",
    ):
        if lowered.startswith(prefix):
            rest = text[len(prefix) :]
            known = _KAGGLE_TO_HANDLE.get(_kaggle_key(rest))
            return _TFHUB_PREFIX + known if known else _KAGGLE_PREFIX + rest
    if lowered.startswith(("http://", "https://")):
        return text
    if _SHORT_HANDLE.match(text):
        return _TFHUB_PREFIX + text
    raise ValueError(
        f"expected a TF-Hub handle (e.g. {next(iter(KNOWN_HANDLES))!r} or a https://tfhub.dev/ or "
        f"https://www.kaggle.com/models/ URL) or an existing SavedModel directory, got {handle!r}"
    )


def _spec_for(url: str) -> HubModelSpec | None:
    if url.startswith(_TFHUB_PREFIX):
        return KNOWN_HANDLES.get(url[len(_TFHUB_PREFIX) :])
    return None


def _cache_dirs(cache_dir: str | os.PathLike[str] | None) -> list[Path]:
    if cache_dir is not None:
        return [Path(cache_dir).expanduser()]
    dirs = []
    env = os.environ.get(TFHUB_CACHE_ENV, "")
    if env:
        dirs.append(Path(env).expanduser())
    # tensorflow_hub's own fallback when TFHUB_CACHE_DIR is not set.
    dirs.append(Path(tempfile.gettempdir()) / "tfhub_modules")
    return dirs


def _cache_names(url: str, typed: str | None = None) -> list[str]:
    """SHA-1 names under which ``tensorflow_hub`` may have cached ``url`` (one per alias).

    ``tensorflow_hub`` hashes the handle string exactly as it was passed to it, so the string
    the user typed (``typed``) and the other spellings of a known model are tried too.
    """
    aliases = [url]
    if typed is not None and typed.strip().lower().startswith(("http://", "https://")):
        aliases.append(typed.strip())
    spec = _spec_for(url)
    if spec is not None:
        aliases.append(spec.kaggle_url)
    names: list[str] = []
    for alias in aliases:
        name = hashlib.sha1(alias.encode("utf8")).hexdigest()
        if name not in names:
            names.append(name)
    return names


def hub_cache_path(handle: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Directory where ``tensorflow_hub`` caches ``handle``: ``<cache>/<sha1(handle URL)>``.

    This is where :func:`load_hub_model` looks for the extracted SavedModel (``saved_model.pb``
    and ``variables/``). The cache is ``cache_dir`` if given, else ``$TFHUB_CACHE_DIR``, else
    ``<system temp dir>/tfhub_modules`` (the fallbacks of ``tensorflow_hub``).

    Args:
        handle: a TF-Hub handle in any form accepted by :func:`normalize_handle`.
        cache_dir: optional cache directory.

    Returns:
        The module directory (it may not exist).

    Example:
        >>> hub_cache_path("google/imagenet/inception_v3/classification/5", "/cache").as_posix()
        '/cache/b0d2d75d4975ad57c942066aa2d64c6c2955a775'
    """
    url = normalize_handle(handle)
    return _cache_dirs(cache_dir)[0] / _cache_names(url)[0]


def _is_saved_model(path: Path) -> bool:
    return (path / "saved_model.pb").is_file() or (path / "saved_model.pbtxt").is_file()


def _missing_message(handle: str, url: str, cache_dir: str | os.PathLike[str] | None) -> str:
    target = hub_cache_path(url, cache_dir)
    looked = [str(d / n) for d in _cache_dirs(cache_dir) for n in _cache_names(url, handle)]
    if cache_dir is not None:
        where = "the `cache_dir` argument"
    elif os.environ.get(TFHUB_CACHE_ENV):
        where = f"${TFHUB_CACHE_ENV}"
    else:
        where = f"tensorflow_hub's default, as ${TFHUB_CACHE_ENV} is not set"
    return (
        f"TF-Hub model {handle!r} ({url}) is not in the TF-Hub cache and tfsmooth never "
        f"downloads. Put the extracted SavedModel (saved_model.pb and variables/) in\n"
        f"    {target}\n"
        f"(cache directory from {where}), e.g. download {url}?tf-hub-format=compressed on a "
        f"machine with internet and extract it there, or run `tensorflow_hub.resolve({url!r})` "
        f"with {TFHUB_CACHE_ENV}={target.parent}. You may also pass the SavedModel directory "
        f"itself to load_hub_model. Looked in: {', '.join(looked)}"
    )


def _resolve(handle_or_path: str | os.PathLike[str], cache_dir: Any) -> tuple[Path, str | None]:
    """Returns the SavedModel directory and the normalized handle URL (None for a local path)."""
    if isinstance(handle_or_path, os.PathLike):
        path = Path(handle_or_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"SavedModel directory {str(path)!r} does not exist")
        return path, None
    if not isinstance(handle_or_path, str):
        raise TypeError(
            "`handle_or_path` must be a TF-Hub handle or a path, "
            f"got {type(handle_or_path).__name__}"
        )
    local = Path(handle_or_path).expanduser()
    looks_remote = handle_or_path.strip().lower().startswith(("http://", "https://"))
    if not looks_remote and local.exists():
        return local, None
    try:
        url = normalize_handle(handle_or_path)
    except ValueError as err:
        raise FileNotFoundError(
            f"{handle_or_path!r} is neither an existing SavedModel directory nor a TF-Hub handle; "
            f"known handles: {sorted(KNOWN_HANDLES)}"
        ) from err
    for directory in _cache_dirs(cache_dir):
        for name in _cache_names(url, handle_or_path):
            candidate = directory / name
            if _is_saved_model(candidate):
                logger.info("TF-Hub model %s found in the cache at %s", url, candidate)
                return candidate, url
    message = _missing_message(handle_or_path, url, cache_dir)
    if not looks_remote:
        message += f". (No local directory {str(local)!r} exists either.)"
    raise FileNotFoundError(message)


def _image_spec(spec: Any) -> tf.TensorSpec | None:
    return spec if isinstance(spec, tf.TensorSpec) and spec.shape.rank == 4 else None


class _SavedModelClassifier:
    """Callable wrapper of a loaded SavedModel: images ``[B, H, W, 3]`` -> logits ``[B, k]``.

    Keeps a reference to the loaded object (its variables live as long as this wrapper).
    """

    def __init__(self, loaded: Any, name: str) -> None:
        self.loaded = loaded
        self.name = name
        self.input_key: str | None = None
        self.output_key: str | None = None
        self.input_specs: list[tf.TensorSpec] = []
        self.output_dim: int | None = None
        function: Any
        if callable(loaded):
            function = loaded.__call__
            self.endpoint = "__call__"
            for concrete in getattr(function, "concrete_functions", []):
                args, kwargs = concrete.structured_input_signature
                spec = _image_spec(args[0]) if args else None
                if spec is None and len(kwargs) == 1:
                    spec = _image_spec(next(iter(kwargs.values())))
                if spec is not None:
                    self.input_specs.append(spec)
                self._note_output(concrete.structured_outputs)
        elif signature := _find_signature(loaded):
            function = loaded.signatures[signature]
            self.endpoint = signature
            _, kwargs = function.structured_input_signature
            images = {k: s for k, s in kwargs.items() if _image_spec(s) is not None}
            if len(images) != 1:
                raise ValueError(
                    f"SavedModel {name!r}: expected a {signature!r} signature with one image "
                    f"input [batch, height, width, 3], got inputs {kwargs}"
                )
            self.input_key, spec = next(iter(images.items()))
            self.input_specs.append(spec)
            outputs = function.structured_outputs
            self.output_key = _pick_output(outputs, name)
            self._note_output(outputs[self.output_key])
        else:
            signatures = sorted(getattr(loaded, "signatures", {}))
            raise ValueError(
                f"SavedModel {name!r} is neither callable (no __call__ function was saved) nor has "
                f"a 'serving_default' signature (signatures: {signatures}); export the classifier "
                f"with a `__call__` tf.function or `signatures={{'serving_default': fn}}`"
            )
        self.function = function
        self._traced = tf.function(self._forward, reduce_retracing=True)

    def _note_output(self, outputs: Any) -> None:
        if isinstance(outputs, dict) and len(outputs) == 1:
            outputs = next(iter(outputs.values()))
        if isinstance(outputs, tf.TensorSpec) and outputs.shape.rank == 2:
            self.output_dim = outputs.shape[-1]

    @property
    def fixed_size(self) -> tuple[int, int] | None:
        """``(height, width)`` if every saved input signature fixes it, else None."""
        sizes = {tuple(spec.shape[1:3]) for spec in self.input_specs}
        if len(sizes) == 1:
            size = next(iter(sizes))
            if None not in size:
                return (int(size[0]), int(size[1]))
        return None

    @property
    def input_dtype(self) -> tf.DType:
        return self.input_specs[0].dtype if self.input_specs else tf.float32

    def _forward(self, images: tf.Tensor) -> tf.Tensor:
        images = tf.cast(images, self.input_dtype)
        if self.input_key is not None:
            outputs = self.function(**{self.input_key: images})
        else:
            outputs = self.function(images)
        if isinstance(outputs, dict):
            outputs = (
                outputs[self.output_key] if self.output_key else _only_value(outputs, self.name)
            )
        return outputs

    def __call__(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        """Logits for ``images``; the SavedModel always runs in inference mode."""
        del training
        return self._traced(images)


#: Signatures tried, in order, when the SavedModel has no ``__call__`` (the TF1 Hub format's
#: image classifiers export ``default`` / ``image_classification``).
_SIGNATURES = ("serving_default", "default", "image_classification")


def _find_signature(loaded: Any) -> str | None:
    signatures = getattr(loaded, "signatures", {})
    return next((name for name in _SIGNATURES if name in signatures), None)


def _only_value(outputs: dict[str, Any], name: str) -> Any:
    return outputs[_pick_output(outputs, name)]


def _pick_output(outputs: Any, name: str) -> str:
    if not isinstance(outputs, dict):
        raise ValueError(
            f"SavedModel {name!r}: expected a dict of signature outputs, got {outputs}"
        )
    if len(outputs) == 1:
        return next(iter(outputs))
    for key in ("logits", "default", "output_0", "outputs"):
        if key in outputs:
            return key
    raise ValueError(
        f"SavedModel {name!r} returns several outputs {sorted(outputs)} and none is named "
        f"'logits', 'default', 'output_0' or 'outputs'; expected logits [batch, classes]"
    )


def load_hub_model(
    handle_or_path: str | os.PathLike[str],
    *,
    input_size: tuple[int, int] | None = None,
    num_classes: int | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Model:
    """Loads a TF-Hub image classifier or a SavedModel directory as a :class:`Model`.

    The SavedModel is loaded with :func:`tf.saved_model.load` (never ``hub.KerasLayer``, which
    fails with Keras 3) and called through its ``__call__`` function, else its
    ``serving_default`` signature (or, for the TF1 Hub format, ``default``), inside a
    :func:`tf.function`. The model runs in inference
    mode and is differentiable, so gradient attacks work on it. Its inputs are images in
    ``[0, 1]`` (the TF-Hub image convention), so the returned model has ``bounds=(0, 1)`` and no
    preprocessing; images of another size are bilinearly resized to ``input_size`` first.

    Nothing is downloaded. A handle is looked up in the TF-Hub cache directory, taken from
    ``cache_dir``, else from the environment variable ``TFHUB_CACHE_DIR`` (the one documented
    place where tfsmooth reads the environment, for compatibility with ``tensorflow_hub``),
    else ``<system temp dir>/tfhub_modules``; the model must sit, extracted, in
    ``<cache>/<sha1 hex of the handle URL>`` as ``tensorflow_hub`` stores it
    (:func:`hub_cache_path`). ``tensorflow_hub`` itself is not needed.

    Args:
        handle_or_path: a known handle (:data:`KNOWN_HANDLES`, e.g.
            ``"google/imagenet/inception_v3/classification/5"``), its ``https://tfhub.dev/`` or
            ``https://www.kaggle.com/models/`` URL, any other TF-Hub URL, or a local SavedModel
            directory.
        input_size: ``(height, width)`` the model expects. Default: the known model's size, or
            the size fixed by the SavedModel's input signature, or none (images are passed
            unchanged).
        num_classes: expected number of logits. Default: 1001 for known models, or the
            signature's output size.
        cache_dir: TF-Hub cache directory (overrides ``$TFHUB_CACHE_DIR``).

    Returns:
        A :class:`~tfsmooth.models.base.Model` with ``bounds=(0, 1)``; for the known models
        logit 0 is the background class and labels are 1..1000 (NIPS 2017 convention).

    Raises:
        FileNotFoundError: the path does not exist or the handle is not cached; the message
            names the directory to put the model in.
        ValueError: the directory is not a usable SavedModel (no ``saved_model.pb``, neither
            callable nor a ``serving_default`` signature, a fixed input size other than
            ``input_size``, an output size other than ``num_classes``).

    Example:
        >>> load_hub_model("google/imagenet/inception_v3/classification/5", cache_dir="/nowhere")
        Traceback (most recent call last):
        ...
        FileNotFoundError: TF-Hub model ... is not in the TF-Hub cache ...
    """
    if input_size is not None:
        input_size = v.check_size(input_size, "input_size")
    if num_classes is not None:
        num_classes = v.check_int_at_least(num_classes, "num_classes", 2)
    path, url = _resolve(handle_or_path, cache_dir)
    if not path.is_dir():
        raise ValueError(f"expected a SavedModel directory, got the file {str(path)!r}")
    if not _is_saved_model(path):
        raise ValueError(
            f"{str(path)!r} is not a SavedModel directory: it has no saved_model.pb "
            f"(contents: {sorted(p.name for p in path.iterdir())[:10]})"
        )
    spec = _spec_for(url) if url else None
    name = spec.handle if spec else (url or path.name)
    logger.info("loading SavedModel %s from %s", name, path)
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as err:  # TF raises assorted errors on corrupt / partial models
        raise ValueError(f"could not load the SavedModel in {str(path)!r}: {err}") from err
    classifier = _SavedModelClassifier(loaded, name)

    fixed = classifier.fixed_size
    if input_size is None:
        input_size = spec.input_size if spec else fixed
        if spec is None and fixed is not None:
            logger.info(
                "SavedModel %s has a fixed input size %s; images are resized to it", name, fixed
            )
    if fixed is not None and input_size != fixed:
        raise ValueError(
            f"SavedModel {name!r} only accepts images of size {fixed} (height, width) per its "
            f"input signature, but input_size={input_size}; pass input_size={fixed} (images are "
            f"then resized to it) or omit input_size"
        )
    if num_classes is None:
        num_classes = spec.num_classes if spec else classifier.output_dim
    elif classifier.output_dim is not None and classifier.output_dim != num_classes:
        raise ValueError(
            f"SavedModel {name!r} returns {classifier.output_dim} logits, expected "
            f"num_classes={num_classes}"
        )
    return Model(
        classifier,
        bounds=(0.0, 1.0),
        input_size=input_size,
        num_classes=num_classes,
        name=name,
    )
