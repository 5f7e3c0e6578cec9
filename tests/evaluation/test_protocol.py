"""The §5.1 runner: hand-checked metrics, resumable records, corrupted files, strategies."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.attacks import L2CarliniWagnerAttack, LinfBasicIterativeAttack, LinfFastGradientAttack
from tfsmooth.evaluation import protocol
from tfsmooth.evaluation.protocol import evaluate_attack, read_records


def threshold_model(x):
    """One pixel: class 1 iff the pixel is above 0.5."""
    v = tf.reshape(x, [-1, 1])
    return tf.concat([0.5 - v, v - 0.5], axis=1) * 10.0


def one_pixel_data():
    values = np.array([0.45, 0.3, 0.1, 0.75, 0.95, 0.6, 0.25], np.float32)
    images = values.reshape([-1, 1, 1, 1])
    labels = (values > 0.5).astype(np.int64)
    labels[5] = 0  # misclassified: 0.6 is class 1
    return images, labels


def test_hand_checked_multi_epsilon_fgsm():
    images, labels = one_pixel_data()
    result = evaluate_attack(
        threshold_model, LinfFastGradientAttack(), images, labels, epsilons=[0.1, 0.3], batch_size=3
    )
    # FGSM moves the pixel by eps towards 0.5: success iff |x - 0.5| < eps; D = smallest eps.
    assert (result.n0, result.n) == (7, 6)
    assert result.correct.tolist() == [True, True, True, True, True, False, True]
    assert result.success.tolist() == [True, True, False, True, False, False, True]
    np.testing.assert_allclose(result.l2[result.success], [0.1, 0.3, 0.3, 0.3], atol=1e-6)
    np.testing.assert_allclose(result.best_epsilon[result.success], [0.1, 0.3, 0.3, 0.3])
    assert np.isnan(result.l2[~result.success]).all()
    assert result.n_success == 4 and result.psuc == pytest.approx(4 / 6)
    assert result.mean_l2 == pytest.approx(1.0 / 4, abs=1e-6)
    assert result.adv_label.tolist() == [1, 1, 0, 0, 1, 1, 1]
    thresholds, p = result.operating_characteristic()
    np.testing.assert_allclose(thresholds, [0.1, 0.3], atol=1e-6)
    np.testing.assert_allclose(p, [1 / 6, 4 / 6])
    row = result.to_row()
    assert {"model", "attack", "n", "n_success", "psuc", "mean_l2", "seconds"} <= set(row)
    assert row["attack"] == "LinfFastGradientAttack"


class FailingIFGSM(LinfBasicIterativeAttack):
    """I-FGSM that raises on its ``fail_at``-th call (simulates a killed run)."""

    fail_at = None
    calls = 0

    def __call__(self, *args, **kwargs):
        type(self).calls += 1
        if self.fail_at is not None and type(self).calls >= self.fail_at:
            raise KeyboardInterrupt("killed")
        return super().__call__(*args, **kwargs)


@pytest.fixture
def tiny_setup():
    tf.keras.utils.set_random_seed(1)
    net = tf.keras.Sequential(
        [tf.keras.Input([5, 5, 1]), tf.keras.layers.Flatten(), tf.keras.layers.Dense(4)],
        name="tiny",
    )
    images = np.random.default_rng(0).uniform(size=[10, 5, 5, 1]).astype(np.float32)
    labels = np.argmax(net(images), axis=1)
    labels[3] = (labels[3] + 1) % 4
    return net, images, labels


def _records(path):
    _, records, _ = read_records(path)
    return {r["index"]: {k: x for k, x in r.items() if k != "seconds"} for r in records}


def _run(net, images, labels, attack, path, **kwargs):
    return evaluate_attack(
        net,
        attack,
        images,
        labels,
        epsilons=[0.02, 0.1],
        batch_size=3,
        records_path=path,
        attack_name="I-FGSM",
        **kwargs,
    )


def test_kill_and_resume_gives_the_same_records(tmp_path, tiny_setup):
    net, images, labels = tiny_setup
    attack = FailingIFGSM(steps=3, step_size=0.02)
    reference = _run(net, images, labels, attack, tmp_path / "full.jsonl")

    FailingIFGSM.calls, attack.fail_at = 0, 3
    partial = tmp_path / "part.jsonl"
    with pytest.raises(KeyboardInterrupt):
        _run(net, images, labels, attack, partial)
    header, records, truncated = read_records(partial)
    assert header["format"] == protocol.RECORDS_FORMAT and truncated is None
    assert sorted(r["index"] for r in records) == [0, 1, 2, 3, 4, 5]  # two batches recorded

    # a kill in the middle of writing: the last line cut short
    with open(partial, "a") as f:
        f.write('{"index": 6, "model": "tiny", "succ')
    attack.fail_at, FailingIFGSM.calls = None, 0
    with pytest.raises(ValueError, match="resume"):
        _run(net, images, labels, attack, partial)
    resumed = _run(net, images, labels, attack, partial, resume=True)
    assert FailingIFGSM.calls == 2  # only batches 3 and 4 were attacked again
    assert _records(partial) == _records(tmp_path / "full.jsonl")
    assert resumed.to_row() | {"seconds": 0} == reference.to_row() | {"seconds": 0}
    np.testing.assert_array_equal(resumed.l2, reference.l2)

    # resuming a finished run recomputes nothing
    FailingIFGSM.calls = 0
    again = _run(net, images, labels, attack, partial, resume=True)
    assert FailingIFGSM.calls == 0 and again.psuc == reference.psuc


def test_partially_written_batch_is_redone_whole(tmp_path, tiny_setup):
    net, images, labels = tiny_setup
    attack = LinfBasicIterativeAttack(steps=3, step_size=0.02)
    path = tmp_path / "r.jsonl"
    _run(net, images, labels, attack, path)
    full = _records(path)
    lines = path.read_bytes().split(b"\n")[:-1]
    # keep the header and the first 7 records, then half of the 8th (batch 2 incomplete)
    path.write_bytes(b"\n".join(lines[:8]) + b"\n" + lines[8][:10])
    _run(net, images, labels, attack, path, resume=True)
    assert _records(path) == full
    assert len(path.read_bytes().split(b"\n")) == len(lines) + 1


def test_bad_record_files_raise_and_are_untouched(tmp_path, tiny_setup):
    net, images, labels = tiny_setup
    attack = LinfBasicIterativeAttack(steps=2, step_size=0.02)
    path = tmp_path / "r.jsonl"
    _run(net, images, labels, attack, path)
    lines = path.read_bytes().split(b"\n")

    corrupted = tmp_path / "corrupted.jsonl"
    corrupted.write_bytes(b"\n".join(lines[:3] + [b"garbage"] + lines[4:]))
    before = corrupted.read_bytes()
    with pytest.raises(ValueError, match="line 4"):
        _run(net, images, labels, attack, corrupted, resume=True)
    assert corrupted.read_bytes() == before

    foreign = tmp_path / "foreign.jsonl"
    foreign.write_text("id,value\n1,2\n")
    with pytest.raises(ValueError, match="not a tfsmooth record file"):
        _run(net, images, labels, attack, foreign, resume=True)
    assert foreign.read_text() == "id,value\n1,2\n"

    before = path.read_bytes()
    other = LinfBasicIterativeAttack(steps=5, step_size=0.02)
    with pytest.raises(ValueError, match="attack_config"):
        _run(net, images, labels, other, path, resume=True)
    with pytest.raises(ValueError, match="data_fingerprint"):
        _run(net, images[::-1].copy(), labels[::-1].copy(), attack, path, resume=True)
    with pytest.raises(ValueError, match="exists"):
        _run(net, images, labels, attack, path)
    assert path.read_bytes() == before


def test_bad_arguments(tiny_setup):
    net, images, labels = tiny_setup
    attack = LinfFastGradientAttack()
    with pytest.raises(ValueError, match="epsilons"):
        evaluate_attack(net, attack, images, labels)
    with pytest.raises(ValueError, match="labels"):
        evaluate_attack(net, attack, images, labels[:3], epsilons=0.1)
    with pytest.raises(TypeError, match="attack"):
        evaluate_attack(net, "fgsm", images, labels, epsilons=0.1)
    with pytest.raises(ValueError, match="batch_size"):
        evaluate_attack(net, attack, images, labels, epsilons=0.1, batch_size=0)
    with pytest.raises(TypeError, match="progress"):
        evaluate_attack(net, attack, images, labels, epsilons=0.1, progress="yes")


def test_progress_callable_and_minimization_attack(tiny_setup):
    net, images, labels = tiny_setup
    calls = []
    attack = L2CarliniWagnerAttack(
        binary_search_steps=2, steps=30, learning_rate=0.1, initial_const=10.0
    )
    result = evaluate_attack(
        net, attack, images, labels, batch_size=4, progress=lambda d, t: calls.append((d, t))
    )
    assert calls == [(4, 10), (8, 10), (10, 10)]
    assert result.n == 9 and result.n_success >= 1
    ok = result.success
    assert np.all(result.adv_label[ok] != labels[ok])
    assert np.all(np.isnan(result.best_epsilon))


STRATEGY_SCRIPT = textwrap.dedent(
    """
    import numpy as np, tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfsmooth.attacks import L2CarliniWagnerAttack, LinfBasicIterativeAttack
    from tfsmooth.evaluation import evaluate_attack
    tf.keras.utils.set_random_seed(1)
    net = tf.keras.Sequential([tf.keras.Input([5, 5, 1]), tf.keras.layers.Flatten(),
                               tf.keras.layers.Dense(4)])
    x = np.random.default_rng(0).uniform(size=[11, 5, 5, 1]).astype("float32")
    y = np.argmax(net(x), 1); y[0] = (y[0] + 1) % 4
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    assert strategy.num_replicas_in_sync == 2
    for attack, eps in [(LinfBasicIterativeAttack(steps=3, step_size=0.02), [0.02, 0.1]),
                        (L2CarliniWagnerAttack(binary_search_steps=2, steps=20, learning_rate=0.1,
                                               initial_const=10.0, abort_early=False), None)]:
        a = evaluate_attack(net, attack, x, y, epsilons=eps, batch_size=4)
        b = evaluate_attack(net, attack, x, y, epsilons=eps, batch_size=4, strategy=strategy)
        assert a.n_success > 0, a.to_row()
        assert (a.success == b.success).all()
        np.testing.assert_allclose(a.l2, b.l2, rtol=1e-5, equal_nan=True)
        assert (a.adv_label == b.adv_label).all()
    # The replicas attack their chunks at the same time: record when each chunk runs.
    import threading, time
    from tfsmooth.evaluation import protocol
    spans, original = [], protocol._attack_chunk
    def timed(*args):
        start = time.perf_counter()
        outputs = tuple(o.numpy() for o in original(*args))
        spans.append((threading.current_thread().name, start, time.perf_counter()))
        return outputs
    protocol._attack_chunk = timed
    conv = tf.keras.Sequential([tf.keras.Input([28, 28, 1]),
                                tf.keras.layers.Conv2D(16, 5, activation="relu"),
                                tf.keras.layers.Flatten(), tf.keras.layers.Dense(10)])
    x = np.random.default_rng(1).uniform(size=[48, 28, 28, 1]).astype("float32")
    y = np.argmax(conv(x), 1)
    attack = LinfBasicIterativeAttack(steps=10, step_size=0.01)
    a = evaluate_attack(conv, attack, x, y, epsilons=0.05, batch_size=16)
    spans.clear()
    b = evaluate_attack(conv, attack, x, y, epsilons=0.05, batch_size=16, strategy=strategy)
    assert (a.success == b.success).all() and (a.adv_label == b.adv_label).all()
    np.testing.assert_allclose(a.l2, b.l2, rtol=1e-5, equal_nan=True)
    assert len(spans) == 6, spans  # 3 batches x 2 replicas
    assert all(name == "MainThread" for name, _, _ in spans[:2]), spans  # first batch: traces
    for pair in (spans[2:4], spans[4:6]):  # later batches: one thread per replica, overlapping
        assert {name for name, _, _ in pair} == {"tfsmooth-replica_0", "tfsmooth-replica_1"}
        overlap = min(end for _, _, end in pair) - max(start for _, start, _ in pair)
        assert overlap > 0, pair
        print("OVERLAP", overlap / max(end - start for _, start, end in pair))
    print("STRATEGY-OK")
    """
)


def test_mirrored_strategy_matches_single_device():
    """Two logical CPUs: same results as one device, the replicas' chunks run concurrently."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES="")
    env.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    done = subprocess.run(
        [sys.executable, "-c", STRATEGY_SCRIPT],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0 and "STRATEGY-OK" in done.stdout, done.stderr[-3000:]
    assert done.stdout.count("OVERLAP") == 2, done.stdout
