"""Metrics of §5.1 against hand-computed cases."""

import math

import numpy as np
import pytest

from tfsmooth.evaluation import metrics


def test_success_probability_counts_only_correct_images():
    success = [True, True, False, True, False]
    correct = [True, False, True, True, True]
    # correct: 0, 2, 3, 4 -> successes among them: 0 and 3
    assert metrics.success_probability(success, correct) == pytest.approx(2 / 4)
    assert metrics.success_probability(success) == pytest.approx(3 / 5)
    assert math.isnan(metrics.success_probability([True], [False]))


def test_conditional_mean_distortion_is_over_successes_only():
    d = [1.0, 100.0, 2.5, np.nan]
    s = [True, False, True, False]
    assert metrics.conditional_mean_distortion(d, s) == pytest.approx(1.75)
    assert math.isnan(metrics.conditional_mean_distortion([1.0, 2.0], [False, False]))


def test_conditional_mean_distortion_rejects_bad_input():
    with pytest.raises(ValueError, match="finite"):
        metrics.conditional_mean_distortion([np.nan], [True])
    with pytest.raises(ValueError, match="shape"):
        metrics.conditional_mean_distortion([1.0, 2.0], [True])
    with pytest.raises(ValueError, match="booleans"):
        metrics.conditional_mean_distortion([1.0], [2])


def test_operating_characteristic_step_function():
    d = [3.0, 1.0, 2.0, 1.0, 7.0]
    s = [True, True, True, True, False]
    thresholds, p = metrics.operating_characteristic(d, s, n_total=8)
    np.testing.assert_allclose(thresholds, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(p, [2 / 8, 3 / 8, 4 / 8])
    # ends at Psuc over N
    assert p[-1] == pytest.approx(4 / 8)
    empty_d, empty_p = metrics.operating_characteristic([1.0], [False])
    assert empty_d.size == 0 and empty_p.size == 0
    with pytest.raises(ValueError, match="n_total"):
        metrics.operating_characteristic(d, s, n_total=0)
    with pytest.raises(ValueError, match="smaller"):
        metrics.operating_characteristic(d, s, n_total=3)


def test_combine_multi_epsilon():
    success = [[False, True, False, False], [True, True, False, True], [True, False, False, True]]
    distances = [[0.5, 0.9, 0.1, 0.1], [1.5, 1.0, 0.2, 2.0], [2.5, 3.0, 0.3, 1.0]]
    ok, d, k = metrics.combine_multi_epsilon(success, distances, return_index=True)
    assert ok.tolist() == [True, True, False, True]
    np.testing.assert_allclose(d, [1.5, 0.9, np.nan, 1.0])
    assert k.tolist() == [1, 0, -1, 2]
    with pytest.raises(ValueError, match="shape"):
        metrics.combine_multi_epsilon([True, False], [1.0, 2.0])
    with pytest.raises(ValueError, match="shape"):
        metrics.combine_multi_epsilon([[True]], [[1.0, 2.0]])
