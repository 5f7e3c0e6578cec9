"""Oracle tests for the smoother's solvers: red-black CG / Chebyshev, exact, auto (scipy)."""

import math
import pathlib

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import tensorflow as tf

import tfsmooth
from tfsmooth.graphs import ImageGraph
from tfsmooth.smoothing import (
    ONES_TOL,
    SOLVERS,
    RedBlackLaplacian,
    Smoother,
    StencilLaplacian,
    chebyshev_iteration,
    chebyshev_steps,
    choose_solver,
)

ASSETS = pathlib.Path(tfsmooth.__file__).parent / "assets"
ITERATIVE = ["cg", "rb_cg", "rb_chebyshev"]


def smoother(alpha, **kwargs):
    """A Smoother run without XLA (compiling costs more than solving these tiny systems);
    the two XLA tests at the end cover the compiled path."""
    return Smoother(alpha, **({"jit_compile": False} | kwargs))


def photo(height, width, top=100, left=90):
    """A crop of the bundled astronaut photo, float64 in [0, 1], ``[1, H, W, 3]``."""
    from PIL import Image

    image = np.asarray(Image.open(ASSETS / "astronaut_256.png").convert("RGB"), np.float64)
    return image[None, top : top + height, left : left + width] / 255.0


def digits(count, size=28):
    with np.load(ASSETS / "mnist_sample.npz") as data:
        x = data["x_test"][:count, :size, :size].astype(np.float64) / 255.0
    return x[..., None]


def laplacian(guide_image, alpha, connectivity=4):
    w = ImageGraph(guide_image[None], connectivity=connectivity).to_scipy(0, normalized=True)
    return ((sp.eye(w.shape[0]) - alpha * w.astype(np.float64)) / (1 - alpha)).tocsc()


def full_residual(guide, alpha, x, b, connectivity=4):
    """max over systems of ||b - L x|| / ||b|| in float64, system layout ``[B, n, C]``."""
    worst = 0.0
    for i in range(guide.shape[0]):
        lap = laplacian(guide[i], alpha, connectivity)
        res = b[i].astype(np.float64) - lap @ x[i].astype(np.float64)
        worst = max(
            worst, float((np.linalg.norm(res, axis=0) / np.linalg.norm(b[i], axis=0)).max())
        )
    return worst


CASES = {
    "photo-16x16": lambda: photo(16, 16),
    "photo-15x21": lambda: photo(15, 21),
    "digits-28x28": lambda: digits(2),
    "digits-13x9": lambda: digits(2)[:, 5:18, 9:18],
}


@pytest.mark.parametrize(
    "case, alpha",
    [
        ("photo-15x21", 0.997),
        ("photo-16x16", 0.95),
        ("digits-28x28", 0.95),
        ("digits-13x9", 0.997),
    ],
)
def test_every_solver_matches_spsolve(case, alpha):
    guide = CASES[case]()
    rng = np.random.default_rng(0)
    z = rng.normal(size=guide.shape[:3] + (2,))
    expected = np.zeros_like(z)
    for i in range(guide.shape[0]):
        lap = laplacian(guide[i], alpha)
        expected[i] = spla.spsolve(lap, z[i].reshape(-1, 2)).reshape(z.shape[1:])
    assert set(SOLVERS) == {"auto", *ITERATIVE, "exact"}  # auto is rb_chebyshev here
    for solver in [*ITERATIVE, "exact"]:
        bound = smoother(alpha, solver=solver, tol=1e-10, max_iter=5000).bind(guide)
        result = bound.solve(z)
        # lambda_min(L_alpha) >= 1: the error is at most the residual.
        scale = np.linalg.norm(z.reshape(z.shape[0], -1, 2), axis=1).max()
        np.testing.assert_allclose(result.x.numpy(), expected, atol=2e-9 * scale, err_msg=solver)
        if solver != "exact":
            assert result.residual_norm.numpy().max() <= 1e-10 * 1.0001
            x, b = bound.to_systems(result.x).numpy(), bound.to_systems(z).numpy()
            true = full_residual(guide, alpha, x, b)
            assert true <= 1.5e-10, (solver, true)


