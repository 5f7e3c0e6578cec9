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


def _small_smoother_case(tmp_path):
    """A tiny smoother forward+backward exported by xla_export, its inputs saved in float32."""
    import tensorflow as tf

    from tfsmooth.smoothing import Smoother

    export = _load("xla_export")
    bound = Smoother(0.997).bind(tf.random.stateless_uniform([2, 12, 13, 3], seed=[0, 1]))
    fn = export.smoother_fb(bound)
    z = tf.random.stateless_normal([2, 12, 13, 3], seed=[2, 3])
    w = tf.random.stateless_normal([2, 12, 13, 3], seed=[4, 5])
    captures = tf.function(fn, jit_compile=True).get_concrete_function(z, w).captured_inputs
    arrays = {"z": z.numpy(), "w": w.numpy()}
    arrays.update({f"capture_{i}": c.numpy() for i, c in enumerate(captures)})
    np.savez(tmp_path / "arrays.npz", **arrays)

    def spec(key):
        return {"make": "array", "file": "arrays.npz", "key": key}

    record = export.export_case(
        fn, [z, w], [spec("z"), spec("w")], lambda i, _: spec(f"capture_{i}"), tmp_path, "s_b2"
    )
    return record, [t.numpy() for t in fn(z, w)]


def test_xla_export_records_every_parameter_of_the_hlo(tmp_path):
    export = _load("xla_export")
    header = "HloModule m, entry_computation_layout={(f32[2,3]{1,0}, s32[], pred[4,1]{1,0})->f32[]}"
    assert export.entry_parameters(header) == [([2, 3], "float32"), ([], "int32"), ([4, 1], "bool")]
    record, _ = _small_smoother_case(tmp_path)
    # z, w and the smoother's arrays (red/black/Schur weights, s(1)), in the HLO's order.
    assert [p["key"] for p in record["parameters"]][:2] == ["z", "w"]
    assert len(record["parameters"]) == 6
    saved = np.load(tmp_path / "arrays.npz")
    for p in record["parameters"]:
        assert list(saved[p["key"]].shape) == p["shape"] and p["dtype"] == "float32"
    assert (tmp_path / "s_b2.hlo.pb").stat().st_size > 0


def test_xla_replay_computes_what_tensorflow_computes(tmp_path):
    pytest.importorskip("jax")
    import keras
    import tensorflow as tf

    export, replay = _load("xla_export"), _load("xla_replay")
    record, expected = _small_smoother_case(tmp_path)
    compiled = replay.Compiled(
        (tmp_path / "s_b2.hlo.pb").read_bytes(), replay._jax().devices("cpu")[0]
    )
    outputs = compiled(compiled.put(replay.make_parameters(record, tmp_path, seed=0)))
    for got, want in zip(outputs, expected):
        np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5 * np.abs(want).max())

    # A network: its parameters drawn by the replay and assigned to the Keras variables.
    net = keras.Sequential(
        [
            keras.Input((8, 8, 3)),
            keras.layers.Conv2D(4, 3),
            keras.layers.BatchNormalization(),
            keras.layers.Flatten(),
            keras.layers.Dense(5),
        ]
    )
    fn = export.model_fb(lambda x: net(x, training=False))
    x = tf.random.stateless_uniform([2, 8, 8, 3], seed=[6, 7])
    image = {"make": "uniform", "name": "images", "low": 0.0, "high": 1.0}
    record = export.export_case(
        fn, [x], [image], export.variable_spec(net.variables), tmp_path, "m_b2"
    )
    values = replay.make_parameters(record, tmp_path, seed=3)
    by_name = {p["name"]: v for p, v in zip(record["parameters"][1:], values[1:])}
    for variable in net.variables:
        variable.assign(by_name[variable.path])
    assert all(v.min() >= p["low"] for p, v in zip(record["parameters"][1:], values[1:]))
    compiled = replay.Compiled(
        (tmp_path / "m_b2.hlo.pb").read_bytes(), replay._jax().devices("cpu")[0]
    )
    (got,) = compiled(compiled.put(values))
    want = fn(tf.constant(values[0])).numpy()
    np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=1e-5 * np.abs(want).max())
