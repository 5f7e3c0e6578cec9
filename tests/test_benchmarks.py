"""The benchmarks' own logic (no timing): paired comparison, the noise rule, rendering."""

import importlib.util
import json
import pathlib

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(
        f"bench_{name}", ROOT / "benchmarks" / f"{name}.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fidelity():
    return _load("solver_fidelity")


def test_compare_is_paired_over_the_images_both_fooled(fidelity):
    reference = {
        "success": np.array([True, True, False, True]),
        "l2": np.array([1.0, 2.0, 9.0, 4.0]),
    }
    other = {
        "success": np.array([True, False, False, True]),
        "l2": np.array([1.1, 7.0, 9.0, 4.0]),
        "seconds": 3.0,
    }
    row = fidelity.compare(reference, other)
    assert row["psuc"] == 0.5
    assert row["success_differs"] == 1
    assert row["mean_l2"] == pytest.approx(2.55)  # over other's successes
    assert row["mean_rel_change_l2"] == pytest.approx(0.05)  # images 0 and 3 only
    assert row["max_rel_change_l2"] == pytest.approx(0.1)


def _row(smoother, change, differs=0):
    return {
        "attack": "sC&W",
        "smoother": smoother,
        "psuc": 1.0,
        "mean_l2": 1.0,
        "success_differs": differs,
        "mean_rel_change_l2": change,
        "max_rel_change_l2": change,
        "seconds": 1.0,
    }


def test_noise_floor_sets_the_threshold(fidelity):
    settings = [
        {
            "setting": "with floor",
            "n": 4,
            "rows": [
                _row("x (reference)", 0.0),
                _row("y (noise floor)", 0.02),
                _row("a", 0.018),
                _row("b", 0.03),
                _row("c", 0.0, differs=1),
            ],
        },
        {"setting": "no floor", "n": 4, "rows": [_row("x (reference)", 0.0), _row("a", 0.018)]},
    ]
    goals = {g["what"]: g["met"] for g in fidelity.judge(settings)}
    assert goals == {
        "with floor sC&W [a] within noise": True,
        "with floor sC&W [b] within noise": False,
        "with floor sC&W [c] within noise": False,  # a different success is never noise
        "no floor sC&W [a] within noise": False,  # 1.8 % > the default 1 %
    }
    assert settings[0]["noise_threshold"] == 0.02 and settings[1]["noise_threshold"] == 0.01


@pytest.mark.parametrize("name", ["solver_fidelity.json", "solver_fidelity_imagenet.json"])
def test_committed_results_agree_with_the_rule_and_render(fidelity, name):
    result = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
    recorded = {g["what"]: g["met"] for g in result["goals"]}
    if any("noise floor" in r["smoother"] for s in result["settings"] for r in s["rows"]):
        assert {g["what"]: g["met"] for g in fidelity.judge(result["settings"])} == recorded
    text = fidelity.render(result)
    assert text.startswith("# Smooth attacks") and "| sC&W |" in text


def test_attack_steps_renders_old_and_new_results():
    steps = _load("attack_steps")
    for name in ("attack_steps.json", "attack_steps_224.json"):
        result = json.loads((ROOT / "benchmarks" / "results" / name).read_text())
        text = steps.render(result)
        assert "sC&W, default" in text and "ratio" in text
        for goal in result["goals"]:
            assert goal["met"] == (goal["ratio"] <= steps.GOAL_RATIO)


def test_kernel_variants_are_the_library_solve_and_results_render():
    import tensorflow as tf

    from tfsmooth.graphs import ImageGraph
    from tfsmooth.smoothing import RedBlackLaplacian, StencilLaplacian

    half = _load("kernel_variants")
    graph = ImageGraph(tf.random.stateless_uniform([2, 12, 13, 3], seed=[0, 1]))
    rb = RedBlackLaplacian(graph, half.ALPHA)
    rhs = tf.random.stateless_normal([2, 12 * 13, 3], seed=[2, 3])
    steps = rb.cold_steps(1e-3, 1000)
    weights = (rb.red_weights, rb.black_weights, rb.schur_weights)
    reference = rb.solve(rhs, method="chebyshev", max_iter=steps, tol=1e-3).x.numpy()
    x32 = half.chebyshev_kernel(12, 13, steps, "float32", "float32")(*weights, rhs).numpy()
    np.testing.assert_allclose(x32, reference, rtol=0, atol=1e-5 * np.abs(reference).max())
    stencil = StencilLaplacian(graph, half.ALPHA)
    assert half.true_residual(stencil, rhs, tf.constant(x32)) <= 1e-3
    # 16-bit vectors are scaled per system, so a tiny right-hand side does not underflow.
    small = rhs * 1e-6
    x16 = half.chebyshev_kernel(12, 13, steps, "float16", "float32")(*weights, small)
    assert half.true_residual(stencil, small, x16) <= 1e-2

    unrolled = half.chebyshev_kernel(12, 13, 3, "float32", "float32", unroll=True)(*weights, rhs)
    looped = half.chebyshev_kernel(12, 13, 3, "float32", "float32")(*weights, rhs)
    np.testing.assert_allclose(unrolled, looped, rtol=0, atol=1e-5 * np.abs(looped).max())

    result = json.loads((ROOT / "benchmarks" / "results" / "kernel_variants.json").read_text())
    for row in result["storage"]["rows"]:
        assert row["meets_tol"] == all(r <= row["tol"] for r in row["true_residual"].values())
    text = half.render_markdown(result)
    assert text.startswith("# Variants") and "| float16 | float32 |" in text
    assert "| unrolled |" in text