@pytest.mark.parametrize("solver", ITERATIVE)
def test_tol_is_the_full_relative_residual(solver):
    guide = photo(24, 31).astype(np.float32)
    alpha = 0.997
    z = np.random.default_rng(1).normal(size=guide.shape).astype(np.float32)
    bound = smoother(alpha, solver=solver, max_iter=1000).bind(guide)
    b = bound.to_systems(z)
    for tol in (1e-2, 1e-4):
        result = bound.solve_systems(b, tol=tol)
        true = full_residual(guide.astype(np.float64), alpha, result.x.numpy(), b.numpy())
        assert true <= tol * 1.02 + 2e-5  # float32 rounding of x near 1e-5 at alpha = 0.997
        reported = result.residual_norm.numpy().max()
        assert reported <= tol * 1.0001
        assert abs(reported - true) <= 0.05 * tol + 2e-5
        its = result.iterations.numpy()
        if solver == "rb_chebyshev":  # the closed-form count, the same for every system
            assert np.all(its == bound.red_black.cold_steps(tol, 1000))
        else:
            assert np.all(its >= 1)


def test_reduced_solvers_need_fewer_iterations_than_full_cg():
    graph = ImageGraph(photo(32, 32))
    b = np.random.default_rng(2).normal(size=(1, 32 * 32, 3))
    full = StencilLaplacian(graph, 0.997).solve(b, tol=1e-2, max_iter=1000, jit_compile=False)
    rb = RedBlackLaplacian(graph, 0.997)
    reduced = rb.solve(b, method="cg", tol=1e-2, max_iter=1000, jit_compile=False)
    chebyshev = rb.solve(b, method="chebyshev", tol=1e-2, max_iter=1000, jit_compile=False)
    assert reduced.iterations.numpy().max() < 0.7 * full.iterations.numpy().max()
    expected = chebyshev_steps(1 - 0.997**2, 1.0, math.sqrt(1 + 0.997**2) / 1e-2)
    np.testing.assert_array_equal(chebyshev.iterations, expected)
    for result in (full, reduced, chebyshev):
        assert result.residual_norm.numpy().max() <= 1e-2


def test_chebyshev_steps_closed_form_and_max_iter():
    alpha = 0.997
    lower = 1 - alpha**2
    sigma = (1 + lower) / (1 - lower)
    for reduction in (10.0, 1e2, 1e4, 1e6):
        k = chebyshev_steps(lower, 1.0, reduction)
        assert math.cosh(k * math.acosh(sigma)) >= reduction
        assert math.cosh((k - 1) * math.acosh(sigma)) < reduction
    assert chebyshev_steps(lower, 1.0, 0.5) == 0
    guide = photo(8, 9)
    rb = smoother(alpha, solver="rb_chebyshev").bind(guide).red_black
    assert rb.cold_steps(1e-2, 1000) == 37  # sqrt(1 + alpha^2) / 1e-2 on S
    assert rb.cold_steps(1e-2, 20) == 20  # capped by max_iter
    assert rb.cold_steps(0.0, 17) == 17  # tol = 0 runs max_iter steps
    fixed = smoother(alpha, solver="rb_chebyshev", tol=0.0, max_iter=7).bind(guide)
    np.testing.assert_array_equal(fixed.solve(np.ones(guide.shape)).iterations, 7)
    with pytest.raises(ValueError, match="lower <= upper"):
        chebyshev_steps(1.0, 0.5, 10.0)
    with pytest.raises(ValueError, match="reduction"):
        chebyshev_steps(0.5, 1.0, math.inf)


