"""Transferability (§5.4) on two tiny models."""

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.attacks import L2ProjectedGradientDescentAttack, LinfFastGradientAttack
from tfsmooth.evaluation import evaluate_transfer


def linear(weights):
    w = tf.constant(weights, tf.float32)
    return lambda x: tf.reshape(x, [-1, 2]) @ w


def test_transfer_between_two_models():
    # A: class 1 iff x0 > x1.  B: class 1 iff x0 > 0.5 (ignores x1).
    a = linear([[-1.0, 1.0], [1.0, -1.0]])

    def b(x):
        v = tf.reshape(x, [-1, 2])[:, :1]
        return tf.concat([0.5 - v, v - 0.5], axis=1)

    images = np.array([[0.45, 0.6], [0.2, 0.3], [0.7, 0.2], [0.52, 0.9], [0.3, 0.9]], np.float32)
    labels = np.array([0, 0, 1, 0, 0])  # image 3: A says 0, B says 1 -> not counted
    result = evaluate_transfer(
        a, b, LinfFastGradientAttack(), images.reshape([-1, 1, 2, 1]), labels, epsilon=0.1
    )
    # FGSM on A moves x0 up and x1 down by 0.1 (class 0 images) or the reverse (class 1).
    assert result.correct.tolist() == [True, True, True, False, True]
    assert result.n == 4
    assert result.success_source.tolist() == [True, True, False, False, False]
    # On B: 0.45 -> 0.55 crosses 0.5; 0.2 -> 0.3 does not; 0.7 -> 0.6 does not; 0.3 -> 0.4 no.
    assert result.success_target.tolist() == [True, False, False, False, False]
    assert result.psuc_source == pytest.approx(2 / 4) and result.psuc_target == pytest.approx(1 / 4)
    assert result.mean_l2 == pytest.approx(0.1 * np.sqrt(2), rel=1e-5)
    row = result.to_row()
    assert row["psuc"] == pytest.approx(0.25) and row["n"] == 4


def test_transfer_rejects_several_epsilons():
    a = linear([[1.0, 0.0], [0.0, 1.0]])
    x = np.zeros([2, 1, 2, 1], np.float32)
    with pytest.raises(ValueError, match="single epsilon"):
        evaluate_transfer(
            a, a, L2ProjectedGradientDescentAttack(steps=2), x, [0, 0], epsilon=[1, 2]
        )
    with pytest.raises(ValueError, match="epsilon"):
        evaluate_transfer(a, a, LinfFastGradientAttack(), x, [0, 0])
