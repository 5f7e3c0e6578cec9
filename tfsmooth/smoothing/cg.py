r"""Batched conjugate gradient for symmetric positive definite systems, in pure TensorFlow.

Solves :math:`A x = b` for many independent right-hand sides at once. Signals have shape
``[batch, n, channels]``: each ``(batch, channel)`` pair is its own system (its own ``b``, its own
step sizes, its own stopping test), all sharing one call of the operator per iteration. A system
stops when its residual satisfies :math:`\lVert r\rVert \le \mathrm{tol}\,\lVert b\rVert` or after
``max_iter`` iterations; the loop ends when every system has stopped. Runs eagerly, inside
:func:`tf.function` and under XLA (``jit_compile=True``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, TypeAlias

import tensorflow as tf

from tfsmooth import _validation as v

__all__ = ["CGResult", "cg_loop", "conjugate_gradient"]

Operator: TypeAlias = Callable[[tf.Tensor], tf.Tensor] | tf.linalg.LinearOperator


class CGResult(NamedTuple):
    """Result of :func:`conjugate_gradient`.

    Attributes:
        x: solution, same shape and dtype as ``rhs``.
        residual_norm: relative residual :math:`\\lVert b - A x\\rVert / \\lVert b\\rVert` per
            system, shape ``[batch, channels]`` (0 where ``b = 0``), from the CG recursion.
        iterations: iterations used per system, int32 ``[batch, channels]``.
    """

    x: tf.Tensor
    residual_norm: tf.Tensor
    iterations: tf.Tensor


def _as_callable(operator: Operator) -> Callable[[tf.Tensor], tf.Tensor]:
    if isinstance(operator, tf.linalg.LinearOperator):
        return operator.matmul
    if callable(operator):
        return operator
    raise TypeError(
        f"`operator` must be a tf.linalg.LinearOperator or a callable, got {type(operator).__name__}"
    )


def cg_loop(
    apply: Callable[[tf.Tensor], tf.Tensor],
    x: tf.Tensor,
    r: tf.Tensor,
    threshold: tf.Tensor,
    nonzero: tf.Tensor,
    max_iter: int,
    *,
    axes: tuple[int, ...] = (1,),
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """The CG iteration from ``x`` with residual ``r = b - A x``, for any signal layout.

    Each system is the set of entries that share the indices outside ``axes`` (the axes summed
    by the dot products). A system iterates while it is ``nonzero`` and its residual norm is
    above ``threshold`` (absolute), at most ``max_iter`` times.

    Args:
        apply: the operator, mapping signals to signals of the same shape.
        x: starting point.
        r: its residual.
        threshold: absolute residual norm at which a system stops, shape of the reduced axes
            removed (e.g. ``[batch, channels]`` for ``axes=(1,)`` on ``[batch, n, channels]``).
        nonzero: bool, same shape as ``threshold``; ``False`` systems never iterate.
        max_iter: iterations at most.
        axes: the axes of one system's vector.

    Returns:
        ``(x, rs, iterations)``: the solution, the squared residual norm from the recursion and
        the iterations per system (int32), the last two of the shape of ``threshold``.

    Example:
        >>> a = tf.constant([[4.0, 1.0], [1.0, 3.0]])
        >>> b = tf.constant([[[1.0], [2.0]]])  # one system [1, n=2, 1]
        >>> x, rs, its = cg_loop(lambda v: tf.einsum("ij,bjc->bic", a, v), tf.zeros_like(b), b,
        ...                      tf.constant([[1e-6]]), tf.constant([[True]]), 10)
        >>> x.numpy().ravel().round(4), int(its[0, 0])
        (array([0.0909, 0.6364], dtype=float32), 2)
    """

    def dot(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(a * b, axis=axes)

    def expand(s: tf.Tensor) -> tf.Tensor:
        for axis in sorted(axes):
            s = tf.expand_dims(s, axis)
        return s

    rs = dot(r, r)
    active = tf.logical_and(nonzero, tf.sqrt(rs) > threshold)
    iterations = tf.zeros(tf.shape(rs), tf.int32)
    p = r
    zero = tf.zeros_like(rs)

    def cond(i, x, r, p, rs, active, iterations):
        return tf.logical_and(i < max_iter, tf.reduce_any(active))

    def body(i, x, r, p, rs, active, iterations):
        ap = apply(p)
        p_ap = dot(p, ap)
        step = tf.where(active, rs / tf.where(active, p_ap, tf.ones_like(p_ap)), zero)
        x = x + expand(step) * p
        r = r - expand(step) * ap
        rs_new = dot(r, r)
        beta = tf.where(active, rs_new / tf.where(active, rs, tf.ones_like(rs)), zero)
        p = r + expand(beta) * p
        iterations = iterations + tf.cast(active, tf.int32)
        rs = tf.where(active, rs_new, rs)
        active = tf.logical_and(active, tf.sqrt(rs_new) > threshold)
        return i + 1, x, r, p, rs, active, iterations

    _, x, _, _, rs, _, iterations = tf.while_loop(
        cond,
        body,
        (tf.constant(0), x, r, p, rs, active, iterations),
        maximum_iterations=max_iter,
    )
    return x, rs, iterations


def conjugate_gradient(
    operator: Operator,
    rhs: tf.Tensor,
    *,
    x0: tf.Tensor | None = None,
    max_iter: int = 50,
    tol: float = 1e-5,
    name: str | None = None,
) -> CGResult:
    r"""Solves :math:`A x = b` by conjugate gradient, batched over ``[batch, ·, channels]``.

    Args:
        operator: symmetric positive definite :math:`A`: a ``tf.linalg.LinearOperator`` of shape
            ``[batch, n, n]`` or a callable mapping ``[batch, n, channels]`` to the same shape.
        rhs: right-hand sides :math:`b`, float ``[batch, n, channels]``.
        x0: optional warm start, same shape as ``rhs`` (zeros by default).
        max_iter: maximum number of iterations, >= 1.
        tol: relative residual tolerance, >= 0 (0 runs exactly ``max_iter`` iterations).
        name: optional name scope.

    Returns:
        A :class:`CGResult` ``(x, residual_norm, iterations)``.

    Example:
        >>> a = tf.linalg.LinearOperatorFullMatrix([[[4.0, 1.0], [1.0, 3.0]]],
        ...                                        is_self_adjoint=True, is_positive_definite=True)
        >>> result = conjugate_gradient(a, tf.constant([[[1.0], [2.0]]]), max_iter=10)
        >>> result.x.numpy().ravel().round(4), int(result.iterations[0, 0])
        (array([0.0909, 0.6364], dtype=float32), 2)
    """
    apply = _as_callable(operator)
    max_iter = v.check_int_at_least(max_iter, "max_iter", 1)
    tol = v.check_tolerance(tol, "tol")
    with tf.name_scope(name or "conjugate_gradient"):
        b = v.as_float_tensor(rhs, "rhs")
        if b.shape.rank != 3:
            raise ValueError(
                f"`rhs` must have rank 3 [batch, n, channels], got shape {tuple(b.shape)}"
            )
        dtype = b.dtype
        b_norm = tf.norm(b, axis=1)  # [batch, channels]
        nonzero = b_norm > 0
        if x0 is None:
            x = tf.zeros_like(b)
            r = b
        else:
            x = v.as_float_tensor(x0, "x0", dtype=dtype)
            if not x.shape.is_compatible_with(b.shape):
                raise ValueError(
                    f"`x0` must have the shape of `rhs` {tuple(b.shape)}, got {tuple(x.shape)}"
                )
            # b = 0 has the solution 0 whatever the guess.
            x = tf.where(nonzero[:, None, :], x, tf.zeros_like(x))
            r = b - apply(x)
        threshold = tf.constant(tol, dtype) * b_norm
        x, rs, iterations = cg_loop(apply, x, r, threshold, nonzero, max_iter, axes=(1,))
        safe_norm = tf.where(nonzero, b_norm, tf.ones_like(b_norm))
        residual = tf.where(nonzero, tf.sqrt(rs) / safe_norm, tf.zeros_like(rs))
        return CGResult(x, residual, iterations)
