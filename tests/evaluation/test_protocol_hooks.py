"""The hooks of evaluate_attack that runners build on: ``header``, ``annotate``, ``keep``, and
``measure`` / ``annotate`` seeing only the images not recorded yet."""

import json

import numpy as np
import pytest

from tests.evaluation.test_protocol import one_pixel_data, threshold_model
from tfsmooth.attacks import LinfFastGradientAttack
from tfsmooth.evaluation.protocol import evaluate_attack, read_records

FILES = [f"img{i}.png" for i in range(7)]


def _run(path, calls, **kwargs):
    def annotate(records, clean, adversarial):
        calls.append([r["index"] for r in records])
        assert clean.shape == adversarial.shape == (len(records), 1, 1, 1)
        for record, x, a in zip(records, clean, adversarial):
            record["shift"] = round(float(a.item() - x.item()), 4)
            record["file"] = FILES[record["index"]]

    images, labels = one_pixel_data()
    return evaluate_attack(
        threshold_model,
        LinfFastGradientAttack(),
        images,
        labels,
        epsilons=[0.1, 0.3],
        batch_size=3,
        records_path=path,
        header={"files": FILES},
        annotate=annotate,
        **kwargs,
    )


def _by_index(path):
    return {
        r["index"]: {k: v for k, v in r.items() if k != "seconds"} for r in read_records(path)[1]
    }


def _drop(path, indices):
    lines = path.read_text().splitlines()
    kept = [line for line in lines[1:] if json.loads(line)["index"] not in indices]
    path.write_text("\n".join([lines[0], *kept]) + "\n")


def test_annotate_adds_fields_to_the_new_records_only(tmp_path):
    path = tmp_path / "r.jsonl"
    calls = []
    result = _run(path, calls)
    assert calls == [[0, 1, 2], [3, 4, 5], [6]]
    records = _by_index(path)
    # the adversarial of each record: best epsilon (0, 1, 3, 6 succeed), the last epsilon where
    # the attack failed (2, 4), the clean image where not attacked (5 is misclassified)
    assert [records[i]["shift"] for i in range(7)] == [0.1, 0.3, 0.3, -0.3, -0.3, 0.0, 0.3]
    assert [records[i]["file"] for i in range(7)] == FILES
    assert [records[i]["clean_label"] for i in range(7)] == [0, 0, 0, 1, 1, 1, 0]
    assert result.success.tolist() == [True, True, False, True, False, False, True]
    header = read_records(path)[0]
    assert header["files"] == FILES

    # an interrupted batch is attacked again as a whole, only its missing record annotated
    _drop(path, {4})
    calls.clear()
    _run(path, calls, resume=True)
    assert calls == [[4]] and _by_index(path) == records

    # keep(record) false: attacked again
    calls.clear()
    _run(path, calls, resume=True, keep=lambda record: record["index"] != 6)
    assert calls == [[6]] and _by_index(path) == records
    calls.clear()
    _run(path, calls, resume=True, keep=lambda record: True)
    assert calls == []


def test_measure_sees_only_the_successes_not_recorded_yet(tmp_path):
    images, labels = one_pixel_data()
    calls = []

    def measure(indices, clean, adversarial):
        calls.append(indices.tolist())
        return {"shift": np.abs(adversarial - clean).reshape(-1)}

    path = tmp_path / "r.jsonl"
    run = dict(epsilons=[0.1, 0.3], batch_size=3, records_path=path, measure=measure)
    evaluate_attack(threshold_model, LinfFastGradientAttack(), images, labels, **run)
    assert calls == [[0, 1], [3], [6]]
    full = _by_index(path)
    _drop(path, {1})
    calls.clear()
    evaluate_attack(threshold_model, LinfFastGradientAttack(), images, labels, resume=True, **run)
    assert calls == [[1]] and _by_index(path) == full


def test_header_identifies_the_run(tmp_path):
    path = tmp_path / "r.jsonl"
    _run(path, [])
    with pytest.raises(ValueError, match=r"another run \(differs in \['files'\]\)"):
        evaluate_attack(
            threshold_model,
            LinfFastGradientAttack(),
            *one_pixel_data(),
            epsilons=[0.1, 0.3],
            batch_size=3,
            records_path=path,
            resume=True,
            header={"files": FILES[::-1]},
        )


def test_bad_hooks_are_refused(tmp_path):
    images, labels = one_pixel_data()
    run = dict(epsilons=0.3, batch_size=3)
    attack = LinfFastGradientAttack()
    with pytest.raises(ValueError, match=r"runner's own keys, got \['epsilons'\]"):
        evaluate_attack(threshold_model, attack, images, labels, header={"epsilons": 1}, **run)
    with pytest.raises(TypeError, match="`header` must be a dict"):
        evaluate_attack(threshold_model, attack, images, labels, header=["files"], **run)
    with pytest.raises(TypeError, match="`annotate` must be callable"):
        evaluate_attack(threshold_model, attack, images, labels, annotate="png", **run)

    def tamper(records, clean, adversarial):
        records[0]["success"] = not records[0]["success"]

    with pytest.raises(ValueError, match=r"must not change the runner's fields.*\['success'\]"):
        evaluate_attack(
            threshold_model,
            attack,
            images,
            labels,
            annotate=tamper,
            records_path=tmp_path / "r.jsonl",
            **run,
        )
    assert not (tmp_path / "r.jsonl").exists()


def test_no_extra_forward_pass_for_the_adversarial_labels():
    """The labels of the adversarials come from the attack's own forward pass: the eager calls
    of the model do not grow with the number of epsilons."""
    images, labels = one_pixel_data()
    calls = []

    def model(x):
        calls.append(int(x.shape[0]))
        return threshold_model(x)

    attack = LinfFastGradientAttack()
    counts = []
    for eps in (0.3, [0.1, 0.2, 0.3], [0.1, 0.2, 0.3]):
        calls.clear()
        result = evaluate_attack(model, attack, images, labels, epsilons=eps, batch_size=3)
        counts.append(len(calls))
    assert counts[1] == counts[2] <= counts[0]  # no call per epsilon and batch
    assert result.adv_label.tolist() == [1, 1, 0, 0, 1, 1, 1]
