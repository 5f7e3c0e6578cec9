"""Oracle tests for L_alpha, CG and the smoother (scipy / analytic references)."""

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import tensorflow as tf

from tfsmooth.graphs import ImageGraph
from tfsmooth.smoothing import (
    EXACT_MAX_VERTICES,
    Smoother,
    SparseLaplacian,
    StencilLaplacian,
    conjugate_gradient,
    stencil_matvec,
)

SHAPES = [(6, 6, 1), (9, 7, 3), (16, 12, 1), (32, 32, 3)]
DTYPES = [np.float32, np.float64]


def guides(shape, dtype, batch=2, seed=0):
    return np.random.default_rng(seed).uniform(size=(batch,) + shape).astype(dtype)


def reference_laplacian(guide_image, alpha, **graph_kwargs):
    """L_alpha of one image by scipy, from the graph's own W (checked against eq. 5 elsewhere)."""
    graph = ImageGraph(guide_image[None], **graph_kwargs)
    w = graph.to_scipy(0).astype(np.float64)
    d = np.asarray(w.sum(axis=1)).ravel()
    inv = sp.diags(np.where(d > 0, d, 1.0) ** -0.5)
    n = w.shape[0]
    return ((sp.eye(n) - alpha * (inv @ w @ inv)) / (1 - alpha)).tocsc()


def rtol_for(dtype):
    return 1e-4 if dtype == np.float32 else 1e-10


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("connectivity", [4, 8])
def test_stencil_and_sparse_matvec_equal_scipy(shape, dtype, connectivity):
    g = guides(shape, dtype)
    graph = ImageGraph(g, connectivity=connectivity)
    x = np.random.default_rng(1).normal(size=(2, shape[0] * shape[1], 2)).astype(dtype)
    for operator in (StencilLaplacian(graph, 0.9), SparseLaplacian(graph, 0.9)):
        y = operator.matmul(x).numpy()
        assert y.dtype == dtype
        for b in range(2):
            expected = reference_laplacian(g[b], 0.9, connectivity=connectivity) @ x[b].astype(
                float
            )
            np.testing.assert_allclose(y[b], expected, rtol=rtol_for(dtype), atol=rtol_for(dtype))


def test_stencil_matvec_raw():
    x = tf.reshape(tf.range(12.0), [1, 3, 4, 1])
    stencil = tf.ones([1, 3, 4, 1])
    # offset (0, 1): the right neighbour, 0 outside.
    y = stencil_matvec(x, stencil, ((0, 1),))[0, :, :, 0].numpy()
    np.testing.assert_array_equal(y, [[1, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]])


