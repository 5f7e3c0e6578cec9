"""Transferability (§5.4) on two tiny models."""

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.attacks import L2ProjectedGradientDescentAttack, LinfFastGradientAttack
from tfsmooth.evaluation import evaluate_transfer
from tfsmooth.evaluation.records import TRANSFER_RECORDS_FORMAT, read_records


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


# -- several targets, records, resume (one pixel: hand-checked) -------------------------------
def threshold(level):
    """One pixel: class 1 iff the pixel is above ``level``."""

    def model(x):
        v = tf.reshape(x, [-1, 1])
        return tf.concat([level - v, v - level], axis=1) * 10.0

    return model


def one_pixel_data():
    values = np.array([0.45, 0.3, 0.1, 0.75, 0.95, 0.6, 0.25], np.float32)
    labels = (values > 0.5).astype(np.int64)
    labels[5] = 0  # misclassified by the source: 0.6 is class 1
    return values.reshape([-1, 1, 1, 1]), labels


class CountingFGSM(LinfFastGradientAttack):
    """FGSM that remembers the size of every batch it attacks."""

    def __init__(self):
        super().__init__()
        self.sizes = []

    def __call__(self, model, images, *args, **kwargs):
        self.sizes.append(int(images.shape[0]))
        return super().__call__(model, images, *args, **kwargs)


def test_several_targets_hand_checked():
    images, labels = one_pixel_data()
    source, same, low = threshold(0.5), threshold(0.5), threshold(0.38)
    attack = CountingFGSM()
    results = evaluate_transfer(
        source, {"same": same, "low": low}, attack, images, labels, epsilon=0.1, batch_size=3
    )
    assert list(results) == ["same", "low"]
    # attacked: correct on the source and on a target (all but image 5), in fixed batches
    # [0 1 2] [3 4 5] [6], every call padded to 3 images
    assert attack.sizes == [3, 3, 3]
    # FGSM moves the pixel by 0.1 towards the source's threshold 0.5:
    # 0.45 -> 0.55, 0.3 -> 0.4, 0.1 -> 0.2, 0.75 -> 0.65, 0.95 -> 0.85, 0.25 -> 0.35.
    same_r, low_r = results["same"], results["low"]
    assert same_r.correct.tolist() == [True, True, True, True, True, False, True]
    assert (same_r.n0, same_r.n, same_r.n_success) == (7, 6, 1)  # 0.55 crosses 0.5
    assert same_r.psuc_target == pytest.approx(1 / 6) == same_r.psuc_source
    assert same_r.mean_l2 == pytest.approx(0.1, abs=1e-6)
    # low (class 1 iff > 0.38): 0.45 and 0.6 misclassified; 0.3 -> 0.4 fools it, 0.25 -> 0.35 not
    assert low_r.correct.tolist() == [False, True, True, True, True, False, True]
    assert (low_r.n, low_r.n_success) == (5, 1)
    assert low_r.success_target.tolist() == [False, True, False, False, False, False, False]
    assert low_r.psuc_target == pytest.approx(0.2) and low_r.psuc_source == 0.0
    assert np.isnan(low_r.mean_l2_source) and np.isnan(low_r.l2[0])  # not counted for `low`
    row = low_r.to_row()
    assert list(row) == [
        "n0",
        "n",
        "n_success",
        "psuc",
        "mean_l2",
        "psuc_source",
        "mean_l2_source",
        "epsilon",
        "seconds",
    ]
    assert row["psuc"] == pytest.approx(0.2) and row["mean_l2_source"] is None
    assert row["epsilon"] == 0.1 and row["mean_l2"] == pytest.approx(0.1, abs=1e-6)
    # each target alone gives the same numbers (FGSM is per image)
    for name, model in (("same", same), ("low", low)):
        alone = evaluate_transfer(source, model, attack, images, labels, epsilon=0.1, batch_size=3)
        assert {k: x for k, x in alone.to_row().items() if k != "seconds"} == {
            k: x for k, x in results[name].to_row().items() if k != "seconds"
        }
        np.testing.assert_array_equal(alone.success_target, results[name].success_target)


def strip_timing(records):
    return sorted(
        ({k: x for k, x in r.items() if k != "seconds"} for r in records), key=lambda r: r["index"]
    )