def test_chebyshev_iteration_public_function():
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    eig = np.linspace(0.5, 2.0, 6)
    a = (q * eig) @ q.T
    b = rng.normal(size=(1, 6, 2))
    result = chebyshev_iteration(
        tf.linalg.LinearOperatorFullMatrix(a[None]), b, lower=0.5, upper=2.0, tol=1e-9
    )
    np.testing.assert_allclose(result.x[0], np.linalg.solve(a, b[0]), atol=1e-8)
    assert result.residual_norm.numpy().max() <= 1e-9
    assert result.iterations.numpy().max() == chebyshev_steps(0.5, 2.0, 1e9)
    warm = chebyshev_iteration(
        lambda x: tf.matmul(a[None], x), b, lower=0.5, upper=2.0, x0=result.x, tol=1e-9
    )
    assert warm.iterations.numpy().max() == 0


@pytest.mark.parametrize("height, width", [(1, 1), (1, 5), (3, 2), (3, 8), (4, 1), (4, 5)])
def test_red_black_blocks_and_odd_sizes(height, width):
    guide = np.random.default_rng(4).uniform(size=(2, height, width, 3))
    graph = ImageGraph(guide)
    rb = RedBlackLaplacian(graph, 0.9)
    x = np.random.default_rng(5).normal(size=(2, height, width, 2))
    red, black = rb.pack(x)
    np.testing.assert_array_equal(rb.unpack(red, black), x)
    # B x_b and B^T x_r against the blocks of scipy's normalized adjacency.
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    is_red = ((rows + cols) % 2 == 0).ravel()
    w = graph.to_scipy(1, normalized=True).toarray()
    x1 = x[1].reshape(-1, 2)
    expected_red = w[is_red][:, ~is_red] @ x1[~is_red]
    expected_black = w[~is_red][:, is_red] @ x1[is_red]
    on_red = rb.unpack(rb.black_to_red(black), tf.zeros_like(black)).numpy()[1].reshape(-1, 2)
    on_black = rb.unpack(tf.zeros_like(red), rb.red_to_black(red)).numpy()[1].reshape(-1, 2)
    np.testing.assert_allclose(on_red[is_red], expected_red, atol=1e-12)
    np.testing.assert_allclose(on_black[~is_red], expected_black, atol=1e-12)
    b = x.reshape(2, -1, 2)
    for method in ("cg", "chebyshev"):
        result = rb.solve(b, method=method, tol=1e-11, max_iter=500, jit_compile=False)
        for i in range(2):
            lap = laplacian(guide[i], 0.9)
            np.testing.assert_allclose(
                result.x[i], spla.spsolve(lap, b[i]).reshape(-1, 2), atol=1e-9
            )


@pytest.mark.parametrize(
    "solver, per_channel", [("rb_cg", False), ("rb_chebyshev", False), ("auto", True)]
)
def test_custom_gradient_on_tiny_images(solver, per_channel):
    guide = photo(5, 7)[..., : 2 if per_channel else 1]
    kwargs = {"solver": solver, "tol": 1e-11, "max_iter": 500, "per_channel": per_channel}
    bound = smoother(0.95, **kwargs).bind(guide)
    z = tf.constant(np.random.default_rng(6).normal(size=guide.shape))
    weights = tf.constant(np.random.default_rng(7).normal(size=guide.shape))

    def loss(signal):
        return tf.reduce_sum(weights * bound(signal) ** 2)

    analytic, numeric = tf.test.compute_gradient(loss, [z])
    np.testing.assert_allclose(analytic[0], numeric[0], rtol=1e-5, atol=1e-6)


