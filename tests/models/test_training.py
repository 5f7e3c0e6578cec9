"""Tests of tfsmooth.models.training: train_c4, step l.l., the training record."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.data.mnist import load_mnist
from tfsmooth.models.training import (
    TrainingRecord,
    evaluate_accuracy,
    least_likely_step,
    random_shift,
    train_c4,
)


@pytest.fixture(scope="module")
def small():
    data = load_mnist("train", source="package", limit=256)
    return data.images, data.labels


def test_reproducible_with_seed(small):
    x, y = small[0][:128], small[1][:128]
    net_a, rec_a = train_c4(x, y, epochs=1, batch_size=64, seed=3)
    net_b, rec_b = train_c4(x, y, epochs=1, batch_size=64, seed=3)
    for wa, wb in zip(net_a.get_weights(), net_b.get_weights()):
        np.testing.assert_array_equal(wa, wb)
    assert rec_a.history[0]["loss"] == rec_b.history[0]["loss"]
    net_c, _ = train_c4(x, y, epochs=1, batch_size=64, seed=4)
    assert not np.array_equal(net_a.get_weights()[0], net_c.get_weights()[0])


def test_learns_and_records(small):
    x, y = small
    val = load_mnist("test", source="package", limit=200)
    net, record = train_c4(
        x,
        y,
        epochs=3,
        batch_size=32,
        validation=(val.images, val.labels),
        data_source="package-sample:train",
    )
    assert record.history[-1]["loss"] < record.history[0]["loss"]
    assert record.train_accuracy == pytest.approx(evaluate_accuracy(net, x, y))
    assert record.train_accuracy is not None and record.train_accuracy > 0.8
    assert record.validation_accuracy is not None
    assert record.validation_accuracy == record.history[-1]["val_accuracy"] > 0.5
    assert record.adversarial is False and record.epsilon is None
    assert record.num_train == 256 and record.num_validation == 200
    assert record.data_source == "package-sample:train"
    assert record.versions["tensorflow"] == tf.__version__
    assert [h["epoch"] for h in record.history] == [1, 2, 3]


def test_adversarial_mode(small):
    x, y = small
    net, record = train_c4(x, y, adversarial=True, epochs=1, batch_size=64, epsilon=0.2)
    assert record.adversarial is True
    assert record.epsilon == 0.2
    assert record.adversarial_fraction == 0.5 and record.adversarial_weight == 0.3
    assert np.isfinite(record.history[0]["loss"])
    # A different path from plain training with the same seed.
    plain, _ = train_c4(x, y, epochs=1, batch_size=64)
    assert not np.array_equal(net.get_weights()[0], plain.get_weights()[0])


def _linear_model(seed=0):
    w = tf.constant(np.random.default_rng(seed).normal(size=[16, 5]), tf.float32)

    def model(images, training=False):
        return tf.reshape(images, [-1, 16]) @ w

    return model, w


def test_least_likely_step():
    model, w = _linear_model()
    x = tf.constant(np.random.default_rng(1).uniform(0.2, 0.8, size=[6, 4, 4, 1]), tf.float32)
    eps = 0.1
    x_adv = least_likely_step(model, x, eps)
    assert x_adv.shape == x.shape and x_adv.dtype == x.dtype
    np.testing.assert_allclose(np.abs(x_adv - x), eps, atol=1e-6)  # no clipping here
    # Oracle: for a linear model the gradient of CE(., y_ll) w.r.t. x is W (p - onehot(y_ll)).
    logits = model(x).numpy()
    y_ll = logits.argmin(axis=1)
    p = tf.nn.softmax(logits).numpy()
    p[np.arange(6), y_ll] -= 1.0
    grad = (p @ w.numpy().T).reshape(x.shape)
    np.testing.assert_allclose(x_adv, x - eps * np.sign(grad), atol=1e-6)
    # The step raises the probability of the least-likely class.
    p_before = tf.nn.softmax(logits).numpy()[np.arange(6), y_ll]
    p_after = tf.nn.softmax(model(x_adv)).numpy()[np.arange(6), y_ll]
    assert np.all(p_after > p_before)


def test_least_likely_step_clips():
    model, _ = _linear_model()
    x = tf.constant(np.random.default_rng(2).choice([0.0, 1.0], size=[3, 4, 4, 1]), tf.float32)
    x_adv = least_likely_step(model, x, 0.5).numpy()
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_record_json_roundtrip(tmp_path):
    record = TrainingRecord(epochs=2, adversarial=True, epsilon=0.3, history=[{"loss": 1.0}])
    path = tmp_path / "r.json"
    text = record.to_json(path)
    assert json.loads(path.read_text()) == json.loads(text) == record.to_dict()
    assert TrainingRecord.from_dict(json.loads(text)) == record


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"epochs": 0}, ValueError),
        ({"batch_size": 1.5}, TypeError),
        ({"learning_rate": -1.0}, ValueError),
        ({"adversarial": True, "epsilon": 0.0}, ValueError),
        ({"adversarial": True, "adversarial_fraction": 1.5}, ValueError),
        ({"adversarial": "yes"}, TypeError),
        ({"validation": np.zeros([2, 28, 28, 1], np.float32)}, TypeError),
        ({"shift": -1}, ValueError),
        ({"shift": 14}, ValueError),
        ({"shift": 1.0}, TypeError),
    ],
)
def test_bad_arguments(small, kwargs, error):
    x, y = small
    with pytest.raises(error):
        train_c4(x[:8], y[:8], **kwargs)


@pytest.mark.parametrize(
    ("images", "labels", "error", "match"),
    [
        (np.zeros([4, 28, 28], np.float32), [0, 1, 2, 3], ValueError, "rank 4"),
        (np.zeros([4, 32, 32, 1], np.float32), [0, 1, 2, 3], ValueError, "28, 28, 1"),
        (np.full([4, 28, 28, 1], 2.0, np.float32), [0, 1, 2, 3], ValueError, r"\[0.0, 1.0\]"),
        (np.zeros([4, 28, 28, 1], np.uint8), [0, 1, 2, 3], TypeError, "floating"),
        (np.zeros([4, 28, 28, 1], np.float32), [0, 1, 2], ValueError, "shape"),
        (np.zeros([4, 28, 28, 1], np.float32), [0, 1, 2, 10], ValueError, "0..9"),
        (np.zeros([4, 28, 28, 1], np.float32), [0.0, 1.0, 2.0, 3.0], TypeError, "integers"),
    ],
)
def test_bad_data(images, labels, error, match):
    with pytest.raises(error, match=match):
        train_c4(images, np.asarray(labels), epochs=1)


def test_random_shift_translates_each_image_within_the_range():
    rng = np.random.default_rng(0)
    images = np.zeros([200, 12, 12, 1], np.float32)
    images[:, 5, 6, 0] = 1.0  # one bright pixel, far from the borders
    out = random_shift(images, 2, rng)
    assert out.shape == images.shape and out.dtype == images.dtype
    where = np.argwhere(out[..., 0] > 0)
    assert where.shape == (200, 3)  # the pixel survives once in every image
    dy, dx = where[:, 1] - 5, where[:, 2] - 6
    assert set(dy) == set(dx) == {-2, -1, 0, 1, 2}  # every shift in range occurs
    # pixels shifted in from outside are 0; content shifted out is lost
    edge = np.ones([1, 3, 3, 1], np.float32)
    moved = random_shift(edge, 1, np.random.default_rng(3))
    assert moved.sum() in (9.0, 6.0, 4.0)
    np.testing.assert_array_equal(random_shift(images, 0, rng), images)


def test_shift_augmentation_is_recorded_and_seeded(small):
    x, y = small[0][:128], small[1][:128]
    net_a, rec = train_c4(x, y, epochs=1, batch_size=64, shift=2, seed=1)
    net_b, _ = train_c4(x, y, epochs=1, batch_size=64, shift=2, seed=1)
    plain, _ = train_c4(x, y, epochs=1, batch_size=64, seed=1)
    assert rec.shift == 2
    np.testing.assert_array_equal(net_a.get_weights()[0], net_b.get_weights()[0])
    assert not np.array_equal(net_a.get_weights()[0], plain.get_weights()[0])
