"""Paper settings as data and the attack builders."""

import pytest

from tfsmooth import attacks
from tfsmooth.evaluation import presets


def test_mnist_preset_carries_the_paper_settings():
    p = presets.MNIST.attacks
    assert p["FGSM"].epsilons == 0.3
    assert p["I-FGSM"].epsilons == 0.3 and p["I-FGSM"].kwargs["step_size"] == 0.08
    assert p["PGD2"].epsilons == (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    cw = p["C&W"].kwargs
    assert (cw["confidence"], cw["learning_rate"], cw["initial_const"]) == (1.0, 0.1, 15.0)
    assert p["sC&W"].smoother == {"alpha": 0.95, "solver": "auto", "kernel": "laplacian"}
    assert presets.IMAGENET.attacks["sC&W"].smoother["alpha"] == 0.997
    assert presets.IMAGENET.attacks["sC&W"].smoother["max_iter"] == 50
    assert presets.IMAGENET.attacks["FGSM"].epsilons == 0.1255
    assert presets.IMAGENET.attacks["C&W"].kwargs["initial_const"] == 100.0


def test_quick_preset_has_fewer_iterations():
    full, quick = presets.MNIST.attacks, presets.MNIST_QUICK.attacks
    assert presets.MNIST_QUICK.quick and not presets.MNIST.quick
    for name in ("I-FGSM", "PGD2", "C&W", "sC&W"):
        assert quick[name].kwargs["steps"] < full[name].kwargs["steps"]


def test_paper_tables():
    table1, table2 = presets.PAPER_RESULTS["mnist"]["c4"], presets.PAPER_RESULTS["mnist"]["c4-adv"]
    assert table1["FGSM"] == (0.89, 5.02) and table1["sPGD2"] == (0.97, 3.36)
    assert table2["FGSM"] == (0.15, 4.53) and table2["C&W"] == (0.93, 3.03)
    assert list(table1) == list(presets.ATTACK_NAMES) == list(table2)


def test_build_attacks_types_and_epsilons():
    built = presets.build_attacks(presets.MNIST)
    assert isinstance(built["FGSM"][0], attacks.LinfFastGradientAttack)
    assert isinstance(built["I-FGSM"][0], attacks.LinfBasicIterativeAttack)
    assert isinstance(built["PGD2"][0], attacks.L2ProjectedGradientDescentAttack)
    assert built["PGD2"][0].smoother is None
    assert isinstance(built["sPGD2"][0], attacks.SmoothL2PGD)
    assert built["sPGD2"][0].smoother.alpha == 0.95
    assert isinstance(built["C&W"][0], attacks.L2CarliniWagnerAttack)
    assert built["C&W"][0].initial_const == 15.0 and built["C&W"][1] is None
    assert isinstance(built["sC&W"][0], attacks.SmoothCarliniWagnerL2)
    assert built["sC&W"][0].parametrization == "clip"
    assert built["PGD2"][1] == [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]


def test_select_replace_and_errors():
    small = presets.MNIST.select(["sC&W", "FGSM"])
    assert list(small.attacks) == ["FGSM", "sC&W"]
    changed = presets.MNIST.attacks["C&W"].replace(kwargs={"steps": 3})
    assert changed.kwargs["steps"] == 3 and changed.kwargs["initial_const"] == 15.0
    with pytest.raises(ValueError, match="subset"):
        presets.MNIST.select(["nope"])
    with pytest.raises(ValueError, match="one of"):
        presets.get_preset("cifar")
    with pytest.raises(TypeError):
        presets.build_attacks(3)
    with pytest.raises(ValueError, match="kind"):
        presets.AttackPreset("x", "bogus", {}, None)