def test_chebyshev_backward_is_the_exact_adjoint_of_its_forward():
    """A cold Chebyshev solve is a fixed polynomial: one symmetric linear map M, to rounding."""
    guide = photo(12, 11).astype(np.float32)
    bound = smoother(0.997, solver="rb_chebyshev", tol=1e-2).bind(guide)
    rng = np.random.default_rng(8)
    a, b = (rng.normal(size=(1, 132, 3)).astype(np.float32) for _ in range(2))
    m_a = bound.solve_systems(tf.constant(a)).x.numpy()
    m_b = bound.solve_systems(tf.constant(b)).x.numpy()
    lhs, rhs = np.sum(m_a * b, axis=1), np.sum(a * m_b, axis=1)
    np.testing.assert_allclose(lhs, rhs, rtol=2e-6)
    # Linear: M(2a - 3b) = 2 M a - 3 M b (CG is not: its steps depend on b).
    m_mix = bound.solve_systems(tf.constant(2 * a - 3 * b)).x.numpy()
    np.testing.assert_allclose(m_mix, 2 * m_a - 3 * m_b, atol=2e-5 * np.abs(m_mix).max())
    # s_hat is deflated by the constants, F = Mean + D^-1 M (I - Mean) with D = diag(s(1)):
    # the forward is that map, and the gradient of <w, s_hat(z)> is its exact adjoint
    # F^T w = Mean w + (I - Mean) M (w / s(1)).
    z = tf.constant(rng.normal(size=guide.shape).astype(np.float32))
    w = tf.constant(rng.normal(size=guide.shape).astype(np.float32))
    zs = bound.to_systems(z).numpy()
    ones = bound.ones_response.numpy()
    zc = zs - zs.mean(axis=1, keepdims=True)
    forward = zs.mean(axis=1, keepdims=True) + bound.solve_systems(tf.constant(zc)).x / ones
    np.testing.assert_allclose(bound.to_systems(bound(z)), forward, rtol=1e-6, atol=1e-7)
    with tf.GradientTape() as tape:
        tape.watch(z)
        value = tf.reduce_sum(w * bound(z))
    grad = bound.to_systems(tape.gradient(value, z))
    ws = bound.to_systems(w).numpy()
    solved = bound.solve_systems(tf.constant(ws / ones)).x.numpy()
    expected = solved - solved.mean(axis=1, keepdims=True) + ws.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(grad, expected, rtol=1e-6, atol=1e-7)
    # ... and <grad, dz> equals the change of the loss along dz, to float32 rounding.
    dz = tf.constant(rng.normal(size=guide.shape).astype(np.float32))
    change = tf.reduce_sum(w * bound(dz))
    np.testing.assert_allclose(tf.reduce_sum(grad * bound.to_systems(dz)), change, rtol=1e-5)


@pytest.mark.parametrize("solver", ITERATIVE)
def test_grad_tol_sets_the_backward_solve_only(solver):
    """grad_tol: the forward map is unchanged, the gradient is the deflated adjoint applied with
    a backward solve to relative residual grad_tol (checked against the exact inverse)."""
    guide = photo(16, 15)
    rng = np.random.default_rng(12)
    z = tf.constant(rng.normal(size=guide.shape))
    w = tf.constant(rng.normal(size=guide.shape))

    def value_and_grad(**kwargs):
        bound = smoother(0.997, solver=solver, tol=1e-9, max_iter=3000, **kwargs).bind(guide)
        with tf.GradientTape() as tape:
            tape.watch(z)
            out = bound(z)
            loss = tf.reduce_sum(w * out)
        return out.numpy(), tape.gradient(loss, z).numpy(), bound

    out_tight, grad_tight, bound = value_and_grad()
    out_loose, grad_loose, _ = value_and_grad(grad_tol=0.05)
    np.testing.assert_array_equal(out_loose, out_tight)  # the forward solve is untouched
    # The tight gradient is the exact adjoint F^T w = mean(w) + (I - mean) L^-1 (w / s(1)).
    ws = bound.to_systems(w).numpy()[0]
    ones = bound.ones_response.numpy()[0]
    solved = spla.spsolve(laplacian(guide[0], 0.997), ws / ones)
    exact = solved - solved.mean(axis=0) + ws.mean(axis=0)
    tight = bound.to_systems(tf.constant(grad_tight)).numpy()[0]
    loose = bound.to_systems(tf.constant(grad_loose)).numpy()[0]
    np.testing.assert_allclose(tight, exact, rtol=1e-6, atol=1e-8)
    # The loose backward solve is not the tight one, but it meets its residual: the solved part
    # y of the gradient satisfies ||L y - w/s(1)|| <= grad_tol ||w/s(1)|| per channel.
    assert np.abs(loose - exact).max() > 1e-4 * np.abs(exact).max()
    lap = laplacian(guide[0], 0.997)
    # loose = x - mean(x) + mean(w) with x the backward solve, so x = y + m 1 for y below and an
    # unknown constant m: the best m can only lower the residual that x itself meets.
    y = loose - ws.mean(axis=0)
    for c in range(ws.shape[1]):
        rhs = ws[:, c] / ones[:, 0]
        lap_y, lap_1 = lap @ y[:, c], lap @ np.ones(len(y))
        m = np.dot(rhs - lap_y, lap_1) / np.dot(lap_1, lap_1)
        residual = np.linalg.norm(rhs - lap_y - m * lap_1) / np.linalg.norm(rhs)
        assert residual <= 0.05 * 1.01, residual


