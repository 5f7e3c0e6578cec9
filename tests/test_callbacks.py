"""AdversarialEvaluation inside a real fit / evaluate."""

import keras
import numpy as np
import pytest

from tfsmooth.attacks import (
    L2CarliniWagnerAttack,
    L2ProjectedGradientDescentAttack,
    LinfFastGradientAttack,
)
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


def _linear_model(classes=2):
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input([4, 4, 1]), keras.layers.Flatten(), keras.layers.Dense(classes)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model


@pytest.mark.parametrize(
    "make, epsilons",
    [
        (lambda: L2ProjectedGradientDescentAttack(steps=3), [0.5, 2.0]),
        (lambda: L2CarliniWagnerAttack(binary_search_steps=2, steps=5), None),
    ],
    ids=["pgd", "cw"],
)
def test_attack_compiled_and_traced_once(make, epsilons):
    x, y = _data()
    model = _linear_model()
    attack = make()
    callback = AdversarialEvaluation(attack, x[:16], y[:16], epsilons=epsilons)
    history = model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[callback])
    assert len(history.history["adv_success_rate"]) == 3
    callback.evaluate()
    # one wrapper, one compiled loop, one trace, however many epochs
    assert len(attack._compiled) == 1, list(attack._compiled)
    ((_, _, function),) = attack._compiled.values()
    assert function.experimental_get_tracing_count() == 1


def test_reused_loop_reads_the_current_weights():
    x, y = _data()
    model = _linear_model()
    attack = L2ProjectedGradientDescentAttack(steps=3)
    callback = AdversarialEvaluation(attack, x[:16], y[:16], epsilons=[0.5, 2.0])
    model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    before = dict(callback.last_result)
    model.fit(x, y, epochs=2, batch_size=32, verbose=0, callbacks=[callback])
    model.evaluate(x[:8], y[:8], verbose=0, callbacks=[callback])  # the same model: reused
    assert len(attack._compiled) == 1
    # a fresh attack on a fresh wrapper agrees with the reused loop on the trained weights
    fresh = AdversarialEvaluation(
        L2ProjectedGradientDescentAttack(steps=3), x[:16], y[:16], epsilons=[0.5, 2.0]
    )
    fresh.set_model(model)
    assert fresh.evaluate() == pytest.approx(callback.last_result, nan_ok=True)
    assert callback.last_result != before  # training moved the weights


def test_another_model_gets_its_own_wrapper():
    x, y = _data()
    attack = LinfFastGradientAttack()
    callback = AdversarialEvaluation(attack, x[:8], y[:8], epsilons=0.3)
    first, second = _linear_model(), _linear_model()
    callback.set_model(first)
    callback.evaluate()
    callback.set_model(second)
    callback.evaluate()
    models = [entry[0].model for entry in attack._compiled.values()]
    assert models == [first, second]


def test_labels_outside_the_class_range():
    x, y = _data()
    model = _linear_model(classes=2)
    labels = y[:8].copy()
    labels[0] = 2  # the other 7 are valid: no silent skipping of the bad one
    callback = AdversarialEvaluation(LinfFastGradientAttack(), x[:8], labels, epsilons=0.3)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\).*2 outputs.*\[0, 2\]"):
        model.fit(x, y, epochs=1, batch_size=32, verbose=0, callbacks=[callback])
    with pytest.raises(ValueError, match=r">= 0.*\[-1, 1\]"):
        AdversarialEvaluation(LinfFastGradientAttack(), x[:2], [-1, 1], epsilons=0.3)


def test_empty_batch_and_no_model():
    x, y = _data()
    with pytest.raises(ValueError, match="empty held-out batch"):
        AdversarialEvaluation(LinfFastGradientAttack(), x[:0], y[:0], epsilons=0.3)
    callback = AdversarialEvaluation(LinfFastGradientAttack(), x[:2], y[:2], epsilons=0.3)
    with pytest.raises(RuntimeError, match="no model"):
        callback.evaluate()


@pytest.mark.parametrize(
    "make, epsilons",
    [
        (lambda: L2ProjectedGradientDescentAttack(steps=3), [0.5, 2.0]),
        # early stop on the batch loss, to which a misclassified image adds exactly 0
        (lambda: L2CarliniWagnerAttack(binary_search_steps=2, steps=10), None),
    ],
    ids=["pgd", "cw"],
)
def test_only_correct_images_count(make, epsilons):
    """Misclassified images are attacked with the rest (fixed shape) but never counted."""
    x, y = _data()
    model = _linear_model()
    model.fit(x, y, epochs=2, batch_size=32, verbose=0)
    images, labels = x[:16], y[:16].copy()
    pred = np.argmax(model(images), axis=1)
    labels[:4] = 1 - pred[:4]  # four images made misclassified
    correct = pred == labels
    assert 0 < correct.sum() < 16
    callback = AdversarialEvaluation(make(), images, labels, epsilons=epsilons)
    callback.set_model(model)
    values = callback.evaluate()
    # the same statistics as attacking the correct images alone
    alone = AdversarialEvaluation(make(), images[correct], labels[correct], epsilons=epsilons)
    alone.set_model(model)
    assert values == pytest.approx(alone.evaluate(), nan_ok=True)
    assert values["adv_success_rate"] > 0  # not vacuous: NaN == NaN would pass approx
