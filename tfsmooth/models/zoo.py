"""The paper's MNIST network C4, with weights shipped in the package.

C4 (paper §5.2) is the classic "basic CNN" of CleverHans: three convolutions and one dense
layer, ReLU activations, logits out (no softmax)::

    input [B, 28, 28, 1] in [0, 1]
    conv1  Conv2D(64, 8, strides=2, padding="same")  + ReLU  -> [B, 14, 14, 64]
    conv2  Conv2D(128, 6, strides=2, padding="valid") + ReLU -> [B, 5, 5, 128]
    conv3  Conv2D(128, 5, strides=1, padding="valid") + ReLU -> [B, 1, 1, 128]
    flatten                                                  -> [B, 128]
    logits Dense(10)                                         -> [B, 10]

710,218 parameters. Two sets of weights are shipped (``tfsmooth/assets``), each with the JSON
recipe that produced it (:func:`mnist_c4_recipe`):

- ``"mnist"``: plain training;
- ``"mnist-adv"``: adversarial training with Kurakin et al.'s "step l.l." examples, as in the
  paper's Table 2 (see :func:`tfsmooth.models.training.train_c4`).

Both were trained on the train split of the MNIST sample shipped with tfsmooth (4,000 digits,
see :mod:`tfsmooth.data.mnist`), not on the 60,000 MNIST training digits: their accuracy on the
sample's 1,000 test digits is 0.974 (plain) and 0.979 (adversarial) rather than the paper's
0.99, and FGSM at ε = 0.3 fools them on 0.94 and 0.38 of the correctly classified test digits
(paper, Table 1 / 2: 0.89 and 0.15). Weights are stored as float16 in a compressed npz and
loaded into a float32 model.
"""

from __future__ import annotations

import importlib.resources
import json
import logging
import os
from typing import Any

import keras
import numpy as np

from tfsmooth.models.base import Model

logger = logging.getLogger(__name__)

__all__ = [
    "C4_WEIGHTS",
    "load_weights_npz",
    "mnist_c4",
    "mnist_c4_model",
    "mnist_c4_recipe",
    "save_weights_npz",
]

#: Names accepted by ``weights=`` and the asset files (weights, recipe) they load.
C4_WEIGHTS: dict[str, tuple[str, str]] = {
    "mnist": ("c4_mnist.npz", "c4_mnist.json"),
    "mnist-adv": ("c4_mnist_adv.npz", "c4_mnist_adv.json"),
}


def _check_weights_name(weights: Any) -> None:
    if weights is not None and weights not in C4_WEIGHTS:
        raise ValueError(f"`weights` must be None or one of {tuple(C4_WEIGHTS)}, got {weights!r}")


def _asset(filename: str) -> Any:
    return importlib.resources.files("tfsmooth").joinpath("assets", filename)


def save_weights_npz(
    model: keras.Model, path: str | os.PathLike[str], *, dtype: str = "float16"
) -> None:
    """Saves the weights of a Keras model into a compressed ``.npz``.

    Each weight is stored under ``"<layer name>/<weight name>"`` (e.g. ``"conv1/kernel"``),
    cast to ``dtype``; :func:`load_weights_npz` reads it back by name.

    Args:
        model: a built Keras model whose layers have unique names.
        path: output file (``.npz``).
        dtype: storage dtype, ``"float16"`` (default, half the size) or ``"float32"``.

    Example:
        >>> import tempfile, os
        >>> net = mnist_c4(weights=None)
        >>> path = os.path.join(tempfile.mkdtemp(), "c4.npz")
        >>> save_weights_npz(net, path)
        >>> load_weights_npz(mnist_c4(weights=None), path).count_params()
        710218
    """
    if dtype not in ("float16", "float32"):
        raise ValueError(f"`dtype` must be 'float16' or 'float32', got {dtype!r}")
    arrays: dict[str, np.ndarray] = {}
    for layer in model.layers:
        for var in layer.weights:
            key = f"{layer.name}/{var.name}"
            if key in arrays:
                raise ValueError(f"duplicate weight name {key!r}: layer names must be unique")
            arrays[key] = np.asarray(var.numpy(), dtype=dtype)
    np.savez_compressed(path, **arrays)  # type: ignore[arg-type]