def test_records_resume_after_truncated_line(tmp_path):
    images, labels = one_pixel_data()
    targets = {"same": threshold(0.5), "low": threshold(0.38)}
    kwargs = {"epsilon": 0.1, "batch_size": 3, "source_name": "A", "attack_name": "FGSM"}
    full = tmp_path / "full.jsonl"
    done = evaluate_transfer(
        threshold(0.5), targets, CountingFGSM(), images, labels, records_path=full, **kwargs
    )
    header, records, truncated = read_records(full)
    assert truncated is None and len(records) == 7
    assert header["format"] == TRANSFER_RECORDS_FORMAT
    assert (header["model"], header["attack"], header["epsilons"]) == ("A", "FGSM", 0.1)
    assert header["targets"] == ["low", "same"] and set(header["target_models"]) == {"low", "same"}
    assert (header["batch_size"], header["n_images"]) == (3, 7)
    assert "data_fingerprint" in header and "attack_config" in header

    # a killed run: the last batch lost, the line before it cut in the middle
    cut = tmp_path / "cut.jsonl"
    lines = full.read_bytes().split(b"\n")[:-1]  # header + 7 records
    cut.write_bytes(b"\n".join(lines[:-2]) + b"\n" + lines[-2][: len(lines[-2]) // 2])
    assert read_records(cut)[2] is not None and len(read_records(cut)[1]) == 5
    attack = CountingFGSM()
    resumed = evaluate_transfer(
        threshold(0.5), targets, attack, images, labels, records_path=cut, resume=True, **kwargs
    )
    assert attack.sizes == [3, 3]  # batch [3 4 5] attacked again as a whole, then [6] padded
    assert strip_timing(read_records(cut)[1]) == strip_timing(records)
    for name in targets:
        a, b = resumed[name].to_row(), done[name].to_row()
        a.pop("seconds"), b.pop("seconds")
        assert a == b

    # complete: resuming attacks nothing
    attack = CountingFGSM()
    again = evaluate_transfer(
        threshold(0.5), targets, attack, images, labels, records_path=full, resume=True, **kwargs
    )
    assert attack.sizes == [] and again["same"].n_success == done["same"].n_success


def test_records_of_another_run_refused(tmp_path):
    images, labels = one_pixel_data()
    path = tmp_path / "r.jsonl"
    targets = {"same": threshold(0.5)}
    attack = LinfFastGradientAttack()
    evaluate_transfer(
        threshold(0.5), targets, attack, images, labels, epsilon=0.1, records_path=path
    )
    with pytest.raises(ValueError, match="exists.*resume"):
        evaluate_transfer(
            threshold(0.5), targets, attack, images, labels, epsilon=0.1, records_path=path
        )
    with pytest.raises(ValueError, match=r"another run \(differs in \['epsilons'\]\)"):
        evaluate_transfer(
            threshold(0.5),
            targets,
            attack,
            images,
            labels,
            epsilon=0.2,
            records_path=path,
            resume=True,
        )
    with pytest.raises(ValueError, match="another run.*targets"):
        evaluate_transfer(
            threshold(0.5),
            {"other": threshold(0.5)},
            attack,
            images,
            labels,
            epsilon=0.1,
            records_path=path,
            resume=True,
        )
    with pytest.raises(ValueError, match="another run.*batch_size"):
        evaluate_transfer(
            threshold(0.5),
            targets,
            attack,
            images,
            labels,
            epsilon=0.1,
            batch_size=2,
            records_path=path,
            resume=True,
        )
    # overwrite starts over with the new settings
    result = evaluate_transfer(
        threshold(0.5),
        targets,
        attack,
        images,
        labels,
        epsilon=0.3,
        records_path=path,
        overwrite=True,
    )
    # 0.45 -> 0.75, 0.3 -> 0.6, 0.75 -> 0.45, 0.25 -> 0.55 cross 0.5
    assert read_records(path)[0]["epsilons"] == 0.3 and result["same"].n_success == 4


def test_transfer_bad_targets():
    images, labels = one_pixel_data()
    attack = LinfFastGradientAttack()
    with pytest.raises(ValueError, match="at least one"):
        evaluate_transfer(threshold(0.5), {}, attack, images, labels, epsilon=0.1)
    with pytest.raises(TypeError, match="names"):
        evaluate_transfer(threshold(0.5), {1: threshold(0.5)}, attack, images, labels, epsilon=0.1)
    with pytest.raises(TypeError, match="targets"):
        evaluate_transfer(threshold(0.5), 3, attack, images, labels, epsilon=0.1)
    with pytest.raises(TypeError, match="Attack"):
        evaluate_transfer(threshold(0.5), threshold(0.5), "FGSM", images, labels, epsilon=0.1)
    with pytest.raises(ValueError, match="labels"):
        evaluate_transfer(threshold(0.5), threshold(0.5), attack, images, labels[:3], epsilon=0.1)