@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.95, 0.997])
def test_laplacian_symmetric_positive_definite(alpha):
    graph = ImageGraph(guides((7, 6, 3), np.float64), connectivity=8)
    dense = StencilLaplacian(graph, alpha).to_dense().numpy()
    np.testing.assert_allclose(dense, np.transpose(dense, (0, 2, 1)), atol=1e-14)
    eig = np.linalg.eigvalsh(dense)
    # Spectrum of W_n is in [-1, 1]: eigenvalues of L_alpha in [1, (1 + alpha) / (1 - alpha)].
    assert eig.min() >= 1 - 1e-10
    assert eig.max() <= (1 + alpha) / (1 - alpha) + 1e-8
    np.testing.assert_allclose(dense, SparseLaplacian(graph, alpha).to_dense().numpy(), atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("tol", [1e-3, 1e-6])
def test_cg_matches_spsolve_within_tolerance(shape, dtype, tol):
    if dtype == np.float32 and tol < 1e-5:
        pytest.skip("float32 cannot reach that residual")
    alpha = 0.95
    g = guides(shape, dtype)
    operator = StencilLaplacian(ImageGraph(g), alpha)
    b = np.random.default_rng(2).normal(size=(2, shape[0] * shape[1], shape[2])).astype(dtype)
    result = conjugate_gradient(operator, b, max_iter=1000, tol=tol)
    assert result.x.dtype == dtype
    assert np.all(result.residual_norm.numpy() <= tol * 1.0001)
    assert np.all(result.iterations.numpy() >= 1)
    for i in range(2):
        lap = reference_laplacian(g[i], alpha)
        for c in range(shape[2]):
            exact = spla.spsolve(lap, b[i, :, c].astype(float))
            # lambda_min(L_alpha) >= 1, so ||x - x*|| <= ||r|| <= tol ||b||.
            bound = tol * np.linalg.norm(b[i, :, c]) + 1e-3 * (dtype == np.float32)
            assert np.linalg.norm(result.x[i, :, c].numpy() - exact) <= bound * 1.01


def test_cg_zero_rhs_warm_start_and_callable_operator():
    operator = StencilLaplacian(ImageGraph(guides((8, 8, 1), np.float64)), 0.9)
    b = np.random.default_rng(3).normal(size=(2, 64, 2))
    b[1, :, 0] = 0.0
    cold = conjugate_gradient(operator.matmul, b, max_iter=500, tol=1e-8)
    np.testing.assert_array_equal(cold.x[1, :, 0], 0.0)
    assert cold.iterations[1, 0] == 0 and cold.residual_norm[1, 0] == 0
    # A warm start at the solution of a slightly different right-hand side needs fewer iterations.
    b2 = b + 0.01 * np.random.default_rng(4).normal(size=b.shape)
    cold2 = conjugate_gradient(operator, b2, max_iter=500, tol=1e-8)
    warm2 = conjugate_gradient(operator, b2, x0=cold.x, max_iter=500, tol=1e-8)
    assert np.all(warm2.iterations.numpy() <= cold2.iterations.numpy())
    assert warm2.iterations.numpy().sum() < cold2.iterations.numpy().sum()
    np.testing.assert_allclose(warm2.x, cold2.x, atol=1e-6)
    # tol=0 runs exactly max_iter iterations.
    fixed = conjugate_gradient(operator, b2, max_iter=7, tol=0)
    np.testing.assert_array_equal(fixed.iterations.numpy(), 7)


def test_cg_bad_input():
    operator = StencilLaplacian(ImageGraph(tf.zeros([1, 3, 3, 1])), 0.5)
    with pytest.raises(ValueError, match="rank 3"):
        conjugate_gradient(operator, tf.zeros([9, 1]))
    with pytest.raises(ValueError, match="max_iter"):
        conjugate_gradient(operator, tf.zeros([1, 9, 1]), max_iter=0)
    with pytest.raises(ValueError, match="tol"):
        conjugate_gradient(operator, tf.zeros([1, 9, 1]), tol=-1.0)
    with pytest.raises(ValueError, match="x0"):
        conjugate_gradient(operator, tf.zeros([1, 9, 1]), x0=tf.zeros([1, 9, 2]))
    with pytest.raises(TypeError, match="rhs"):
        conjugate_gradient(operator, tf.zeros([1, 9, 1], tf.int32))
    with pytest.raises(TypeError, match="operator"):
        conjugate_gradient("L", tf.zeros([1, 9, 1]))


# -- the smoother -----------------------------------------------------------------------------

SMOOTHERS = [
    {"solver": "cg", "tol": 1e-9, "max_iter": 2000},
    {"solver": "cg", "operator": "sparse", "tol": 1e-9, "max_iter": 2000},
    {"solver": "exact"},
    {"solver": "cg", "tol": 1e-9, "max_iter": 2000, "per_channel": True},
    {"solver": "exact", "per_channel": True, "kernel": "gaussian", "connectivity": 8},
]


def reference_smooth(guide, z, alpha, per_channel=False, **graph_kwargs):
    out = np.zeros_like(z, dtype=np.float64)
    for b in range(guide.shape[0]):
        for c in range(z.shape[-1]):
            g = guide[b, ..., c : c + 1] if per_channel else guide[b]
            lap = reference_laplacian(g, alpha, **graph_kwargs)
            s_z = spla.spsolve(lap, z[b, ..., c].ravel().astype(float))
            s_1 = spla.spsolve(lap, np.ones(lap.shape[0]))
            out[b, ..., c] = (s_z / s_1).reshape(z.shape[1:3])
    return out


@pytest.mark.parametrize("config", SMOOTHERS, ids=lambda c: "-".join(map(str, c.values())))
@pytest.mark.parametrize("shape", [(6, 6, 3), (11, 8, 3)])
def test_smoother_matches_scipy(config, shape):
    guide = guides(shape, np.float64)
    z = np.random.default_rng(5).normal(size=guide.shape)
    smoother = Smoother(0.9, **config)
    out = smoother.bind(guide)(z).numpy()
    graph_kwargs = {k: config[k] for k in ("kernel", "connectivity") if k in config}
    expected = reference_smooth(guide, z, 0.9, config.get("per_channel", False), **graph_kwargs)
    np.testing.assert_allclose(out, expected, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("config", SMOOTHERS, ids=lambda c: "-".join(map(str, c.values())))
@pytest.mark.parametrize("dtype", DTYPES)
def test_constants_preserved_and_linear(config, dtype):
    guide = guides((10, 9, 3), dtype)
    bound = Smoother(0.95, **config).bind(guide)
    atol = 1e-4 if dtype == np.float32 else 1e-8
    constant = np.full(guide.shape, 0.37, dtype)
    np.testing.assert_allclose(bound(constant).numpy(), constant, atol=atol)
    rng = np.random.default_rng(6)
    a, b = rng.normal(size=guide.shape).astype(dtype), rng.normal(size=guide.shape).astype(dtype)
    lhs = bound(2.0 * a - 3.0 * b).numpy()
    rhs = 2.0 * bound(a).numpy() - 3.0 * bound(b).numpy()
    assert lhs.dtype == dtype
    np.testing.assert_allclose(lhs, rhs, atol=20 * atol)


@pytest.mark.parametrize("config", SMOOTHERS, ids=lambda c: "-".join(map(str, c.values())))
def test_custom_gradient_numeric_and_analytic(config):
    guide = guides((5, 6, 3), np.float64, batch=1)
    bound = Smoother(0.9, **config).bind(guide)
    z = tf.constant(np.random.default_rng(7).normal(size=guide.shape))
    weights = tf.constant(np.random.default_rng(8).normal(size=guide.shape))

    @tf.function
    def loss(signal):
        return tf.reduce_sum(weights * bound(signal) ** 2)

    analytic, numeric = tf.test.compute_gradient(loss, [z])
    np.testing.assert_allclose(analytic[0], numeric[0], rtol=1e-5, atol=1e-6)

    # Against the closed form: grad = L^{-1}(g / s(1)) with g = 2 w * s_hat(z).
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = loss(z)
    grad = tape.gradient(value, z).numpy()
    upstream = (2 * weights * bound(z)).numpy()
    for c in range(3):
        g = guide[0, ..., c : c + 1] if config.get("per_channel") else guide[0]
        kwargs = {k: config[k] for k in ("kernel", "connectivity") if k in config}
        lap = reference_laplacian(g, 0.9, **kwargs)
        s_1 = spla.spsolve(lap, np.ones(lap.shape[0]))
        expected = spla.spsolve(lap, upstream[0, ..., c].ravel() / s_1)
        np.testing.assert_allclose(grad[0, ..., c].ravel(), expected, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("jit_compile", [True, False])
def test_gradient_memory_path_is_custom(jit_compile):
    """The backward pass is a solve, not autodiff through CG: no while-loop gradient is built."""
    guide = guides((8, 8, 1), np.float32)
    bound = Smoother(0.95, max_iter=30, tol=0, jit_compile=jit_compile).bind(guide)
    z = tf.random.normal(guide.shape)

    @tf.function
    def grad(signal):
        with tf.GradientTape() as tape:
            tape.watch(signal)
            out = tf.reduce_sum(bound(signal) ** 2)
        return tape.gradient(out, signal)

    graph_def = grad.get_concrete_function(z).graph.as_graph_def()
    op_types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:  # the compiled CG solves are nested functions
        op_types |= {node.op for node in function.node_def}
    assert "StatelessWhile" in op_types or "While" in op_types
    # Autodiff through a while loop would add TensorList stacks to record the iterations.
    assert not any("TensorList" in t for t in op_types)


@pytest.mark.parametrize("config", SMOOTHERS[:3], ids=["cg", "sparse", "exact"])
def test_eager_equals_tf_function_and_xla(config):
    guide = guides((12, 10, 3), np.float32)
    z = tf.constant(np.random.default_rng(9).normal(size=guide.shape).astype(np.float32))
    smoother = Smoother(0.95, **(config | {"max_iter": 40, "tol": 1e-5}))

    def fwd_bwd(g, signal):
        bound = smoother.bind(g)
        with tf.GradientTape() as tape:
            tape.watch(signal)
            out = bound(signal)
            ramp = tf.reshape(tf.linspace(0.0, 1.0, tf.size(out)), tf.shape(out))
            value = tf.reduce_sum(out * ramp)
        return out, tape.gradient(value, signal)

    eager = fwd_bwd(guide, z)
    graph = tf.function(fwd_bwd)(guide, z)
    np.testing.assert_allclose(graph[0], eager[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(graph[1], eager[1], rtol=1e-5, atol=1e-5)
    if config.get("operator") != "sparse":  # XLA has no sparse matmul kernel on CPU
        xla = tf.function(fwd_bwd, jit_compile=True)(guide, z)
        np.testing.assert_allclose(xla[0], eager[0], atol=1e-4)
        np.testing.assert_allclose(xla[1], eager[1], atol=1e-4)


def test_warm_start_forward_and_backward():
    guide = guides((24, 24, 3), np.float32)
    bound = Smoother(0.997, max_iter=500, tol=1e-4).bind(guide)
    rng = np.random.default_rng(10)
    z = tf.constant(rng.normal(size=guide.shape).astype(np.float32))
    z2 = z + 0.05 * tf.constant(rng.normal(size=guide.shape).astype(np.float32))
    w = tf.constant(rng.normal(size=guide.shape).astype(np.float32))

    def run(signal, **kwargs):
        with tf.GradientTape() as tape:
            tape.watch(signal)
            result = bound.smooth(signal, **kwargs)
            value = tf.reduce_sum(w * result.output)
        return result, tape.gradient(value, signal)

    first, grad1 = run(z)
    cold, cold_grad = run(z2)
    warm, warm_grad = run(z2, x0=first.output, grad_x0=grad1)
    assert warm.iterations.numpy().sum() < 0.7 * cold.iterations.numpy().sum()
    np.testing.assert_allclose(warm.output, cold.output, atol=2e-3)
    # The gradient of a linear loss does not depend on z: a warm start at it needs (almost) no
    # iteration. The previous gradient differs from the previous backward solve by the constant
    # that the deflation's projection removes (~tol), so a few steps run: equal to within tol.
    scale = np.abs(cold_grad).max()
    np.testing.assert_allclose(warm_grad, cold_grad, atol=2e-4 * scale)
    # The unnormalized solve with statistics.
    solved = bound.solve(z2, x0=first.output)
    assert solved.x.shape == z2.shape and solved.iterations.shape == (2, 3)


def test_shared_graph_smooths_any_number_of_channels():
    guide = guides((6, 7, 3), np.float64)
    bound = Smoother(0.9, solver="exact").bind(guide)
    z = np.random.default_rng(11).normal(size=(2, 6, 7, 5))
    out = bound(z).numpy()
    for c in range(5):
        np.testing.assert_allclose(
            out[..., c], bound(z[..., c : c + 1]).numpy()[..., 0], atol=1e-12
        )


def test_alpha_zero_is_identity_and_smoothing_reduces_energy():
    guide = guides((10, 10, 1), np.float64)
    z = np.random.default_rng(12).normal(size=guide.shape)
    np.testing.assert_allclose(Smoother(0.0, solver="exact").bind(guide)(z), z, atol=1e-12)
    graph = ImageGraph(guide)
    out = Smoother(0.95, solver="exact").bind(guide)(z).numpy()
    lap = sp.eye(100) - graph.to_scipy(1, normalized=True)

    def energy(x):
        x = x[1, ..., 0].ravel()
        return x @ (lap @ x) / (x @ x)

    assert energy(out) < 0.3 * energy(z)


def test_exact_size_limit_and_repr_config():
    side = int(np.ceil(np.sqrt(EXACT_MAX_VERTICES + 1)))
    with pytest.raises(ValueError, match="exact"):
        Smoother(0.9, solver="exact").bind(tf.zeros([1, side, side, 1]))
    smoother = Smoother(0.95, max_iter=10)
    assert smoother.get_config()["max_iter"] == 10
    assert repr(smoother).startswith("Smoother(alpha=0.95")
    assert "BoundSmoother" in repr(smoother.bind(tf.zeros([1, 3, 3, 1])))


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"alpha": 1.0}, ValueError, r"alpha.*\[0, 1\)"),
        ({"alpha": -0.1}, ValueError, "alpha"),
        ({"alpha": "0.5"}, TypeError, "alpha"),
        ({"sigma": 0}, ValueError, "sigma"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"max_iter": 2.5}, TypeError, "max_iter"),
        ({"tol": -1e-3}, ValueError, "tol"),
        ({"kernel": "box"}, ValueError, "kernel"),
        ({"connectivity": 3}, ValueError, "connectivity"),
        ({"solver": "lu"}, ValueError, "solver"),
        ({"operator": "dense"}, ValueError, "operator"),
        ({"per_channel": 1}, TypeError, "per_channel"),
    ],
)
def test_smoother_bad_hyperparameters(kwargs, error, match):
    args = {"alpha": 0.5} | kwargs
    alpha = args.pop("alpha")
    with pytest.raises(error, match=match):
        Smoother(alpha, **args)