def test_grad_tol_validation_and_config():
    for bad in (-1.0, "1e-2", True, float("nan")):
        with pytest.raises(ValueError, match="grad_tol"):
            Smoother(0.9, grad_tol=bad)
    plain = Smoother(0.9)
    assert plain.grad_tol is None and "grad_tol" not in plain.get_config()
    loose = Smoother(0.9, grad_tol=1e-2)
    config = loose.get_config()
    assert config["grad_tol"] == 1e-2 and "grad_tol=0.01" in repr(loose)
    assert Smoother(**config).get_config() == config


@pytest.mark.parametrize("solver", ["rb_chebyshev", "rb_cg", "cg", "exact"])
def test_constant_preserved_at_alpha_0997(solver):
    guide = photo(32, 29).astype(np.float32)
    bound = smoother(0.997, solver=solver, tol=1e-6, max_iter=5000).bind(guide)
    constant = np.full(guide.shape, 0.37, np.float32)
    np.testing.assert_allclose(bound(constant).numpy(), constant, rtol=1e-5)


@pytest.mark.parametrize("solver", ["rb_chebyshev", "rb_cg", "cg"])
@pytest.mark.parametrize("budget", [{"tol": 1e-2, "max_iter": 50}, {"tol": 0, "max_iter": 5}])
def test_constant_preserved_at_loose_tolerance(solver, budget):
    """Deflation: only z - mean(z) goes through the solver, so constants stay constant (to 1e-5)
    at the paper's 50-iteration budget and even at 5 iterations, per channel."""
    guide = photo(32, 29).astype(np.float32)
    bound = smoother(0.997, solver=solver, **budget).bind(guide)
    constant = np.broadcast_to(np.array([0.37, -1.5, 0.0], np.float32), guide.shape)
    np.testing.assert_allclose(bound(constant).numpy(), constant, rtol=1e-5, atol=1e-6)
    # ... while the non-constant part is still smoothed: s_hat(c + z) = c + s_hat(z).
    z = np.random.default_rng(3).normal(size=guide.shape).astype(np.float32)
    np.testing.assert_allclose(
        bound(constant + z).numpy(), constant + bound(z).numpy(), rtol=1e-4, atol=1e-4
    )


@pytest.mark.parametrize("solver", ITERATIVE)
def test_ones_response_solved_to_1e6_whatever_tol(solver):
    guide = photo(20, 17)
    bound = smoother(0.997, solver=solver, tol=0.5, max_iter=3).bind(guide)
    s1 = bound.ones_response.numpy()[0, :, 0]
    lap = laplacian(guide[0], 0.997)
    residual = np.linalg.norm(1.0 - lap @ s1) / math.sqrt(s1.size)
    assert residual <= ONES_TOL * 1.01


@pytest.mark.parametrize("solver", ["rb_cg", "rb_chebyshev"])
def test_warm_start_red_black(solver):
    guide = photo(14, 13).astype(np.float32)
    bound = smoother(0.997, solver=solver, tol=1e-3, max_iter=1000).bind(guide)
    rng = np.random.default_rng(9)
    z = rng.normal(size=guide.shape).astype(np.float32)
    z2 = z + 0.05 * rng.normal(size=guide.shape).astype(np.float32)
    first = bound.smooth(z)
    cold = bound.smooth(z2)
    warm = bound.smooth(z2, x0=first.output)
    assert warm.iterations.numpy().max() < 0.8 * cold.iterations.numpy().max()
    assert warm.residual_norm.numpy().max() <= 1e-3 * 1.0001
    np.testing.assert_allclose(warm.output, cold.output, atol=5e-3)


