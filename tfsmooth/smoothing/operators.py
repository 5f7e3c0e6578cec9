r"""The regularized Laplacian :math:`L_\alpha` of an image graph as ``tf.linalg.LinearOperator``.

.. math::

    L_\alpha = \frac{I - \alpha \mathcal{W}}{1 - \alpha}, \qquad
    \mathcal{W} = D^{-1/2} W D^{-1/2},

symmetric positive definite for :math:`\alpha \in [0, 1)` (the eigenvalues of :math:`\mathcal{W}`
lie in :math:`[-1, 1]`, so those of :math:`L_\alpha` lie in
:math:`[1, \frac{1+\alpha}{1-\alpha}]`). Both operators have shape ``[batch, n, n]`` with
``n = height * width`` and act on signals ``[batch, n, channels]``.

- :class:`StencilLaplacian` applies :math:`\mathcal{W}` as a stencil: one padding and ``K``
  shifted multiply-adds on ``[batch, height, width, channels]``. This is the fast path.
- :class:`SparseLaplacian` multiplies by a block-diagonal ``tf.sparse.SparseTensor``; it is the
  reference path (and what :meth:`to_dense` uses).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.graphs import ImageGraph
from tfsmooth.smoothing.cg import CGResult, conjugate_gradient

__all__ = ["SparseLaplacian", "StencilLaplacian", "stencil_matvec"]


def stencil_matvec(
    x: tf.Tensor, stencil: tf.Tensor, offsets: tuple[tuple[int, int], ...]
) -> tf.Tensor:
    """``y_i = sum_k stencil[i, k] * x[i + offsets[k]]`` for images ``x`` ``[B, H, W, C]``.

    Args:
        x: signal ``[B, H, W, C]``.
        stencil: weights ``[B, H, W, K]`` (zero where the neighbour is outside the image).
        offsets: ``K`` neighbour offsets ``(d_row, d_col)`` with ``|d| <= 1``.
    """
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    padded = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
    total = None
    for k, (d_row, d_col) in enumerate(offsets):
        neighbour = tf.slice(padded, [0, 1 + d_row, 1 + d_col, 0], [-1, height, width, -1])
        term = stencil[..., k : k + 1] * neighbour
        total = term if total is None else total + term
    return total


class _Laplacian(tf.linalg.LinearOperator):
    """Shared parts of the two :math:`L_\\alpha` operators."""

    def __init__(self, graph: ImageGraph, alpha: float, name: str) -> None:
        self.graph = graph
        self.alpha = v.check_open_unit_interval(alpha, "alpha")
        self._height, self._width = graph.image_shape
        super().__init__(
            dtype=graph.weights.dtype,
            is_self_adjoint=True,
            is_positive_definite=True,
            is_non_singular=True,
            is_square=True,
            name=name,
        )

    @property
    def n_vertices(self) -> int:
        return self._height * self._width

    def _shape(self) -> tf.TensorShape:
        batch = self.graph.weights.shape[0]
        return tf.TensorShape([batch, self.n_vertices, self.n_vertices])

    def _shape_tensor(self) -> tf.Tensor:
        batch = tf.shape(self.graph.weights)[0]
        return tf.stack([batch, self.n_vertices, self.n_vertices])

    def _apply_systems(self, x: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError

    def _matmul(self, x: tf.Tensor, adjoint: bool = False, adjoint_arg: bool = False) -> tf.Tensor:
        if adjoint_arg:
            x = tf.linalg.adjoint(x)
        return self._apply_systems(x)  # symmetric: adjoint changes nothing

    def apply_images(self, images: tf.Tensor) -> tf.Tensor:
        """:math:`L_\\alpha x` for signals in image layout ``[B, H, W, C]``."""
        channels = tf.shape(images)[-1]
        flat = tf.reshape(images, [tf.shape(images)[0], self.n_vertices, channels])
        return tf.reshape(self._apply_systems(flat), tf.shape(images))


class StencilLaplacian(_Laplacian):
    r""":math:`L_\alpha` applied by stencil (pad + shifted multiply-adds).

    Args:
        graph: the :class:`~tfsmooth.graphs.ImageGraph`.
        alpha: regularization :math:`\alpha \in [0, 1)`.
        name: operator name.

    Example:
        >>> g = ImageGraph(tf.random.uniform([1, 4, 4, 3], seed=0))
        >>> op = StencilLaplacian(g, alpha=0.9)
        >>> op.shape, bool(np.allclose(op.to_dense(), tf.transpose(op.to_dense(), [0, 2, 1])))
        (TensorShape([1, 16, 16]), True)
    """

    def __init__(self, graph: ImageGraph, alpha: float, *, name: str = "StencilLaplacian") -> None:
        super().__init__(graph, alpha, name)
        # The (1 - alpha) scaling and the sign are folded into the stencil once.
        self._scaled_stencil = graph.normalized_weights() * (-self.alpha / (1.0 - self.alpha))
        self._diagonal = 1.0 / (1.0 - self.alpha)

    def apply_images(self, images: tf.Tensor) -> tf.Tensor:
        off_diagonal = stencil_matvec(images, self._scaled_stencil, self.graph.offsets)
        return images * tf.constant(self._diagonal, images.dtype) + off_diagonal

    def _apply_systems(self, x: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(x)
        images = tf.reshape(x, [shape[0], self._height, self._width, shape[-1]])
        return tf.reshape(self.apply_images(images), shape)

    def _to_dense(self) -> tf.Tensor:
        return _dense_laplacian(self.graph, self.alpha)

    def solve(
        self,
        rhs: tf.Tensor,
        *,
        x0: tf.Tensor | None = None,
        max_iter: int = 50,
        tol: float = 1e-4,
        jit_compile: bool = True,
    ) -> CGResult:
        """CG solve of :math:`L_\\alpha x = b` (``[B, n, C]``) in one compiled function.

        No gradient flows through it (see :class:`~tfsmooth.smoothing.BoundSmoother` for the
        differentiable smoother).

        With ``jit_compile=True`` the whole CG loop, stencil included, is compiled by XLA, which
        fuses the stencil, the dot products and the vector updates of an iteration into a few
        passes over memory (several times faster than op-by-op execution on CPU).

        Example:
            >>> g = ImageGraph(tf.random.uniform([1, 6, 6, 1], seed=0))
            >>> op = StencilLaplacian(g, 0.9)
            >>> b = tf.random.normal([1, 36, 2], seed=1)
            >>> fast = op.solve(b, tol=1e-6, max_iter=200).x
            >>> slow = conjugate_gradient(op, b, tol=1e-6, max_iter=200).x
            >>> bool(np.allclose(fast, slow, atol=1e-5))
            True
        """
        solver, (stencil, diagonal) = self.compiled_solver(max_iter, tol, jit_compile=jit_compile)
        # No gradient is defined through the solve (the smoother's custom gradient is another
        # solve); stopping it here keeps a watching tape from asking XLA for a gradient-ready
        # while loop.
        rhs = tf.stop_gradient(rhs)
        x0 = None if x0 is None else tf.stop_gradient(x0)
        return solver(tf.stop_gradient(stencil), diagonal, rhs, x0)

    def compiled_solver(
        self, max_iter: int, tol: float, *, jit_compile: bool = True
    ) -> tuple[Callable[..., CGResult], tuple[tf.Tensor, tf.Tensor]]:
        """The ``tf.function`` of :meth:`solve`, ``solver(*tensors, rhs, x0)`` (one per static
        configuration, cached), and its tensors; for callers that compile it with more work."""
        solver = _compiled_stencil_solver(
            self.graph.offsets, self._height, self._width, max_iter, float(tol), jit_compile
        )
        return solver, (self._scaled_stencil, tf.constant(self._diagonal, self.dtype))


@functools.lru_cache(maxsize=64)
def _compiled_stencil_solver(
    offsets: tuple[tuple[int, int], ...],
    height: int,
    width: int,
    max_iter: int,
    tol: float,
    jit_compile: bool,
) -> Callable[..., CGResult]:
    """A ``tf.function`` running CG with the stencil operator; one per static configuration."""

    def solve(
        stencil: tf.Tensor, diagonal: tf.Tensor, rhs: tf.Tensor, x0: tf.Tensor | None
    ) -> CGResult:
        def apply(x: tf.Tensor) -> tf.Tensor:
            images = tf.reshape(x, [tf.shape(x)[0], height, width, tf.shape(x)[2]])
            out = images * diagonal + stencil_matvec(images, stencil, offsets)
            return tf.reshape(out, tf.shape(x))

        return conjugate_gradient(apply, rhs, x0=x0, max_iter=max_iter, tol=tol)

    return tf.function(solve, jit_compile=jit_compile)


class SparseLaplacian(_Laplacian):
    r""":math:`L_\alpha` as a block-diagonal ``tf.sparse.SparseTensor`` (reference path).

    Args:
        graph: the :class:`~tfsmooth.graphs.ImageGraph`.
        alpha: regularization :math:`\alpha \in [0, 1)`.
        name: operator name.

    Example:
        >>> g = ImageGraph(tf.random.uniform([2, 3, 5, 1], seed=0))
        >>> x = tf.random.normal([2, 15, 2], seed=1)
        >>> a, b = SparseLaplacian(g, 0.5).matmul(x), StencilLaplacian(g, 0.5).matmul(x)
        >>> bool(np.allclose(a, b, atol=1e-6))
        True
    """

    def __init__(self, graph: ImageGraph, alpha: float, *, name: str = "SparseLaplacian") -> None:
        super().__init__(graph, alpha, name)
        adjacency = graph.to_sparse_tensor(normalized=True)  # [B, n, n]
        n = self.n_vertices
        batch = adjacency.dense_shape[0]
        scale = 1.0 / (1.0 - self.alpha)
        diag_idx = tf.range(batch * n)
        # Block-diagonal [B*n, B*n]: row (b, i) -> b * n + i.
        off_rows = adjacency.indices[:, 0] * n + adjacency.indices[:, 1]
        off_cols = adjacency.indices[:, 0] * n + adjacency.indices[:, 2]
        indices = tf.concat(
            [tf.stack([diag_idx, diag_idx], 1), tf.stack([off_rows, off_cols], 1)], axis=0
        )
        values = tf.concat(
            [
                tf.fill([tf.shape(diag_idx)[0]], tf.constant(scale, self.dtype)),
                adjacency.values * tf.constant(-self.alpha * scale, self.dtype),
            ],
            axis=0,
        )
        size = batch * n
        self.matrix = tf.sparse.reorder(
            tf.sparse.SparseTensor(indices, values, tf.stack([size, size]))
        )

    def _apply_systems(self, x: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(x)
        flat = tf.reshape(x, [-1, shape[-1]])
        return tf.reshape(tf.sparse.sparse_dense_matmul(self.matrix, flat), shape)

    def _to_dense(self) -> tf.Tensor:
        return _dense_laplacian(self.graph, self.alpha)


def _dense_laplacian(graph: ImageGraph, alpha: float) -> tf.Tensor:
    """Dense ``[B, n, n]`` blocks of :math:`L_\\alpha` (never the ``[B n, B n]`` matrix); XLA-friendly."""
    dtype = graph.weights.dtype
    adjacency = graph.to_dense(normalized=True)
    eye = tf.eye(graph.n_vertices, batch_shape=[1], dtype=dtype)
    scale = tf.constant(1.0 / (1.0 - alpha), dtype)
    return (eye - tf.constant(alpha, dtype) * adjacency) * scale
