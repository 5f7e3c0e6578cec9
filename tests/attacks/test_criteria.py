"""Criteria, distances and losses of tfsmooth.attacks."""

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.attacks import (
    Misclassification,
    TargetedMisclassification,
    as_criterion,
    attack_objective,
    l2,
    linf,
    margin_loss,
)


def _margin_by_hand(logits, labels, m, targeted):
    out = []
    for row, t in zip(logits, labels):
        others = max(v for i, v in enumerate(row) if i != t)
        gap = (others - row[t]) if targeted else (row[t] - others)
        out.append(max(gap + m, 0.0))
    return np.array(out)


@pytest.mark.parametrize("targeted", [False, True])
@pytest.mark.parametrize("confidence", [0.0, 1.0, 2.5])
def test_margin_loss_matches_eq3_by_hand(targeted, confidence):
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(20, 5)).astype(np.float32) * 2
    labels = rng.integers(0, 5, size=20)
    got = margin_loss(logits, labels, confidence, targeted).numpy()
    want = _margin_by_hand(logits, labels, confidence, targeted)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert got.dtype == np.float32


def test_margin_loss_vanishes_exactly_on_success_with_margin():
    logits = tf.constant([[1.0, 3.0, 0.0], [1.0, 1.5, 0.0]])
    # untargeted, true label 0, m = 1: first beaten by 2 >= 1 (zero), second by 0.5 (positive)
    loss = margin_loss(logits, [0, 0], confidence=1.0).numpy()
    assert loss[0] == 0.0 and loss[1] == pytest.approx(0.5)


def test_margin_loss_float64_and_bad_input():
    logits = tf.constant([[1.0, 2.0]], tf.float64)
    assert margin_loss(logits, [0]).dtype == tf.float64
    with pytest.raises(ValueError, match="batch, classes"):
        margin_loss(tf.zeros([2, 3, 4]), [0, 1])
    with pytest.raises(TypeError, match="floating"):
        margin_loss(tf.zeros([2, 3], tf.int32), [0, 1])


def test_attack_objective_sign():
    logits = tf.constant([[2.0, 0.0, -1.0]])
    xent = float(tf.nn.sparse_softmax_cross_entropy_with_logits([1], logits)[0])
    assert float(attack_objective(logits, tf.constant([1]), False)[0]) == pytest.approx(xent)
    assert float(attack_objective(logits, tf.constant([1]), True)[0]) == pytest.approx(-xent)


def test_misclassification():
    logits = tf.constant([[3.0, 1.0, 0.0], [0.0, 2.0, 1.9], [1.0, 1.2, 0.0]])
    crit = Misclassification([0, 2, 0])
    np.testing.assert_array_equal(crit.is_adversarial(logits).numpy(), [False, True, True])
    # with a margin the other class must win by at least m
    np.testing.assert_array_equal(
        crit.is_adversarial(logits, confidence=0.15).numpy(), [False, False, True]
    )
    assert not crit.targeted
    assert repr(crit) == "Misclassification([0 2 0])"


def test_targeted_misclassification():
    logits = tf.constant([[3.0, 1.0, 0.0], [0.0, 2.0, 1.9]])
    crit = TargetedMisclassification(np.array([0, 1]))
    np.testing.assert_array_equal(crit.is_adversarial(logits).numpy(), [True, True])
    np.testing.assert_array_equal(
        crit.is_adversarial(logits, confidence=0.5).numpy(), [True, False]
    )
    assert crit.targeted
    np.testing.assert_array_equal(crit.target_classes.numpy(), [0, 1])


def test_raw_labels_are_promoted():
    crit = as_criterion(np.array([1, 2], np.int64))
    assert isinstance(crit, Misclassification)
    same = TargetedMisclassification([1, 2])
    assert as_criterion(same) is same


@pytest.mark.parametrize(
    "labels, error",
    [
        ([0.5, 1.0], TypeError),
        (np.zeros(3, np.float32), TypeError),
        ([[0, 1]], ValueError),
        (tf.zeros([2, 2], tf.int32), ValueError),
        ("abc", TypeError),
        (True, TypeError),
    ],
)
def test_bad_labels(labels, error):
    with pytest.raises(error):
        Misclassification(labels)


def test_validate_range_and_count():
    crit = Misclassification([0, 3])
    crit.validate(2, 4)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        crit.validate(2, 3)
    with pytest.raises(ValueError, match="shape"):
        crit.validate(5, 4)
    with pytest.raises(ValueError, match="lie in"):
        Misclassification([-1, 0]).validate(2, 4)


def test_distances_and_projection():
    rng = np.random.default_rng(0)
    ref = rng.uniform(size=(4, 5, 5, 2)).astype(np.float32)
    img = ref + rng.normal(size=ref.shape).astype(np.float32)
    diff = (img - ref).reshape(4, -1)
    np.testing.assert_allclose(l2(ref, img).numpy(), np.linalg.norm(diff, axis=1), rtol=1e-5)
    np.testing.assert_allclose(linf(ref, img).numpy(), np.abs(diff).max(axis=1), rtol=1e-6)
    for dist in (l2, linf):
        eps = 0.7
        proj = dist.clip_perturbation(ref, img, eps)
        assert np.all(dist(ref, proj).numpy() <= eps * (1 + 1e-6))
        # a point already inside the ball is unchanged
        inside = dist.clip_perturbation(ref, proj, eps)
        np.testing.assert_allclose(inside.numpy(), proj.numpy(), atol=1e-6)
        # epsilon 0 gives the reference
        np.testing.assert_allclose(dist.clip_perturbation(ref, img, 0.0).numpy(), ref, atol=0)
    # the L2 projection rescales (keeps the direction)
    proj = l2.clip_perturbation(ref, img, 0.5).numpy() - ref
    cos = np.sum(proj.reshape(4, -1) * diff, 1) / (
        np.linalg.norm(proj.reshape(4, -1), axis=1) * np.linalg.norm(diff, axis=1)
    )
    np.testing.assert_allclose(cos, 1.0, rtol=1e-5)
    assert repr(l2) == "l2" and repr(linf) == "linf"


def test_per_image_epsilon():
    ref = np.zeros((2, 2, 2, 1), np.float32)
    img = np.ones((2, 2, 2, 1), np.float32)
    out = linf.clip_perturbation(ref, img, tf.constant([0.1, 0.5]))
    np.testing.assert_allclose(linf(ref, out).numpy(), [0.1, 0.5], rtol=1e-6)
    out = l2.clip_perturbation(ref, img, tf.constant([0.1, 0.5]))
    np.testing.assert_allclose(l2(ref, out).numpy(), [0.1, 0.5], rtol=1e-6)