def test_auto_choice_per_channel_and_connectivity_8():
    assert Smoother(0.9).solver == "auto"
    assert Smoother(0.9).resolved_solver == "rb_chebyshev"
    assert choose_solver(8, "stencil") == "cg" and choose_solver(4, "sparse") == "cg"
    guide = photo(9, 10)
    z = np.random.default_rng(10).normal(size=guide.shape)
    for kwargs, expected_solver in (
        ({"per_channel": True}, "rb_chebyshev"),
        ({"connectivity": 8}, "cg"),
        ({"operator": "sparse"}, "cg"),
    ):
        bound = smoother(0.95, tol=1e-10, max_iter=5000, **kwargs).bind(guide)
        assert bound.solver == expected_solver
        out = bound(z).numpy()
        for c in range(3):
            g = guide[0, ..., c : c + 1] if kwargs.get("per_channel") else guide[0]
            lap = laplacian(g, 0.95, kwargs.get("connectivity", 4))
            s_z = spla.spsolve(lap, z[0, ..., c].ravel())
            s_1 = spla.spsolve(lap, np.ones(lap.shape[0]))
            np.testing.assert_allclose(out[0, ..., c].ravel(), s_z / s_1, atol=1e-8)


def test_bad_solver_names_and_combinations():
    with pytest.raises(ValueError, match=r"`solver` must be one of \('auto', 'cg'"):
        Smoother(0.9, solver="chebyshev")
    with pytest.raises(ValueError, match="connectivity=4"):
        Smoother(0.9, solver="rb_chebyshev", connectivity=8)
    with pytest.raises(ValueError, match="operator='stencil'"):
        Smoother(0.9, solver="rb_cg", operator="sparse")
    with pytest.raises(ValueError, match="connectivity=4"):
        RedBlackLaplacian(ImageGraph(tf.zeros([1, 3, 3, 1]), connectivity=8), 0.9)
    with pytest.raises(TypeError, match="ImageGraph"):
        RedBlackLaplacian("graph", 0.9)
    rb = RedBlackLaplacian(ImageGraph(tf.zeros([1, 3, 3, 1])), 0.9)
    with pytest.raises(ValueError, match="method"):
        rb.solve(tf.zeros([1, 9, 1]), method="jacobi")
    with pytest.raises(ValueError, match="tol"):
        rb.solve(tf.zeros([1, 9, 1]), tol=-1.0)
    with pytest.raises(ValueError, match=r"\[G, 9, C\]"):
        rb.solve(tf.zeros([1, 8, 1]))
    with pytest.raises(ValueError, match="x0"):
        rb.solve(tf.zeros([1, 9, 1]), x0=tf.zeros([1, 9, 2]))
    with pytest.raises(TypeError, match="rhs"):
        rb.solve(tf.zeros([1, 9, 1], tf.int32))


def test_red_black_xla_and_graph_agree():
    graph = ImageGraph(photo(13, 12).astype(np.float32))
    rb = RedBlackLaplacian(graph, 0.99)
    b = tf.constant(np.random.default_rng(11).normal(size=(1, 156, 3)).astype(np.float32))
    for method in ("cg", "chebyshev"):
        fast = rb.solve(b, method=method, tol=1e-5, max_iter=300)
        slow = rb.solve(b, method=method, tol=1e-5, max_iter=300, jit_compile=False)
        np.testing.assert_allclose(fast.x, slow.x, atol=1e-5)
        np.testing.assert_array_equal(fast.iterations, slow.iterations)