def test_bound_smoother_bad_input():
    smoother = Smoother(0.9)
    guide = tf.zeros([2, 5, 5, 3])
    bound = smoother.bind(guide)
    with pytest.raises(ValueError, match="rank 4"):
        smoother.bind(tf.zeros([5, 5, 3]))
    with pytest.raises(TypeError, match="floating point"):
        smoother.bind(tf.zeros([1, 5, 5, 3], tf.uint8))
    with pytest.raises(ValueError, match="finite"):
        smoother.bind(np.full((1, 5, 5, 3), np.inf, np.float32))
    with pytest.raises(ValueError, match=r"\[0.0, 1.0\]"):
        smoother.bind(np.full((1, 5, 5, 3), 255.0, np.float32))
    with pytest.raises(ValueError, match="does not match the bound guide"):
        bound(tf.zeros([2, 6, 5, 3]))
    with pytest.raises(ValueError, match="does not match the bound guide"):
        bound(tf.zeros([3, 5, 5, 3]))
    with pytest.raises(ValueError, match="rank 4"):
        bound(tf.zeros([2, 25, 3]))
    with pytest.raises(TypeError, match="floating point"):
        bound(tf.zeros([2, 5, 5, 3], tf.int32))
    with pytest.raises(ValueError, match="finite"):
        bound(np.full((2, 5, 5, 3), np.nan, np.float32))
    with pytest.raises(ValueError, match="per_channel"):
        Smoother(0.9, per_channel=True).bind(guide)(tf.zeros([2, 5, 5, 1]))


def test_xla_and_plain_cg_agree():
    guide = guides((13, 11, 3), np.float64)
    z = np.random.default_rng(13).normal(size=guide.shape)
    fast = Smoother(0.99, max_iter=300, tol=1e-10).bind(guide).smooth(z)
    slow = Smoother(0.99, max_iter=300, tol=1e-10, jit_compile=False).bind(guide).smooth(z)
    np.testing.assert_allclose(fast.output, slow.output, atol=1e-9)
    np.testing.assert_array_equal(fast.iterations, slow.iterations)
    with pytest.raises(TypeError, match="jit_compile"):
        Smoother(0.9, jit_compile="yes")
