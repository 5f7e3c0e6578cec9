"""Per-image measures of the adversarials (perceptual metrics) in the records and the rows."""

import json

import numpy as np
import pytest

from tests.evaluation.test_protocol import one_pixel_data, threshold_model
from tfsmooth.attacks import LinfFastGradientAttack
from tfsmooth.evaluation.protocol import evaluate_attack, read_records


def _measure(calls):
    def measure(indices, clean, adversarial):
        calls.append(indices.tolist())
        assert clean.shape == adversarial.shape == (len(indices), 1, 1, 1)
        # the chosen adversarial is the one of the best epsilon: |x_a - x_o| = that epsilon
        return {"shift": np.abs(adversarial - clean).reshape(-1), "index": indices * 1.0}

    return measure


def test_measures_are_computed_on_the_successes_recorded_and_averaged(tmp_path):
    images, labels = one_pixel_data()
    calls = []
    path = tmp_path / "r.jsonl"
    result = evaluate_attack(
        threshold_model,
        LinfFastGradientAttack(),
        images,
        labels,
        epsilons=[0.1, 0.3],
        batch_size=3,
        records_path=path,
        measure=_measure(calls),
    )
    # successes are images 0, 1, 3, 6 (see test_hand_checked_multi_epsilon_fgsm)
    assert calls == [[0, 1], [3], [6]]
    np.testing.assert_allclose(
        result.measures["shift"][[0, 1, 3, 6]], [0.1, 0.3, 0.3, 0.3], atol=1e-6
    )
    assert np.isnan(result.measures["shift"][[2, 4, 5]]).all()
    row = result.to_row()
    assert row["mean_shift"] == pytest.approx(0.25, abs=1e-6)
    assert row["mean_index"] == pytest.approx((0 + 1 + 3 + 6) / 4)
    _, records, _ = read_records(path)
    assert [r.get("measures", {}).get("index") for r in records] == [0, 1, None, 3, None, None, 6]
    # a resumed run reads them back without measuring again
    calls.clear()
    again = evaluate_attack(
        threshold_model,
        LinfFastGradientAttack(),
        images,
        labels,
        epsilons=[0.1, 0.3],
        batch_size=3,
        records_path=path,
        resume=True,
        measure=_measure(calls),
    )
    assert calls == [] and again.to_row()["mean_shift"] == row["mean_shift"]


def test_bad_measures_are_refused(tmp_path):
    images, labels = one_pixel_data()
    with pytest.raises(ValueError, match="returned 1 values of 'x' for 2 images"):
        evaluate_attack(
            threshold_model,
            LinfFastGradientAttack(),
            images,
            labels,
            epsilons=[0.1, 0.3],
            batch_size=3,
            measure=lambda i, c, a: {"x": np.zeros(1)},
        )
    path = tmp_path / "r.jsonl"
    evaluate_attack(
        threshold_model, LinfFastGradientAttack(), images, labels, epsilons=0.3, records_path=path
    )
    lines = path.read_text().splitlines()
    record = json.loads(lines[1])
    record["measures"] = {"psnr": "high"}
    path.write_text("\n".join([lines[0], json.dumps(record), *lines[2:]]) + "\n")
    with pytest.raises(ValueError, match="measures"):
        read_records(path)
