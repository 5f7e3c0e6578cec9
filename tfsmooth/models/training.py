r"""Training of the MNIST network C4, plain or adversarial ("step l.l.").

The paper's Table 2 attacks a C4 "adversarially trained against FGSM" with the "step l.l." method
of Kurakin et al. [#kurakin]_: at every step, part of the batch is replaced by single-step
adversarial examples pushed *towards the least-likely class* of the current model,

.. math::

    x_{adv} = \mathrm{clip}_{[0,1]}\big(x - \epsilon\,\mathrm{sign}(\nabla_x
    \mathrm{CE}(f(x), y_{LL}))\big), \qquad y_{LL} = \arg\min_i f(x)_i,

and the network is trained on the true labels of the mixed batch with the weighted loss

.. math::

    L = \frac{\sum_{i \in \text{clean}} \mathrm{CE}(f(x_i), y_i)
        + \lambda \sum_{i \in \text{adv}} \mathrm{CE}(f(x^{adv}_i), y_i)}{(m - k) + \lambda k},

with ``k = adversarial_fraction · m`` adversarial examples in a batch of ``m`` and
``λ = adversarial_weight``. Kurakin et al. use ``k = m / 2`` and ``λ = 0.3`` (the defaults here);
they draw ε at random per batch on ImageNet, the paper does not state the ε it used on MNIST, so
the default is a fixed ``ε = 0.3``, the budget of the FGSM attack it is meant to resist (§5.2).
Using the least-likely class rather than the true label avoids "label leaking".

The shipped adversarially trained C4 (recipe ``"mnist-adv"`` of :data:`C4_RECIPES`) is trained
on the 4,000 training digits shipped with the package, not on 60,000. To come closer to the
paper's robustness on that little data, its recipe weighs clean and adversarial examples
equally (``λ = 1``, as Goodfellow et al.'s adversarial training does), adds random shifts of up
to 2 pixels and trains for 150 epochs. FGSM's success rate (ε = 0.3, 1,000 shipped test digits)
against variants of the recipe, each trained once: Kurakin's ``λ = 0.3``, 60 epochs: 0.38;
``λ = 1``, 60 epochs: 0.31; ``λ = 1``, 150 epochs: 0.21; ``λ = 1``, shifts, 60 epochs: 0.22;
``λ = 1``, shifts, 150 epochs: 0.19 (the paper: 0.15).

.. [#kurakin] A. Kurakin, I. Goodfellow, S. Bengio, "Adversarial machine learning at scale",
   ICLR 2017 (arXiv 1611.01236).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pathlib
import platform
import time
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.models.zoo import C4_WEIGHTS, load_weights_npz, mnist_c4, save_weights_npz

logger = logging.getLogger(__name__)

__all__ = [
    "C4_RECIPES",
    "TrainingRecord",
    "evaluate_accuracy",
    "least_likely_step",
    "random_shift",
    "train_c4",
    "train_c4_recipe",
]


@dataclasses.dataclass
class TrainingRecord:
    """The recipe and outcome of one :func:`train_c4` run (JSON-serializable).

    Attributes:
        architecture: ``"C4"``.
        adversarial: whether "step l.l." adversarial training was used.
        epochs, batch_size, learning_rate, optimizer, seed: the recipe.
        epsilon, adversarial_fraction, adversarial_weight: adversarial-training settings
            (``None`` when ``adversarial`` is false).
        shift: largest random translation (pixels) of the training images, 0 for none.
        data_source: where the training data came from (e.g. ``"package-sample"``), as given.
        num_train, num_validation: number of training / validation images.
        train_accuracy: accuracy on the (clean) training set after training.
        validation_accuracy: accuracy on the validation set, or ``None``.
        history: one dict per epoch (``loss``, ``accuracy`` on the clean part of the batches,
            ``val_accuracy`` when validating, ``seconds``).
        train_seconds: wall time of the training loop.
        deterministic: whether TF op determinism was enabled.
        versions: TensorFlow, Keras, numpy and Python versions; ``platform``.
    """

    architecture: str = "C4"
    adversarial: bool = False
    epochs: int = 0
    batch_size: int = 0
    learning_rate: float = 0.0
    optimizer: str = "adam"
    seed: int = 0
    epsilon: float | None = None
    adversarial_fraction: float | None = None
    adversarial_weight: float | None = None
    shift: int = 0
    data_source: str | None = None
    num_train: int = 0
    num_validation: int = 0
    train_accuracy: float | None = None
    validation_accuracy: float | None = None
    history: list[dict[str, float]] = dataclasses.field(default_factory=list)
    train_seconds: float = 0.0
    deterministic: bool = False
    versions: dict[str, str] = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The record as a plain dict."""
        return dataclasses.asdict(self)

    def to_json(self, path: str | os.PathLike[str] | None = None) -> str:
        """The record as JSON text; also written to ``path`` if given.

        Example:
            >>> json.loads(TrainingRecord(epochs=2).to_json())["epochs"]
            2
        """
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            with open(path, "w", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainingRecord:
        """Rebuilds a record from :meth:`to_dict` output (unknown keys are ignored).

        Example:
            >>> TrainingRecord.from_dict({"epochs": 3, "other": 1}).epochs
            3
        """
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: val for k, val in data.items() if k in names})


