"""TF1-slim InceptionV3 checkpoints (e.g. the adversarially trained ones) as Keras 3 models.

The adversarially trained InceptionV3 networks of Kurakin et al. (2017) and Tramèr et al. (2018),
``adv_inception_v3``, ``ens3_adv_inception_v3`` and ``ens4_adv_inception_v3``, were released as
TF1-slim checkpoints (see :data:`SLIM_CHECKPOINTS`). Keras' ``InceptionV3`` is the same network
(convolutions without bias, batch normalization without scale, ``epsilon = 1e-3``), so the
checkpoint variables are copied into ``keras.applications.InceptionV3(weights=None,
classes=1001)`` by name: each Keras convolution / batch normalization pair gets the slim scope at
the same place of the architecture (:func:`slim_inception_v3_scopes`) and the final ``Dense``
layer gets ``InceptionV3/Logits/Conv2d_1c_1x1``. The auxiliary head (``InceptionV3/AuxLogits``)
and ``global_step`` are ignored.

The networks take images in ``[-1, 1]`` and output 1001 logits (class 0 = background); the
returned :class:`~tfsmooth.models.base.Model` takes images in ``[0, 1]`` and maps them with
``preprocessing="tf"``.

Example:
    >>> scopes = slim_inception_v3_scopes()
    >>> len(scopes), scopes[0], scopes[-1]
    (94, 'Conv2d_1a_3x3', 'Mixed_7c/Branch_3/Conv2d_0b_1x1')
    >>> sorted(SLIM_CHECKPOINTS)
    ['adv_inception_v3', 'ens3_adv_inception_v3', 'ens4_adv_inception_v3']
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.models.base import Model

logger = logging.getLogger(__name__)

__all__ = ["SLIM_CHECKPOINTS", "load_slim_inception_v3", "slim_inception_v3_scopes"]

#: Released TF1-slim InceptionV3 checkpoints: name -> (archive URL, checkpoint prefix inside it).
SLIM_CHECKPOINTS: dict[str, tuple[str, str]] = {
    "adv_inception_v3": (
        "http://download.tensorflow.org/models/adv_inception_v3_2017_08_18.tar.gz",
        "adv_inception_v3.ckpt",
    ),
    "ens3_adv_inception_v3": (
        "http://download.tensorflow.org/models/ens3_adv_inception_v3_2017_08_18.tar.gz",
        "ens3_adv_inception_v3.ckpt",
    ),
    "ens4_adv_inception_v3": (
        "http://download.tensorflow.org/models/ens4_adv_inception_v3_2017_08_18.tar.gz",
        "ens4_adv_inception_v3.ckpt",
    ),
}

_STEM = ("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3")
# Branches of each mixed block, convolutions in the order slim (and Keras) create them.
_BRANCHES_5 = (
    ("Conv2d_0a_1x1",),
    ("Conv2d_0a_1x1", "Conv2d_0b_5x5"),
    ("Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_0c_3x3"),
    ("Conv2d_0b_1x1",),
)
_BRANCHES_6 = (
    ("Conv2d_0a_1x1",),
    ("Conv2d_0a_1x1", "Conv2d_0b_1x7", "Conv2d_0c_7x1"),
    ("Conv2d_0a_1x1", "Conv2d_0b_7x1", "Conv2d_0c_1x7", "Conv2d_0d_7x1", "Conv2d_0e_1x7"),
    ("Conv2d_0b_1x1",),
)


def _branches_7(branch_1_last: str) -> tuple[tuple[str, ...], ...]:
    return (
        ("Conv2d_0a_1x1",),
        ("Conv2d_0a_1x1", "Conv2d_0b_1x3", branch_1_last),
        ("Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_0c_1x3", "Conv2d_0d_3x1"),
        ("Conv2d_0b_1x1",),
    )


_MIXED: tuple[tuple[str, tuple[tuple[str, ...], ...]], ...] = (
    ("Mixed_5b", _BRANCHES_5),
    # slim's Mixed_5c names its 5x5 branch differently (a quirk of the original code).
    ("Mixed_5c", (_BRANCHES_5[0], ("Conv2d_0b_1x1", "Conv_1_0c_5x5"), *_BRANCHES_5[2:])),
    ("Mixed_5d", _BRANCHES_5),
    ("Mixed_6a", (("Conv2d_1a_1x1",), ("Conv2d_0a_1x1", "Conv2d_0b_3x3", "Conv2d_1a_1x1"))),
    ("Mixed_6b", _BRANCHES_6),
    ("Mixed_6c", _BRANCHES_6),
    ("Mixed_6d", _BRANCHES_6),
    ("Mixed_6e", _BRANCHES_6),
    (
        "Mixed_7a",
        (
            ("Conv2d_0a_1x1", "Conv2d_1a_3x3"),
            ("Conv2d_0a_1x1", "Conv2d_0b_1x7", "Conv2d_0c_7x1", "Conv2d_1a_3x3"),
        ),
    ),
    ("Mixed_7b", _branches_7("Conv2d_0b_3x1")),
    ("Mixed_7c", _branches_7("Conv2d_0c_3x1")),
)
_LOGITS = "Logits/Conv2d_1c_1x1"
_BN_VARIABLES = ("beta", "moving_mean", "moving_variance")


def slim_inception_v3_scopes() -> list[str]:
    """The 94 slim scopes of InceptionV3's convolutions, in the order Keras creates its layers.

    Keras' ``InceptionV3`` creates its ``Conv2D`` / ``BatchNormalization`` pairs block by block
    and, inside a block, branch by branch in the order of slim's ``Branch_0`` .. ``Branch_3``, so
    the i-th convolution Keras creates is the i-th scope of this list (without the
    ``InceptionV3/`` prefix).

    Example:
        >>> for scope in slim_inception_v3_scopes()[5:8]:
        ...     print(scope)
        Mixed_5b/Branch_0/Conv2d_0a_1x1
        Mixed_5b/Branch_1/Conv2d_0a_1x1
        Mixed_5b/Branch_1/Conv2d_0b_5x5
    """
    scopes = list(_STEM)
    for block, branches in _MIXED:
        for index, convs in enumerate(branches):
            scopes += [f"{block}/Branch_{index}/{conv}" for conv in convs]
    return scopes


def _resolve_checkpoint(checkpoint_path: str | os.PathLike[str]) -> str:
    """The checkpoint prefix for a prefix, a ``.index`` / ``.data-*`` file or a directory."""
    if not isinstance(checkpoint_path, (str, os.PathLike)):
        raise TypeError(f"`checkpoint_path` must be a path, got {type(checkpoint_path).__name__}")
    path = Path(checkpoint_path).expanduser()
    hint = (
        "download and extract one of "
        + ", ".join(url for url, _ in SLIM_CHECKPOINTS.values())
        + " and pass the checkpoint prefix, e.g. '.../adv_inception_v3.ckpt'"
    )
    if path.is_dir():
        state = tf.train.latest_checkpoint(str(path))
        if state:
            return state
        indexes = sorted(path.glob("*.index"))
        if len(indexes) == 1:
            return str(indexes[0])[: -len(".index")]
        if not indexes:
            raise FileNotFoundError(
                f"no TF checkpoint (*.index file) in directory {str(path)!r}; {hint}"
            )
        raise ValueError(
            f"directory {str(path)!r} holds several checkpoints "
            f"{[p.name[: -len('.index')] for p in indexes]}; pass one prefix"
        )
    match = re.fullmatch(r"(.*)\.(index|data-\d+-of-\d+|meta)", str(path))
    if match and path.is_file():
        path = Path(match.group(1))
    if Path(str(path) + ".index").is_file() or path.is_file():  # V2, or a V1 single file
        return str(path)
    raise FileNotFoundError(f"TF checkpoint {str(path)!r} not found (no {path.name}.index); {hint}")


def _describe_scopes(names: list[str]) -> list[str]:
    return sorted({name.split("/", 1)[0] for name in names})


def _limited(items: list[str], limit: int = 12) -> str:
    text = ", ".join(items[:limit])
    return text + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _ordered_layers(model: Any, cls: type, prefix: str) -> list[Any]:
    """Layers of type ``cls`` in creation order (Keras auto-names them ``prefix``, ``prefix_N``)."""
    layers: list[Any] = [layer for layer in model.layers if isinstance(layer, cls)]
    keyed = []
    for layer in layers:
        match = re.fullmatch(rf"{prefix}(?:_(\d+))?", layer.name)
        if match is None:
            raise ValueError(
                f"cannot order the Keras InceptionV3 layers: unexpected layer name {layer.name!r} "
                f"(expected Keras' automatic names {prefix!r}, '{prefix}_<n>')"
            )
        keyed.append((int(match.group(1) or 0), layer))
    return [layer for _, layer in sorted(keyed, key=lambda pair: pair[0])]


def load_slim_inception_v3(
    checkpoint_path: str | os.PathLike[str],
    *,
    num_classes: int = 1001,
    input_size: tuple[int, int] = (299, 299),
    scope: str = "InceptionV3",
) -> Model:
    """Loads a TF1-slim InceptionV3 checkpoint into ``keras.applications.InceptionV3``.

    Reads the checkpoint with :func:`tf.train.load_checkpoint` (no TF1 graph is built) and copies
    every variable by name: for the i-th Keras convolution, the slim scope
    ``slim_inception_v3_scopes()[i]`` provides ``weights`` (the kernel, same
    ``[height, width, in, out]`` layout) and ``BatchNorm/{beta, moving_mean, moving_variance}``;
    ``Logits/Conv2d_1c_1x1/{weights, biases}`` (``[1, 1, 2048, classes]``) becomes the final
    dense layer. Every name and shape is checked before anything is assigned.

    Args:
        checkpoint_path: checkpoint prefix (``.../adv_inception_v3.ckpt``), one of its files
            (``.index`` / ``.data-*``), or a directory holding exactly one checkpoint. See
            :data:`SLIM_CHECKPOINTS` for where the released ones are.
        num_classes: logits of the checkpoint's classifier (1001 for the released ones).
        input_size: ``(height, width)`` the Keras network is built for (at least 75); images of
            another size are bilinearly resized to it. slim InceptionV3 was trained at 299.
        scope: the checkpoint's top-level variable scope.

    Returns:
        A :class:`~tfsmooth.models.base.Model` taking images in ``[0, 1]``
        (``preprocessing="tf"`` maps them to ``[-1, 1]``) and returning ``num_classes`` logits,
        class 0 = background for 1001.

    Raises:
        FileNotFoundError: no checkpoint at ``checkpoint_path``.
        ValueError: the checkpoint lacks variables of InceptionV3 or has them with other shapes
            (the message lists them), e.g. a checkpoint of another architecture.

    Example:
        >>> load_slim_inception_v3("/nonexistent/adv_inception_v3.ckpt")
        Traceback (most recent call last):
        ...
        FileNotFoundError: TF checkpoint '/nonexistent/adv_inception_v3.ckpt' not found ...
    """
    num_classes = v.check_int_at_least(num_classes, "num_classes", 2)
    if len(tuple(input_size)) != 2:
        raise ValueError(f"`input_size` must be (height, width), got {input_size!r}")
    height = v.check_int_at_least(input_size[0], "input_size[0]", 75)
    width = v.check_int_at_least(input_size[1], "input_size[1]", 75)
    if not isinstance(scope, str) or not scope:
        raise TypeError(f"`scope` must be a non-empty string, got {scope!r}")
    prefix = _resolve_checkpoint(checkpoint_path)
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as err:
        raise ValueError(f"could not read TF checkpoint {prefix!r}: {err}") from err
    shapes: dict[str, list[int]] = reader.get_variable_to_shape_map()
    names = sorted(shapes)

    # Names first: no network is built for a checkpoint of another architecture.
    if not any(name.startswith(scope + "/") for name in names):
        raise ValueError(
            f"checkpoint {prefix!r} is not a slim InceptionV3 checkpoint: it has no variable "
            f"under {scope + '/'!r}; its top-level scopes are {_limited(_describe_scopes(names))}"
        )
    conv_scopes = [f"{scope}/{s}" for s in slim_inception_v3_scopes()]
    wanted = [f"{s}/weights" for s in conv_scopes]
    wanted += [f"{s}/BatchNorm/{b}" for s in conv_scopes for b in _BN_VARIABLES]
    wanted += [f"{scope}/{_LOGITS}/weights", f"{scope}/{_LOGITS}/biases"]
    missing = [name for name in wanted if name not in shapes]
    if missing:
        raise ValueError(
            f"checkpoint {prefix!r} lacks {len(missing)} of the {len(wanted)} InceptionV3 "
            f"variables: {_limited(missing)}"
        )
    gammas = [f"{s}/BatchNorm/gamma" for s in conv_scopes if f"{s}/BatchNorm/gamma" in shapes]
    if gammas:
        raise ValueError(
            f"checkpoint {prefix!r} has batch-norm scales ({_limited(gammas)}); slim / Keras "
            f"InceptionV3 uses batch norm without scale, so this is another architecture"
        )

    import keras

    network = keras.applications.InceptionV3(
        weights=None,
        classes=num_classes,
        classifier_activation=None,
        input_shape=(height, width, 3),
    )
    convs = _ordered_layers(network, keras.layers.Conv2D, "conv2d")
    norms = _ordered_layers(network, keras.layers.BatchNormalization, "batch_normalization")
    dense = network.get_layer("predictions")
    if len(convs) != len(conv_scopes) or len(norms) != len(conv_scopes):
        raise ValueError(
            f"keras.applications.InceptionV3 has {len(convs)} convolutions and {len(norms)} batch "
            f"normalizations, expected {len(conv_scopes)} of each; this Keras version is not "
            f"supported"
        )

    odd = [n.name for n in norms if n.scale or not np.isclose(n.epsilon, 1e-3) or not n.center]
    if odd:
        raise ValueError(
            f"keras.applications.InceptionV3 batch normalizations {_limited(odd)} differ from "
            f"slim's (center=True, scale=False, epsilon=1e-3); this Keras version is not supported"
        )
    assignments: list[tuple[Any, str, tuple[int, ...]]] = []
    for conv, norm, conv_scope in zip(convs, norms, conv_scopes):
        assignments.append((conv.kernel, f"{conv_scope}/weights", tuple(conv.kernel.shape)))
        for variable, bn_name in zip(
            (norm.beta, norm.moving_mean, norm.moving_variance), _BN_VARIABLES
        ):
            assignments.append(
                (variable, f"{conv_scope}/BatchNorm/{bn_name}", tuple(variable.shape))
            )
    kernel_shape = (1, 1) + tuple(dense.kernel.shape)
    assignments.append((dense.kernel, f"{scope}/{_LOGITS}/weights", kernel_shape))
    assignments.append((dense.bias, f"{scope}/{_LOGITS}/biases", tuple(dense.bias.shape)))

    mismatched = [
        f"{name} {tuple(shapes[name])} (expected {shape})"
        for _, name, shape in assignments
        if tuple(shapes[name]) != shape
    ]
    if mismatched:
        raise ValueError(
            f"checkpoint {prefix!r} has {len(mismatched)} InceptionV3 variables of the wrong "
            f"shape (num_classes={num_classes}): {_limited(mismatched)}"
        )
    for variable, name, _ in assignments:
        value = np.asarray(reader.get_tensor(name), dtype=np.float32)
        variable.assign(value.reshape(tuple(variable.shape)))

    used = {name for _, name, _ in assignments}
    ignored = [n for n in names if n not in used and not n.startswith(f"{scope}/AuxLogits/")]
    if ignored:
        logger.info("ignored %d checkpoint variables: %s", len(ignored), _limited(ignored))
    name = Path(prefix).name.removesuffix(".ckpt") or "slim_inception_v3"
    logger.info("loaded slim InceptionV3 checkpoint %s (%d variables)", prefix, len(assignments))
    return Model(
        network,
        preprocessing="tf",
        input_size=(height, width),
        num_classes=num_classes,
        name=name,
    )
