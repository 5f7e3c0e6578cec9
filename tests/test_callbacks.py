"""AdversarialEvaluation inside a real fit / evaluate."""

import keras
import numpy as np
import pytest

from tfsmooth.attacks import L2ProjectedGradientDescentAttack, LinfFastGradientAttack
from tfsmooth.callbacks import AdversarialEvaluation


def _data():
    rng = np.random.default_rng(0)
    x = rng.uniform(size=[64, 4, 4, 1]).astype("float32")
    y = (x.mean(axis=(1, 2, 3)) > 0.5).astype("int64")
    return x, y


def test_logs_reach_history_and_csv(tmp_path):
    keras.utils.set_random_seed(0)
    x, y = _data()
    model = keras.Sequential(
        [keras.Input([4, 4, 1]), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = AdversarialEvaluation(
        L2ProjectedGradientDescentAttack(steps=3), x[:16], y[:16], epsilons=[0.5, 2.0]
    )
    csv = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    history = model.fit(
        x,
        y,
        epochs=2,
        batch_size=16,
        verbose=0,
        callbacks=[callback, csv],
        validation_data=(x[:8], y[:8]),
    )
    rates = history.history["adv_success_rate"]
    assert len(rates) == 2 and len(history.history["adv_mean_l2"]) == 2
    assert all(0.0 <= r <= 1.0 for r in rates)
    assert rates[-1] > 0  # an L2 budget of 2 on 4x4 images flips a linear model
    assert "adv_success_rate" in (tmp_path / "log.csv").read_text().splitlines()[0]

    seen = {}
    spy = keras.callbacks.LambdaCallback(on_test_end=lambda logs: seen.update(logs))
    callback.last_result = None
    model.evaluate(x[:8], y[:8], verbose=0, callbacks=[callback, spy])
    assert set(callback.last_result) == {"adv_success_rate", "adv_mean_l2"}
    assert seen["adv_success_rate"] == callback.last_result["adv_success_rate"]


def test_frequency_and_config():
    keras.utils.set_random_seed(0)
    x, y = _data()
    model = keras.Sequential(
        [keras.Input([4, 4, 1]), keras.layers.Flatten(), keras.layers.Dense(2)]
    )
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    callback = AdversarialEvaluation(
        LinfFastGradientAttack(), x[:8], y[:8], epsilons=0.3, frequency=2, prefix="rob_"
    )
    history = model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback])
    # Keras History keeps a key only from the epochs that logged it: epoch 2 only
    assert len(history.history["rob_success_rate"]) == 1
    config = callback.get_config()
    assert config["frequency"] == 2 and config["prefix"] == "rob_" and config["epsilons"] == 0.3
    with pytest.raises(ValueError, match="epsilons"):
        AdversarialEvaluation(LinfFastGradientAttack(), x[:2], y[:2])
    with pytest.raises(ValueError, match="labels"):
        AdversarialEvaluation(LinfFastGradientAttack(), x[:2], y[:3], epsilons=0.1)
    with pytest.raises(ValueError, match="frequency"):
        AdversarialEvaluation(LinfFastGradientAttack(), x[:2], y[:2], epsilons=0.1, frequency=0)