def _versions() -> dict[str, str]:
    return {
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _check_data(images: Any, labels: Any, name: str) -> tuple[tf.Tensor, tf.Tensor]:
    x = v.check_image_batch(images, f"{name} images", bounds=(0.0, 1.0), dtype=tf.float32)
    if tuple(x.shape[1:]) != (28, 28, 1):
        raise ValueError(f"`{name} images` must have shape [N, 28, 28, 1], got {tuple(x.shape)}")
    y_np = np.asarray(labels)
    if not np.issubdtype(y_np.dtype, np.integer):
        raise TypeError(f"`{name} labels` must be integers, got dtype {y_np.dtype}")
    if y_np.shape != (int(x.shape[0]),):
        raise ValueError(
            f"`{name} labels` must have shape [{int(x.shape[0])}] to match the images, "
            f"got {y_np.shape}"
        )
    if y_np.size and (y_np.min() < 0 or y_np.max() > 9):
        raise ValueError(
            f"`{name} labels` must lie in 0..9, got values in [{y_np.min()}, {y_np.max()}]"
        )
    if y_np.size == 0:
        raise ValueError(f"`{name}` must hold at least one image, got 0")
    return x, tf.constant(y_np, tf.int64)


def least_likely_step(
    model: Any,
    images: Any,
    epsilon: Any,
    *,
    bounds: tuple[float, float] = (0.0, 1.0),
    name: str | None = None,
) -> tf.Tensor:
    r"""Kurakin et al.'s "step l.l." adversarial images (one signed step to the least-likely class).

    .. math::

        x_{adv} = \mathrm{clip}(x - \epsilon\,\mathrm{sign}(\nabla_x
        \mathrm{CE}(f(x), y_{LL}))), \qquad y_{LL} = \arg\min_i f(x)_i

    Args:
        model: callable mapping images to logits ``[B, k]`` (called with ``training=False``).
        images: float ``[B, H, W, C]`` in ``bounds``.
        epsilon: L∞ step size (scalar).
        bounds: pixel range to clip to.
        name: name scope.

    Returns:
        Adversarial images, same shape and dtype as ``images``.

    Example:
        >>> net = lambda x, training=False: tf.reshape(x, [-1, 2])
        >>> least_likely_step(net, tf.constant([[[[0.2], [0.6]]]]), 0.1).numpy().ravel()
        array([0.3, 0.5], dtype=float32)
    """
    with tf.name_scope(name or "least_likely_step"):
        x = v.as_float_tensor(images, "images")
        eps = tf.cast(epsilon, x.dtype)
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = model(x, training=False)
            y_ll = tf.stop_gradient(tf.argmin(logits, axis=1))
            loss = tf.reduce_sum(
                tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y_ll, logits=logits)
            )
        grad = tape.gradient(loss, x)
        return tf.clip_by_value(x - eps * tf.sign(grad), bounds[0], bounds[1])


