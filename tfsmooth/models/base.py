"""A thin wrapper that makes any Keras model or callable look the same to the attacks."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from tfsmooth import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["OUTPUTS", "PREPROCESSING", "Model"]

#: What a wrapped network may return.
OUTPUTS = ("logits", "probabilities")

_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
_TORCH_MEAN = (0.485, 0.456, 0.406)
_TORCH_STD = (0.229, 0.224, 0.225)


def _tf_mode(x: tf.Tensor) -> tf.Tensor:
    return x * 2.0 - 1.0


def _torch_mode(x: tf.Tensor) -> tf.Tensor:
    mean = tf.constant(_TORCH_MEAN, x.dtype)
    std = tf.constant(_TORCH_STD, x.dtype)
    return (x - mean) / std


def _caffe_mode(x: tf.Tensor) -> tf.Tensor:
    return x[..., ::-1] * 255.0 - tf.constant(_CAFFE_MEAN_BGR, x.dtype)


#: Named preprocessings of images in ``[0, 1]``, as in ``keras.applications`` ``mode=``.
PREPROCESSING: dict[str, Callable[[tf.Tensor], tf.Tensor]] = {
    "tf": _tf_mode,  # [0, 1] -> [-1, 1] (Inception, ResNetV2, slim checkpoints)
    "torch": _torch_mode,  # ImageNet mean / std
    "caffe": _caffe_mode,  # RGB -> BGR, [0, 255], ImageNet mean subtracted
}


class Model:
    """A classifier seen by the attacks: images in ``bounds`` in, logits out.

    The attacks of tfsmooth always work in pixel space ``bounds`` (``[0, 1]`` by default). This
    wrapper adds what lies between that space and the network: an optional resize, a
    preprocessing, and an alignment of the logits with the label convention of the data.

    Args:
        model: a ``keras.Model`` or any callable mapping ``[B, H, W, C]`` to logits ``[B, k]``
            (no softmax).
        bounds: ``(low, high)`` pixel range of the images the attacks see.
        preprocessing: ``None``, a callable applied to the (resized) images, or a name from
            :data:`PREPROCESSING` (``"tf"`` maps ``[0, 1]`` to ``[-1, 1]``).
        input_size: optional ``(height, width)``: images are bilinearly resized to it first.
        label_offset: aligns logits with labels. ``0``: label ``t`` is logit ``t``. ``1``: the
            labels have a background class 0 that the model lacks (a 1000-class model with
            1001-class labels): a constant, very low background logit is prepended. ``-1``: the
            model has a background logit the labels lack: it is dropped.
        num_classes: expected number of output classes (after the offset); checked at call.
        output: what the network returns: ``"logits"`` (default) or ``"probabilities"``
            (softmax outputs, converted to log-probabilities, which are logits of the same
            softmax; attacks on raw probabilities see flat, saturated margins).
        name: a name for ``repr`` and logs.

    Example:
        >>> net = Model(lambda x: tf.reduce_mean(x, axis=[1, 2]), num_classes=3)
        >>> net(tf.ones([2, 4, 4, 3])).shape
        TensorShape([2, 3])
    """

    def __init__(
        self,
        model: Callable[..., Any],
        *,
        bounds: tuple[float, float] = (0.0, 1.0),
        preprocessing: str | Callable[[tf.Tensor], tf.Tensor] | None = None,
        input_size: tuple[int, int] | None = None,
        label_offset: int = 0,
        num_classes: int | None = None,
        output: str = "logits",
        name: str | None = None,
    ) -> None:
        if not callable(model):
            raise TypeError(
                f"`model` must be a Keras model or a callable, got {type(model).__name__}"
            )
        if len(tuple(bounds)) != 2 or not float(bounds[0]) < float(bounds[1]):
            raise ValueError(f"`bounds` must be (low, high) with low < high, got {bounds!r}")
        if isinstance(preprocessing, str):
            v.check_choice(preprocessing, "preprocessing", PREPROCESSING)
        elif preprocessing is not None and not callable(preprocessing):
            raise TypeError(
                f"`preprocessing` must be None, a callable or one of {tuple(PREPROCESSING)}, "
                f"got {type(preprocessing).__name__}"
            )
        if input_size is not None:
            input_size = v.check_size(input_size, "input_size")
        if isinstance(label_offset, bool) or not isinstance(label_offset, int):
            raise TypeError(f"`label_offset` must be an int, got {label_offset!r}")
        if num_classes is not None:
            num_classes = v.check_int_at_least(num_classes, "num_classes", 2)
        self.output = v.check_choice(output, "output", OUTPUTS)
        self.model = model
        self.bounds = (float(bounds[0]), float(bounds[1]))
        self.preprocessing = preprocessing
        self.input_size = input_size
        self.label_offset = label_offset
        self.num_classes = num_classes
        self.name = name or getattr(model, "name", None) or type(model).__name__

    def preprocess(self, images: tf.Tensor) -> tf.Tensor:
        """Resize and preprocess images in :attr:`bounds` into what the network expects."""
        if self.input_size is not None and tuple(images.shape[1:3]) != self.input_size:
            images = tf.image.resize(images, self.input_size, method="bilinear")
        if isinstance(self.preprocessing, str):
            return PREPROCESSING[self.preprocessing](images)
        if self.preprocessing is not None:
            return self.preprocessing(images)
        return images

    def __call__(self, images: Any, training: bool = False) -> tf.Tensor:
        """Logits ``[batch, num_classes]`` for images ``[batch, H, W, C]`` in :attr:`bounds`."""
        images = v.as_float_tensor(images, "images")
        if images.shape.rank is not None and images.shape.rank != 4:
            raise ValueError(
                f"`images` must have rank 4 [batch, height, width, channels], got shape "
                f"{tuple(images.shape)}"
            )
        inputs = self.preprocess(images)
        try:
            logits = self.model(inputs, training=training)
        except TypeError:
            logits = self.model(inputs)
        if isinstance(logits, dict):
            if len(logits) != 1:
                raise ValueError(
                    f"the model returned a dict with keys {sorted(logits)}; expected logits"
                )
            logits = next(iter(logits.values()))
        logits = tf.convert_to_tensor(logits)
        if logits.shape.rank != 2:
            raise ValueError(
                f"the model must return logits of shape [batch, classes], got shape {tuple(logits.shape)}"
            )
        if not logits.dtype.is_floating:
            raise TypeError(
                f"model {self.name!r} returned {logits.dtype.name} outputs; attacks need float "
                f"logits (scores before softmax) to differentiate"
            )
        if logits.dtype != images.dtype:
            logits = tf.cast(logits, images.dtype)
        if self.output == "probabilities":
            tiny = tf.constant(1e-30 if logits.dtype == tf.float32 else 1e-7, logits.dtype)
            logits = tf.math.log(tf.maximum(logits, tiny))
        if self.label_offset > 0:
            low = tf.reduce_min(tf.stop_gradient(logits), axis=1, keepdims=True) - 1e4
            logits = tf.concat(
                [tf.tile(low, [1, self.label_offset])[:, : self.label_offset], logits], 1
            )
        elif self.label_offset < 0:
            logits = logits[:, -self.label_offset :]
        if (
            self.num_classes is not None
            and logits.shape[1] is not None
            and logits.shape[1] != self.num_classes
        ):
            raise ValueError(
                f"model {self.name!r} returned {logits.shape[1]} logits, expected num_classes="
                f"{self.num_classes}"
            )
        return logits

    def predict(self, images: Any, batch_size: int = 256) -> tf.Tensor:
        """Predicted labels ``[batch]`` (int64), computed in batches."""
        images = v.as_float_tensor(images, "images")
        out = [
            tf.argmax(self(images[i : i + batch_size]), axis=1)
            for i in range(0, int(images.shape[0]), batch_size)
        ]
        return tf.concat(out, axis=0) if out else tf.zeros([0], tf.int64)

    def __repr__(self) -> str:
        pre = (
            self.preprocessing
            if isinstance(self.preprocessing, (str, type(None)))
            else "<callable>"
        )
        return (
            f"Model({self.name!r}, bounds={self.bounds}, preprocessing={pre!r}, "
            f"input_size={self.input_size}, label_offset={self.label_offset}"
            + ("" if self.output == "logits" else f", output={self.output!r}")
            + ")"
        )
