r"""Chebyshev iteration for symmetric positive definite systems with known spectral bounds.

When the spectrum of :math:`A` is known to lie in :math:`[\lambda_{\min}, \lambda_{\max}]`, the
Chebyshev iteration applies the residual polynomial of degree :math:`k` that is smallest on that
interval:

.. math::

    r_k = p_k(A)\, r_0, \qquad
    p_k(\lambda) = \frac{T_k\big((\theta - \lambda)/\delta\big)}{T_k(\theta/\delta)}, \qquad
    \lVert r_k \rVert \le \frac{\lVert r_0 \rVert}{T_k(\theta/\delta)},

with :math:`\theta = (\lambda_{\max} + \lambda_{\min})/2`, :math:`\delta = (\lambda_{\max} -
\lambda_{\min})/2` and :math:`T_k` the Chebyshev polynomial of the first kind. Unlike CG it needs
no dot product: the iterate after :math:`k` steps from :math:`x_0 = 0` is :math:`q_k(A)\, b` for a
polynomial :math:`q_k` fixed by the bounds and :math:`k` alone. So the map :math:`b \mapsto x` is
*linear and symmetric*, its adjoint is itself, and the number of steps needed for a residual
reduction follows in closed form (:func:`chebyshev_steps`). Signals are ``[batch, n, channels]``
(:func:`chebyshev_iteration`) or any layout (:func:`chebyshev_loop`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.smoothing.cg import CGResult, Operator, _as_callable

__all__ = ["chebyshev_iteration", "chebyshev_loop", "chebyshev_steps"]


def _check_bounds(lower: float, upper: float) -> tuple[float, float]:
    for value, name in ((lower, "lower"), (upper, "upper")):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"`{name}` must be a number, got {value!r}")
    if not (0 < lower <= upper < math.inf):
        raise ValueError(
            f"the spectral bounds must satisfy 0 < lower <= upper < inf, got lower={lower!r}, "
            f"upper={upper!r}"
        )
    return float(lower), float(upper)


def chebyshev_steps(lower: float, upper: float, reduction: float) -> int:
    r"""Smallest :math:`k` with :math:`T_k(\theta/\delta) \ge` ``reduction``.

    That many Chebyshev steps reduce the residual norm by at least the factor ``reduction``
    whatever the right-hand side, for any SPD matrix with spectrum in ``[lower, upper]``.

    Args:
        lower: lower spectral bound, > 0.
        upper: upper spectral bound, >= ``lower``.
        reduction: wanted factor :math:`\lVert r_0\rVert / \lVert r_k\rVert`, > 0.

    Returns:
        The number of steps (0 if ``reduction <= 1``; 1 if ``lower == upper``).

    Example:
        >>> chebyshev_steps(1 - 0.997**2, 1.0, 1e2), chebyshev_steps(0.5, 0.5, 1e6)
        (35, 1)
    """
    lower, upper = _check_bounds(lower, upper)
    if (
        isinstance(reduction, bool)
        or not isinstance(reduction, (int, float))
        or not 0 < reduction < math.inf
    ):
        raise ValueError(f"`reduction` must be a finite number > 0, got {reduction!r}")
    if reduction <= 1:
        return 0
    if lower == upper:
        return 1
    sigma = (upper + lower) / (upper - lower)
    return math.ceil(math.acosh(reduction) / math.acosh(sigma) - 1e-9)


def chebyshev_loop(
    apply: Callable[[tf.Tensor], tf.Tensor],
    x: tf.Tensor,
    r: tf.Tensor,
    steps: int | tf.Tensor,
    lower: float,
    upper: float,
) -> tuple[tf.Tensor, tf.Tensor]:
    """``steps`` Chebyshev steps from ``x`` with residual ``r = b - A x``, any signal layout.

    Saad, *Iterative Methods for Sparse Linear Systems*, 2nd ed., algorithm 12.1. The same
    scalar recursion runs for every system, so all of them see the same polynomial.

    Args:
        apply: the operator :math:`A`, mapping signals to signals of the same shape.
        x: starting point.
        r: its residual.
        steps: number of steps (Python int or int32 scalar tensor), >= 0.
        lower: lower bound of the spectrum of :math:`A`, > 0.
        upper: upper bound, >= ``lower``.

    Returns:
        ``(x, r)``: the iterate and its residual (from the recursion).

    Example:
        >>> a = tf.constant([[2.0, 0.0], [0.0, 1.0]])
        >>> b = tf.constant([[1.0], [1.0]])
        >>> x, r = chebyshev_loop(lambda v: a @ v, tf.zeros_like(b), b, 12, 1.0, 2.0)
        >>> x.numpy().ravel().round(5)
        array([0.5, 1. ], dtype=float32)
    """
    lower, upper = _check_bounds(lower, upper)
    dtype = x.dtype
    theta = 0.5 * (upper + lower)
    delta = 0.5 * (upper - lower)
    d = r * tf.constant(1.0 / theta, dtype)
    if delta == 0.0:  # A = theta I: one step is exact
        sigma = tf.constant(1.0, dtype)
        rho = tf.constant(0.0, dtype)
        inv_delta = tf.constant(0.0, dtype)
    else:
        sigma = tf.constant(theta / delta, dtype)
        rho = tf.constant(delta / theta, dtype)
        inv_delta = tf.constant(1.0 / delta, dtype)
    exact = delta == 0.0

    def body(i, x, r, d, rho):
        x = x + d
        r = r - apply(d)
        if exact:
            return i + 1, x, r, tf.zeros_like(d), rho
        rho_next = 1.0 / (2.0 * sigma - rho)
        d = (rho_next * rho) * d + (2.0 * rho_next * inv_delta) * r
        return i + 1, x, r, d, rho_next

    steps = tf.convert_to_tensor(steps, tf.int32)
    _, x, r, _, _ = tf.while_loop(
        lambda i, *_: i < steps, body, (tf.constant(0), x, r, d, rho), parallel_iterations=1
    )
    return x, r


def chebyshev_iteration(
    operator: Operator,
    rhs: tf.Tensor,
    *,
    lower: float,
    upper: float,
    x0: tf.Tensor | None = None,
    max_iter: int = 1000,
    tol: float = 1e-5,
    name: str | None = None,
) -> CGResult:
    r"""Solves :math:`A x = b` by Chebyshev iteration, batched over ``[batch, ·, channels]``.

    The number of steps is the closed-form count that guarantees the relative residual
    :math:`\lVert b - A x\rVert \le \mathrm{tol}\,\lVert b\rVert` for every system
    (:func:`chebyshev_steps` of :math:`\max \lVert r_0\rVert / (\mathrm{tol}\,\lVert b\rVert)`
    over the systems), at most ``max_iter``; ``tol=0`` runs exactly ``max_iter`` steps.

    Args:
        operator: SPD :math:`A` with spectrum in ``[lower, upper]``: a
            ``tf.linalg.LinearOperator`` ``[batch, n, n]`` or a callable on ``[batch, n, channels]``.
        rhs: right-hand sides, float ``[batch, n, channels]``.
        lower: lower spectral bound, > 0.
        upper: upper spectral bound, >= ``lower``.
        x0: optional starting point, shape of ``rhs``.
        max_iter: steps at most, >= 1.
        tol: relative residual tolerance, >= 0.
        name: optional name scope.

    Returns:
        A :class:`~tfsmooth.smoothing.CGResult` ``(x, residual_norm, iterations)``; the residual
        comes from the recursion.

    Example:
        >>> a = tf.linalg.LinearOperatorFullMatrix([[[4.0, 1.0], [1.0, 3.0]]])
        >>> lo, hi = 3.5 - 0.5 * 5 ** 0.5, 3.5 + 0.5 * 5 ** 0.5  # its eigenvalues
        >>> result = chebyshev_iteration(a, tf.constant([[[1.0], [2.0]]]), lower=lo, upper=hi)
        >>> result.x.numpy().ravel().round(4)
        array([0.0909, 0.6364], dtype=float32)
    """
    apply = _as_callable(operator)
    lower, upper = _check_bounds(lower, upper)
    max_iter = v.check_int_at_least(max_iter, "max_iter", 1)
    tol = v.check_tolerance(tol, "tol")
    with tf.name_scope(name or "chebyshev_iteration"):
        b = v.as_float_tensor(rhs, "rhs")
        if b.shape.rank != 3:
            raise ValueError(
                f"`rhs` must have rank 3 [batch, n, channels], got shape {tuple(b.shape)}"
            )
        b_norm = tf.norm(b, axis=1)
        nonzero = b_norm > 0
        if x0 is None:
            x, r = tf.zeros_like(b), b
        else:
            x = v.as_float_tensor(x0, "x0", dtype=b.dtype)
            if not x.shape.is_compatible_with(b.shape):
                raise ValueError(
                    f"`x0` must have the shape of `rhs` {tuple(b.shape)}, got {tuple(x.shape)}"
                )
            x = tf.where(nonzero[:, None, :], x, tf.zeros_like(x))
            r = b - apply(x)
        steps = dynamic_steps(tf.norm(r, axis=1), b_norm, nonzero, lower, upper, tol, max_iter)
        x, r = chebyshev_loop(apply, x, r, steps, lower, upper)
        safe = tf.where(nonzero, b_norm, tf.ones_like(b_norm))
        residual = tf.where(nonzero, tf.norm(r, axis=1) / safe, tf.zeros_like(b_norm))
        iterations = tf.where(nonzero, steps, 0) * tf.ones_like(b_norm, tf.int32)
        return CGResult(x, residual, iterations)


def dynamic_steps(
    r_norm: tf.Tensor,
    b_norm: tf.Tensor,
    nonzero: tf.Tensor,
    lower: float,
    upper: float,
    tol: float,
    max_iter: int,
) -> tf.Tensor:
    """Steps (int32 scalar) that bring every system's ``r_norm`` below ``tol * b_norm``."""
    if tol == 0:
        return tf.constant(max_iter, tf.int32)
    dtype = r_norm.dtype
    safe = tf.where(nonzero, b_norm, tf.ones_like(b_norm)) * tf.constant(tol, dtype)
    ratio = tf.where(nonzero, r_norm / safe, tf.zeros_like(r_norm))
    worst = tf.maximum(tf.reduce_max(ratio), tf.constant(1.0, dtype))
    if lower == upper:
        return tf.cast(worst > 1.0, tf.int32)
    rate = math.acosh((upper + lower) / (upper - lower))
    # acosh in float64 keeps the count exact for huge ratios.
    count = tf.math.ceil(tf.math.acosh(tf.cast(worst, tf.float64)) / rate - 1e-9)
    return tf.cast(tf.minimum(count, float(max_iter)), tf.int32)