def load_weights_npz(model: keras.Model, source: Any) -> keras.Model:
    """Loads weights saved by :func:`save_weights_npz` into ``model`` (in place) and returns it.

    Args:
        model: a built Keras model with the same layer names and weight shapes.
        source: a path or a file-like object / :mod:`importlib.resources` traversable.

    Raises:
        ValueError: a weight is missing from the file, has the wrong shape, or the file holds
            weights the model lacks.
    """
    if hasattr(source, "open") and not isinstance(source, (str, os.PathLike)):
        with source.open("rb") as handle, np.load(handle) as data:
            stored = {k: data[k] for k in data.files}
    else:
        with np.load(source) as data:
            stored = {k: data[k] for k in data.files}
    used = set()
    for layer in model.layers:
        for var in layer.weights:
            key = f"{layer.name}/{var.name}"
            if key not in stored:
                raise ValueError(f"weight {key!r} of model {model.name!r} is missing from {source}")
            value = stored[key]
            if tuple(value.shape) != tuple(var.shape):
                raise ValueError(
                    f"weight {key!r}: expected shape {tuple(var.shape)}, got {tuple(value.shape)}"
                )
            var.assign(value.astype(var.dtype))
            used.add(key)
    extra = sorted(set(stored) - used)
    if extra:
        raise ValueError(f"{source} holds weights the model lacks: {extra}")
    return model


def mnist_c4(weights: str | None = "mnist", *, name: str | None = None) -> keras.Model:
    """The paper's MNIST classifier C4: images ``[B, 28, 28, 1]`` → logits ``[B, 10]``.

    Args:
        weights: ``"mnist"`` (plain training), ``"mnist-adv"`` (adversarially trained with
            "step l.l.", paper Table 2) or ``None`` (random initialization, Keras defaults:
            Glorot-uniform kernels, zero biases; seed with :func:`keras.utils.set_random_seed`).
        name: model name; defaults to ``"c4"``, ``"c4_mnist"`` or ``"c4_mnist_adv"``.

    Returns:
        A float32 functional ``keras.Model`` whose input is ``[None, 28, 28, 1]`` in ``[0, 1]``
        and whose output is logits (no softmax).

    Raises:
        ValueError: unknown ``weights``.

    Example:
        >>> net = mnist_c4(weights=None)
        >>> net(np.zeros([2, 28, 28, 1], "float32")).shape
        TensorShape([2, 10])
        >>> net.count_params()
        710218
    """
    _check_weights_name(weights)
    if name is None:
        name = "c4" if weights is None else "c4_" + weights.replace("-", "_")
    inputs = keras.Input(shape=(28, 28, 1), name="images")
    layers = keras.layers
    x = layers.Conv2D(64, 8, strides=2, padding="same", activation="relu", name="conv1")(inputs)
    x = layers.Conv2D(128, 6, strides=2, padding="valid", activation="relu", name="conv2")(x)
    x = layers.Conv2D(128, 5, strides=1, padding="valid", activation="relu", name="conv3")(x)
    x = layers.Flatten(name="flatten")(x)
    logits = layers.Dense(10, name="logits")(x)
    model = keras.Model(inputs, logits, name=name)
    if weights is not None:
        filename = C4_WEIGHTS[weights][0]
        load_weights_npz(model, _asset(filename))
        logger.info("loaded C4 weights %r from tfsmooth/assets/%s", weights, filename)
    return model


def mnist_c4_model(weights: str | None = "mnist", *, name: str | None = None) -> Model:
    """C4 wrapped for the attacks: a :class:`~tfsmooth.models.Model`, bounds ``(0, 1)``, 10 classes.

    Args:
        weights: as in :func:`mnist_c4`.
        name: as in :func:`mnist_c4`.

    Example:
        >>> net = mnist_c4_model(weights=None)
        >>> net.bounds, net.num_classes
        ((0.0, 1.0), 10)
    """
    keras_model = mnist_c4(weights, name=name)
    return Model(keras_model, bounds=(0.0, 1.0), num_classes=10, name=keras_model.name)


def mnist_c4_recipe(weights: str = "mnist") -> dict[str, Any]:
    """The training recipe shipped beside the weights ``weights`` (a dict read from JSON).

    It holds the hyperparameters, data source, seed, accuracy and library versions recorded by
    :func:`tfsmooth.models.training.train_c4` (see
    :class:`~tfsmooth.models.training.TrainingRecord`).

    Example:
        >>> mnist_c4_recipe("mnist-adv")["adversarial"]
        True
    """
    if weights is None:
        raise ValueError(f"`weights` must be one of {tuple(C4_WEIGHTS)}, got None")
    _check_weights_name(weights)
    return json.loads(_asset(C4_WEIGHTS[weights][1]).read_text(encoding="utf-8"))