def random_shift(images: np.ndarray, shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translates each image ``[N, H, W, C]`` by random whole pixels in ``[-shift, shift]``.

    Pixels that come in from outside are 0 (the MNIST background).

    Example:
        >>> x = np.zeros([1, 3, 3, 1], "float32"); x[0, 1, 1, 0] = 1
        >>> out = random_shift(x, 1, np.random.default_rng(0))
        >>> float(out.sum()), out.shape
        (1.0, (1, 3, 3, 1))
    """
    if shift == 0:
        return images
    n, h, w, _ = images.shape
    padded = np.pad(images, [(0, 0), (shift, shift), (shift, shift), (0, 0)])
    dy = np.asarray(rng.integers(-shift, shift + 1, size=n))
    dx = np.asarray(rng.integers(-shift, shift + 1, size=n))
    rows = np.arange(h)[None, :] + shift - dy[:, None]
    cols = np.arange(w)[None, :] + shift - dx[:, None]
    return padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]


def evaluate_accuracy(model: Any, images: Any, labels: Any, *, batch_size: int = 500) -> float:
    """Top-1 accuracy of a logits model on ``images`` ``[N, H, W, C]`` and int ``labels`` ``[N]``.

    Example:
        >>> net = mnist_c4(weights=None)
        >>> 0.0 <= evaluate_accuracy(net, np.zeros([4, 28, 28, 1], "float32"), [0, 1, 2, 3]) <= 1
        True
    """
    batch_size = v.check_int_at_least(batch_size, "batch_size", 1)
    x = v.as_float_tensor(images, "images")
    y = np.asarray(labels).astype(np.int64)
    if int(x.shape[0]) != y.shape[0]:
        raise ValueError(f"got {int(x.shape[0])} images but {y.shape[0]} labels")
    if y.shape[0] == 0:
        raise ValueError("`images` must hold at least one image, got 0")
    correct = 0
    for i in range(0, y.shape[0], batch_size):
        logits = model(x[i : i + batch_size], training=False)
        correct += int(np.sum(np.argmax(np.asarray(logits), axis=1) == y[i : i + batch_size]))
    return correct / y.shape[0]


def train_c4(
    images: Any,
    labels: Any,
    *,
    adversarial: bool = False,
    epochs: int = 30,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    epsilon: float = 0.3,
    adversarial_fraction: float = 0.5,
    adversarial_weight: float = 0.3,
    shift: int = 0,
    seed: int = 0,
    validation: tuple[Any, Any] | None = None,
    data_source: str | None = None,
    deterministic: bool = False,
    progress: bool = False,
) -> tuple[keras.Model, TrainingRecord]:
    """Trains C4 from scratch with Adam, plainly or with "step l.l." adversarial examples.

    A custom loop under :func:`tf.function` (one trace): each epoch shuffles the data with
    ``numpy.random.default_rng(seed + epoch)``; the weights are initialized after
    :func:`keras.utils.set_random_seed` ``(seed)``, so on one machine the same call gives the
    same weights (on CPU; pass ``deterministic=True`` to also enable TF op determinism, which
    matters on GPU, and is a process-wide setting).

    Args:
        images: float ``[N, 28, 28, 1]`` in ``[0, 1]``.
        labels: int ``[N]`` in ``0..9``.
        adversarial: use "step l.l." adversarial training (module docstring).
        epochs: passes over the data.
        batch_size: images per step (the last, smaller batch of an epoch is kept).
        learning_rate: Adam learning rate.
        epsilon: L∞ size of the adversarial step, in pixel units (``[0, 1]`` range).
        adversarial_fraction: share ``k / m`` of each batch replaced by adversarial examples.
        adversarial_weight: ``λ``, relative weight of the adversarial examples in the loss.
        shift: data augmentation: every training image is translated by a random whole number
            of pixels in ``[-shift, shift]`` along each axis (zeros fill in), drawn anew at
            every epoch; 0 disables it. It makes up in part for a small training set (the
            4,000 shipped digits).
        seed: seeds initialization, shuffling and the shifts.
        validation: optional ``(images, labels)`` evaluated after every epoch.
        data_source: recorded as is in the :class:`TrainingRecord` (e.g. ``MnistData.source``).
        deterministic: call :func:`tf.config.experimental.enable_op_determinism` first.
        progress: show a :class:`keras.utils.Progbar` per epoch (writes to stdout).

    Returns:
        ``(model, record)``: the trained :func:`~tfsmooth.models.zoo.mnist_c4` Keras model and
        its :class:`TrainingRecord`.

    Example:
        >>> x = np.random.default_rng(0).uniform(size=[8, 28, 28, 1]).astype("float32")
        >>> net, rec = train_c4(x, np.arange(8) % 10, epochs=1, batch_size=4, adversarial=True)
        >>> rec.epochs, rec.adversarial, len(rec.history)
        (1, True, 1)
    """
    x, y = _check_data(images, labels, "training")
    epochs = v.check_int_at_least(epochs, "epochs", 1)
    batch_size = v.check_int_at_least(batch_size, "batch_size", 1)
    learning_rate = v.check_positive(learning_rate, "learning_rate")
    seed = v.check_int_at_least(seed, "seed", 0)
    shift = v.check_int_at_least(shift, "shift", 0)
    if shift >= 14:
        raise ValueError(f"`shift` must be below 14 pixels (half of 28), got {shift}")
    if not isinstance(adversarial, bool):
        raise TypeError(f"`adversarial` must be a bool, got {adversarial!r}")
    if adversarial:
        epsilon = v.check_positive(epsilon, "epsilon")
        adversarial_weight = v.check_positive(adversarial_weight, "adversarial_weight")
        adversarial_fraction = v.check_positive(adversarial_fraction, "adversarial_fraction")
        if adversarial_fraction > 1.0:
            raise ValueError(
                f"`adversarial_fraction` must lie in (0, 1], got {adversarial_fraction!r}"
            )
    val: tuple[tf.Tensor, tf.Tensor] | None = None
    if validation is not None:
        if not isinstance(validation, (tuple, list)) or len(validation) != 2:
            raise TypeError(
                f"`validation` must be None or (images, labels), got {type(validation)}"
            )
        val = _check_data(validation[0], validation[1], "validation")

    if deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(seed)
    model = mnist_c4(weights=None, name="c4_mnist_adv" if adversarial else "c4_mnist")
    optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
    optimizer.build(model.trainable_variables)
    eps = tf.constant(epsilon, tf.float32)
    lam = tf.constant(adversarial_weight, tf.float32)
    frac = tf.constant(adversarial_fraction, tf.float32)

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, 28, 28, 1], tf.float32),
            tf.TensorSpec([None], tf.int64),
        ]
    )
    def train_step(xb: tf.Tensor, yb: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        m = tf.shape(xb)[0]
        if adversarial:
            k = tf.cast(tf.round(frac * tf.cast(m, tf.float32)), tf.int32)
            x_adv = tf.stop_gradient(least_likely_step(model, xb[:k], eps))
            inputs = tf.concat([x_adv, xb[k:]], axis=0)
            weights = tf.concat([tf.fill([k], lam), tf.ones([m - k])], axis=0)
            clean = tf.range(m) >= k
        else:
            inputs = xb
            weights = tf.ones([m])
            clean = tf.ones([m], tf.bool)
        with tf.GradientTape() as tape:
            logits = model(inputs, training=True)
            ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=yb, logits=logits)
            loss = tf.reduce_sum(weights * ce) / tf.reduce_sum(weights)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        hits = tf.cast(tf.equal(tf.argmax(logits, axis=1), yb), tf.float32)
        clean_f = tf.cast(clean, tf.float32)
        return loss, tf.reduce_sum(hits * clean_f) / tf.maximum(tf.reduce_sum(clean_f), 1.0)

    n = int(x.shape[0])
    steps = -(-n // batch_size)
    record = TrainingRecord(
        adversarial=adversarial,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        seed=seed,
        epsilon=float(epsilon) if adversarial else None,
        adversarial_fraction=float(adversarial_fraction) if adversarial else None,
        adversarial_weight=float(adversarial_weight) if adversarial else None,
        shift=shift,
        data_source=data_source,
        num_train=n,
        num_validation=0 if val is None else int(val[0].shape[0]),
        deterministic=deterministic,
        versions=_versions(),
    )
    logger.info(
        "training C4 (%s) on %d images: %d epochs x %d steps",
        "step l.l. adversarial" if adversarial else "plain",
        n,
        epochs,
        steps,
    )
    x_np = x.numpy()
    start = time.perf_counter()
    for epoch in range(epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng(seed + epoch)
        order = tf.constant(rng.permutation(n), tf.int64)
        epoch_x = x if shift == 0 else tf.constant(random_shift(x_np, shift, rng))
        bar = (
            keras.utils.Progbar(steps, stateful_metrics=["loss", "accuracy"]) if progress else None
        )
        losses, accs, sizes = [], [], []
        for s in range(steps):
            idx = order[s * batch_size : (s + 1) * batch_size]
            loss, acc = train_step(tf.gather(epoch_x, idx), tf.gather(y, idx))
            losses.append(float(loss))
            accs.append(float(acc))
            sizes.append(int(idx.shape[0]))
            if bar is not None:
                bar.update(s + 1, [("loss", losses[-1]), ("accuracy", accs[-1])])
        entry = {
            "epoch": epoch + 1,
            "loss": float(np.average(losses, weights=sizes)),
            "accuracy": float(np.average(accs, weights=sizes)),
        }
        if val is not None:
            entry["val_accuracy"] = evaluate_accuracy(model, val[0], val[1].numpy())
        entry["seconds"] = time.perf_counter() - t0
        record.history.append(entry)
        logger.info("epoch %d/%d: %s", epoch + 1, epochs, entry)
    record.train_seconds = time.perf_counter() - start
    record.train_accuracy = evaluate_accuracy(model, x, y.numpy())
    if val is not None:
        record.validation_accuracy = record.history[-1]["val_accuracy"]
    logger.info(
        "trained C4 in %.1f s: train accuracy %.4f, validation accuracy %s",
        record.train_seconds,
        record.train_accuracy,
        record.validation_accuracy,
    )
    return model, record


#: The recipes of the two shipped C4 networks (``tfsmooth/assets``), by ``weights=`` name.
C4_RECIPES: dict[str, dict[str, Any]] = {
    "mnist": {
        "adversarial": False,
        "epochs": 30,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "seed": 0,
    },
    "mnist-adv": {
        "adversarial": True,
        "epochs": 150,
        "batch_size": 128,
        "learning_rate": 1e-3,
        "epsilon": 0.3,
        "adversarial_fraction": 0.5,
        "adversarial_weight": 1.0,
        "shift": 2,
        "seed": 0,
    },
}


def train_c4_recipe(
    name: str,
    output_dir: str | os.PathLike[str],
    *,
    source: str = "auto",
    epochs: int | None = None,
    progress: bool = False,
) -> TrainingRecord:
    """Trains one of the shipped C4 networks by its recipe and writes weights + JSON recipe.

    Data: ``load_mnist("train", source=source)``; the test split is only measured. Writes the
    float16 weights (:func:`~tfsmooth.models.zoo.save_weights_npz`) under the asset file name
    of :data:`~tfsmooth.models.zoo.C4_WEIGHTS` and the :class:`TrainingRecord` beside it; the
    accuracies recorded are those of the float16 weights as written.

    Args:
        name: ``"mnist"`` or ``"mnist-adv"`` (a key of :data:`C4_RECIPES`).
        output_dir: directory to write to (created if needed).
        source: MNIST source (see :func:`tfsmooth.data.load_mnist`).
        epochs: override the recipe's number of epochs (e.g. for a quick check).
        progress: show a Keras progress bar per epoch.

    Returns:
        The :class:`TrainingRecord`, as written.
    """
    from tfsmooth.data.mnist import load_mnist

    v.check_choice(name, "name", C4_RECIPES)
    recipe = dict(C4_RECIPES[name])
    if epochs is not None:
        recipe["epochs"] = v.check_int_at_least(epochs, "epochs", 1)
    out = pathlib.Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    train = load_mnist("train", source=source)
    test = load_mnist("test", source=source)
    model, record = train_c4(
        train.images,
        train.labels,
        validation=(test.images, test.labels),
        data_source=f"{train.source}:train",
        progress=progress,
        **recipe,
    )
    weights_file, recipe_file = C4_WEIGHTS[name]
    save_weights_npz(model, out / weights_file, dtype="float16")
    stored = load_weights_npz(mnist_c4(weights=None), out / weights_file)
    record.validation_accuracy = evaluate_accuracy(stored, test.images, test.labels)
    record.train_accuracy = evaluate_accuracy(stored, train.images, train.labels)
    record.to_json(out / recipe_file)
    logger.info("trained C4 %r -> %s", name, out / weights_file)
    return record