def test_smoother_bound_inside_an_xla_function():
    """Bind and smooth inside one compiled, attack-like function (auto: rb_chebyshev)."""
    guide = photo(13, 12).astype(np.float32)
    z = tf.constant(np.random.default_rng(12).normal(size=guide.shape).astype(np.float32))
    config = {"tol": ONES_TOL, "max_iter": 5000}  # one compiled solve for s(1) and z alike

    @tf.function(jit_compile=True)
    def inside_xla(g, signal):
        with tf.GradientTape() as tape:
            tape.watch(signal)
            out = Smoother(0.99, **config).bind(g)(signal)
            value = tf.reduce_sum(out * g)
        return out, tape.gradient(value, signal)

    out, grad = inside_xla(guide, z)
    bound = smoother(0.99, **config).bind(guide)
    np.testing.assert_allclose(out, bound(z), atol=1e-5)
    expected = bound.solve_systems(bound.to_systems(guide) / bound.ones_response).x
    np.testing.assert_allclose(bound.to_systems(grad), expected, atol=1e-5)


@pytest.mark.parametrize("solver", ITERATIVE)
@pytest.mark.parametrize("per_channel", [False, True])
def test_fused_glue_equals_the_op_by_op_path(solver, per_channel):
    """With XLA the deflation glue and the solve run as one compiled computation each way; it
    computes what the op-by-op path computes: output, statistics, gradient, warm starts."""
    guide = photo(12, 11).astype(np.float32)
    rng = np.random.default_rng(13)
    z, z2, up = (tf.constant(rng.normal(size=guide.shape).astype(np.float32)) for _ in range(3))
    config = {"solver": solver, "tol": 1e-4, "grad_tol": 1e-2, "per_channel": per_channel}
    results = []
    for jit in (True, False):
        bound = Smoother(0.997, jit_compile=jit, **config).bind(guide)
        assert bound._glue_solver(None)._fused is jit
        first = bound.smooth(z)
        grad0 = bound.to_systems(up)  # a gradient guess of the right shape
        with tf.GradientTape() as tape:
            tape.watch(z2)
            second = bound.smooth(z2, x0=first.output, grad_x0=bound.from_systems(grad0, 3))
            value = tf.reduce_sum(second.output * up)
        results.append((first, second, tape.gradient(value, z2)))
    (f1, s1, g1), (f2, s2, g2) = results
    for a, b in ((f1, f2), (s1, s2)):
        np.testing.assert_allclose(a.output, b.output, atol=2e-5)
        np.testing.assert_array_equal(a.iterations, b.iterations)
        np.testing.assert_allclose(a.residual_norm, b.residual_norm, rtol=1e-3, atol=1e-7)
    np.testing.assert_allclose(g1, g2, atol=2e-5 * float(np.abs(g2).max()))
    assert s1.iterations.numpy().max() > 0


def test_stencil_laplacian_consistency_with_red_black_split():
    """(1 - alpha) L = [[I, -alpha B], [-alpha B^T, I]] in red-black order."""
    guide = photo(6, 7)
    graph = ImageGraph(guide)
    rb = RedBlackLaplacian(graph, 0.9)
    x = np.random.default_rng(12).normal(size=(1, 6, 7, 1))
    red, black = rb.pack(x)
    a = tf.constant(0.9, tf.float64)
    split = rb.unpack(red - a * rb.black_to_red(black), black - a * rb.red_to_black(red))
    full = StencilLaplacian(graph, 0.9).apply_images(tf.constant(x)) * (1 - 0.9)
    np.testing.assert_allclose(split, full, atol=1e-12)


@pytest.mark.parametrize("shape", [(6, 7), (5, 4), (1, 6), (7, 1)])
def test_schur_stencil_equals_block_product(shape):
    """The 9-point stencil of S equals I - alpha^2 B B^T applied block by block."""
    guide = np.random.default_rng(13).uniform(size=(2, *shape, 3))
    rb = RedBlackLaplacian(ImageGraph(guide), 0.97)
    red, _ = rb.pack(np.random.default_rng(14).normal(size=(2, *shape, 2)))
    blocks = red - 0.97**2 * rb.black_to_red(rb.red_to_black(red))
    np.testing.assert_allclose(rb.schur(red), blocks, atol=1e-12)
