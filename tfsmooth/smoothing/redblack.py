r"""Red-black (checkerboard) reduction of :math:`L_\alpha` on the 4-neighbour grid.

The 4-neighbour grid is bipartite: colour pixel :math:`(r, c)` *red* if :math:`r + c` is even and
*black* otherwise, and every edge joins a red and a black pixel. In that ordering

.. math::

    (1 - \alpha) L_\alpha = I - \alpha \mathcal{W} =
    \begin{pmatrix} I & -\alpha B \\ -\alpha B^\top & I \end{pmatrix},

with :math:`B` the red-to-black block of :math:`\mathcal{W}`. Eliminating the black pixels of
:math:`(I - \alpha\mathcal{W}) x = c`, :math:`c = (1-\alpha) b`, leaves the Schur complement on
the red pixels and a back-substitution:

.. math::

    S x_r = c_r + \alpha B c_b, \qquad S = I - \alpha^2 B B^\top, \qquad
    x_b = c_b + \alpha B^\top x_r .

Since :math:`\lVert B \rVert \le \lVert \mathcal{W} \rVert \le 1`, the spectrum of :math:`S` lies
in :math:`[1 - \alpha^2, 1]` (condition number :math:`1/(1-\alpha^2)`, about half that of
:math:`L_\alpha` near :math:`\alpha = 1`), and with the exact back-substitution the residual of
the full system equals that of the reduced one, so a tolerance on either means the same.
:math:`S` is solved by CG or by Chebyshev iteration with those closed-form bounds.

Layout: each colour is stored *packed*, channels first, ``[G, C, H, ceil(W / 2)]``: red pixel
:math:`(r, 2j + (r \bmod 2))` and black pixel :math:`(r, 2j + 1 - (r \bmod 2))` sit at
``[..., r, j]``. The horizontal neighbours of a packed pixel are at ``j`` and ``j - 1`` or
``j + 1`` depending on the row's parity, the vertical ones at ``j`` in the rows above and below,
so :math:`B x_b` and :math:`B^\top x_r` are four shifted multiply-adds on half-size arrays. Odd
widths leave one padding entry in some rows; its weights are zero, so it is a decoupled identity
row that stays zero.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.graphs import ImageGraph
from tfsmooth.graphs.image_graph import shift as _image_shift
from tfsmooth.smoothing.cg import CGResult, cg_loop
from tfsmooth.smoothing.chebyshev import chebyshev_loop, chebyshev_steps, dynamic_steps

__all__ = ["RB_METHODS", "RedBlackLaplacian"]

#: Iterations on the reduced system :math:`S`.
RB_METHODS = ("cg", "chebyshev")


def _even_rows(height: int) -> tf.Tensor:
    """Bool ``[H, 1]``: True on even rows (broadcasts against ``[G, C, H, Wh]``)."""
    return tf.constant((np.arange(height) % 2 == 0)[:, None])


def _pack(images: tf.Tensor, height: int, width: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``[G, H, W, C]`` to the red and black halves ``[G, C, H, ceil(W/2)]``."""
    half = (width + 1) // 2
    x = tf.transpose(images, [0, 3, 1, 2])
    if 2 * half != width:
        x = tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, 2 * half - width]])
    x = tf.reshape(x, tf.stack([tf.shape(x)[0], tf.shape(x)[1], height, half, 2]))
    even_cols, odd_cols = x[..., 0], x[..., 1]
    even = _even_rows(height)
    return tf.where(even, even_cols, odd_cols), tf.where(even, odd_cols, even_cols)


def _unpack(red: tf.Tensor, black: tf.Tensor, height: int, width: int) -> tf.Tensor:
    """Inverse of :func:`_pack`: ``[G, C, H, Wh]`` halves to ``[G, H, W, C]``."""
    half = (width + 1) // 2
    even = _even_rows(height)
    x = tf.stack([tf.where(even, red, black), tf.where(even, black, red)], axis=-1)
    x = tf.reshape(x, tf.stack([tf.shape(x)[0], tf.shape(x)[1], height, 2 * half]))
    return tf.transpose(x[..., :width], [0, 2, 3, 1])


def _shift(x: tf.Tensor, d: int, axis: int) -> tf.Tensor:
    """``y[i] = x[i + d]`` along ``axis`` (-1 or -2) of a rank-4 tensor, zero outside."""
    pad = [[0, 0]] * 4
    pad[axis] = [max(-d, 0), max(d, 0)]
    padded = tf.pad(x, pad)
    begin = [0, 0, 0, 0]
    begin[axis] = max(d, 0)
    return tf.slice(padded, begin, tf.shape(x))


def _cross(x: tf.Tensor, weights: tf.Tensor, even: tf.Tensor, to_red: bool) -> tf.Tensor:
    """:math:`B x` (black to red, ``to_red``) or :math:`B^\\top x` (red to black), packed."""
    # The other horizontal neighbour is at j - 1 on even rows for red pixels, j + 1 for black.
    d_even = -1 if to_red else 1
    other = tf.where(even, _shift(x, d_even, -1), _shift(x, -d_even, -1))
    return (
        weights[0] * x
        + weights[1] * other
        + weights[2] * _shift(x, 1, -2)
        + weights[3] * _shift(x, -1, -2)
    )


def _schur_stencil(normalized: tf.Tensor, alpha: float, height: int, width: int) -> tf.Tensor:
    """The 9-point stencil of :math:`S = I - \\alpha^2 B B^\\top` on packed red pixels.

    :math:`B B^\\top` is :math:`\\mathcal{W}^2` restricted to the red pixels: it joins a red pixel
    to itself and to the red pixels at offsets :math:`(0, \\pm 2)`, :math:`(\\pm 2, 0)` and
    :math:`(\\pm 1, \\pm 1)`, through the black pixels between them. In packed coordinates the
    offsets are ``(0, ±1)``, ``(±2, 0)``, ``(±1, 0)`` and ``(±1, other)``, the other column being
    ``j - 1`` on even rows and ``j + 1`` on odd ones.

    Args:
        normalized: stencil of :math:`\\mathcal{W}` ``[G, H, W, 4]`` (right, down, left, up).

    Returns:
        Weights ``[9, G, 1, H, ceil(W/2)]``: centre, ``(0, +1)``, ``(0, -1)``, ``(+2, 0)``,
        ``(-2, 0)``, ``(+1, j)``, ``(-1, j)``, ``(+1, other)``, ``(-1, other)``.
    """
    right, down, left, up = (normalized[..., k] for k in range(4))

    def at(w: tf.Tensor, d_row: int, d_col: int) -> tf.Tensor:
        return _image_shift(w, d_row, d_col)

    centre = right * right + down * down + left * left + up * up
    m = {
        (0, 2): right * at(right, 0, 1),
        (0, -2): left * at(left, 0, -1),
        (2, 0): down * at(down, 1, 0),
        (-2, 0): up * at(up, -1, 0),
        (1, 1): right * at(down, 0, 1) + down * at(right, 1, 0),
        (1, -1): left * at(down, 0, -1) + down * at(left, 1, 0),
        (-1, 1): right * at(up, 0, 1) + up * at(right, -1, 0),
        (-1, -1): left * at(up, 0, -1) + up * at(left, -1, 0),
    }
    order = [(0, 2), (0, -2), (2, 0), (-2, 0), (1, 1), (1, -1), (-1, 1), (-1, -1)]
    full = tf.stack([centre] + [m[o] for o in order], axis=-1)  # [G, H, W, 9]
    red, _ = _pack(full, height, width)  # [G, 9, H, Wh]
    names: list[object] = ["c", *order]
    k = {name: red[:, i : i + 1] for i, name in enumerate(names)}
    even = _even_rows(height)
    weights = [
        k["c"],
        k[(0, 2)],
        k[(0, -2)],
        k[(2, 0)],
        k[(-2, 0)],
        tf.where(even, k[(1, 1)], k[(1, -1)]),
        tf.where(even, k[(-1, 1)], k[(-1, -1)]),
        tf.where(even, k[(1, -1)], k[(1, 1)]),
        tf.where(even, k[(-1, -1)], k[(-1, 1)]),
    ]
    a2 = tf.constant(alpha * alpha, normalized.dtype)
    weights = [w * -a2 for w in weights]
    weights[0] = weights[0] + tf.constant(1.0, normalized.dtype)
    return tf.stack(weights)


def _apply_schur(y: tf.Tensor, weights: tf.Tensor, even: tf.Tensor) -> tf.Tensor:
    """:math:`S y` by the 9-point packed stencil (one pass, no intermediate)."""
    out = weights[0] * y
    out += weights[1] * _shift(y, 1, -1) + weights[2] * _shift(y, -1, -1)
    out += weights[3] * _shift(y, 2, -2) + weights[4] * _shift(y, -2, -2)
    for k, d_row in ((5, 1), (6, -1)):
        rows = _shift(y, d_row, -2)
        out += weights[k] * rows
        other = tf.where(even, _shift(rows, -1, -1), _shift(rows, 1, -1))
        out += weights[k + 2] * other
    return out


class RedBlackLaplacian:
    r"""The red-black split of :math:`L_\alpha` for a 4-neighbour graph, and its reduced solves.

    Args:
        graph: a 4-connected :class:`~tfsmooth.graphs.ImageGraph` (8-connectivity is not
            bipartite).
        alpha: regularization :math:`\alpha \in [0, 1)`.

    Attributes:
        red_weights: packed weights of :math:`B` (black to red), ``[4, G, 1, H, ceil(W/2)]``:
            the horizontal neighbour at ``j``, the other horizontal one, below, above.
        black_weights: the same for :math:`B^\top` (red to black).
        schur_weights: the 9-point stencil of :math:`S` on packed red pixels,
            ``[9, G, 1, H, ceil(W/2)]``.
        lower: lower spectral bound of :math:`S`, :math:`1 - \alpha^2`.
        upper: upper spectral bound of :math:`S`, 1.

    Example:
        >>> g = ImageGraph(tf.random.uniform([1, 5, 7, 3], seed=0))
        >>> rb = RedBlackLaplacian(g, 0.95)
        >>> b = tf.random.normal([1, 35, 3], seed=1)
        >>> x = rb.solve(b, tol=1e-5, max_iter=200).x
        >>> from tfsmooth.smoothing import StencilLaplacian
        >>> residual = b - StencilLaplacian(g, 0.95).matmul(x)
        >>> bool(tf.norm(residual) <= 1e-5 * tf.norm(b) * 1.01)
        True
    """

    def __init__(self, graph: ImageGraph, alpha: float) -> None:
        if not isinstance(graph, ImageGraph):
            raise TypeError(f"`graph` must be an ImageGraph, got {type(graph).__name__}")
        if graph.connectivity != 4:
            raise ValueError(
                "the red-black reduction needs a bipartite graph, i.e. connectivity=4, got "
                f"connectivity={graph.connectivity}"
            )
        self.graph = graph
        self.alpha = v.check_open_unit_interval(alpha, "alpha")
        self.height, self.width = graph.image_shape
        self.half_width = (self.width + 1) // 2
        self.dtype = graph.weights.dtype
        self.lower = 1.0 - self.alpha**2
        self.upper = 1.0
        even = _even_rows(self.height)
        red, black = _pack(graph.normalized_weights(), self.height, self.width)  # [G, 4, H, Wh]
        right, down, left, up = (red[:, k : k + 1] for k in range(4))
        self.red_weights = tf.stack(
            [tf.where(even, right, left), tf.where(even, left, right), down, up]
        )
        right, down, left, up = (black[:, k : k + 1] for k in range(4))
        self.black_weights = tf.stack(
            [tf.where(even, left, right), tf.where(even, right, left), down, up]
        )
        self.schur_weights = _schur_stencil(
            graph.normalized_weights(), self.alpha, self.height, self.width
        )

    # -- the blocks, packed ------------------------------------------------------------------
    def pack(self, images: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Image layout ``[G, H, W, C]`` to the red and black halves ``[G, C, H, ceil(W/2)]``."""
        return _pack(images, self.height, self.width)

    def unpack(self, red: tf.Tensor, black: tf.Tensor) -> tf.Tensor:
        """The halves back to image layout ``[G, H, W, C]``."""
        return _unpack(red, black, self.height, self.width)

    def black_to_red(self, black: tf.Tensor) -> tf.Tensor:
        """:math:`B x_b`, packed ``[G, C, H, Wh]``."""
        return _cross(black, self.red_weights, _even_rows(self.height), True)

    def red_to_black(self, red: tf.Tensor) -> tf.Tensor:
        """:math:`B^\\top x_r`, packed ``[G, C, H, Wh]``."""
        return _cross(red, self.black_weights, _even_rows(self.height), False)

    def schur(self, red: tf.Tensor) -> tf.Tensor:
        """:math:`S x_r = x_r - \\alpha^2 B B^\\top x_r` by its 9-point stencil, packed."""
        return _apply_schur(red, self.schur_weights, _even_rows(self.height))

    # -- solves ------------------------------------------------------------------------------
    def solve(
        self,
        rhs: tf.Tensor,
        *,
        x0: tf.Tensor | None = None,
        method: str = "chebyshev",
        max_iter: int = 50,
        tol: float = 1e-4,
        jit_compile: bool = True,
    ) -> CGResult:
        r"""Solves :math:`L_\alpha x = b` for ``b`` ``[G, n, C]`` through the reduced system.

        Args:
            rhs: right-hand sides, system layout ``[G, H * W, C]``.
            x0: optional warm start, same shape (only its red pixels are used: the black ones
                follow from them).
            method: ``"chebyshev"`` or ``"cg"`` on :math:`S`.
            max_iter: iterations on :math:`S` at most, >= 1.
            tol: relative residual of the *full* system,
                :math:`\lVert b - L_\alpha x\rVert \le \mathrm{tol}\,\lVert b\rVert`, >= 0.
                CG stops when it is reached; Chebyshev runs the closed-form number of steps
                that guarantees it (capped by ``max_iter``). 0 runs ``max_iter`` iterations.
            jit_compile: compile the solve with XLA.

        Returns:
            :class:`~tfsmooth.smoothing.CGResult` with the iterations on :math:`S` (one costs
            about one matvec of :math:`L_\alpha` on half-size vectors) and the relative
            residual from the recursion. Without ``x0`` Chebyshev runs the same number of
            steps for every right-hand side, so the solve is one fixed symmetric linear map.
        """
        method = v.check_choice(method, "method", RB_METHODS)
        max_iter = v.check_int_at_least(max_iter, "max_iter", 1)
        tol = v.check_tolerance(tol, "tol")
        solver, weights = self.compiled_solver(method, max_iter, tol, jit_compile=jit_compile)
        rhs = v.as_float_tensor(rhs, "rhs", dtype=self.dtype)
        n = self.height * self.width
        if rhs.shape.rank != 3 or (rhs.shape[1] is not None and rhs.shape[1] != n):
            raise ValueError(
                f"`rhs` must have shape [G, {n}, C] (system layout of {self.height}x{self.width} "
                f"images), got shape {tuple(rhs.shape)}"
            )
        if x0 is not None:
            x0 = v.as_float_tensor(x0, "x0", dtype=self.dtype)
            if not x0.shape.is_compatible_with(rhs.shape):
                raise ValueError(
                    f"`x0` must have the shape of `rhs` {tuple(rhs.shape)}, got {tuple(x0.shape)}"
                )
            x0 = tf.stop_gradient(x0)
        rhs = tf.stop_gradient(rhs)
        return solver(*(tf.stop_gradient(w) for w in weights), rhs, x0)

    def compiled_solver(
        self, method: str, max_iter: int, tol: float, *, jit_compile: bool = True
    ) -> tuple[Callable[..., CGResult], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]:
        """The ``tf.function`` of :meth:`solve`, ``solver(*weights, rhs, x0)`` (one per static
        configuration, cached), and its weights; for callers that compile it with more work."""
        solver = _compiled_rb_solver(
            self.height, self.width, self.alpha, method, max_iter, float(tol), jit_compile
        )
        return solver, (self.red_weights, self.black_weights, self.schur_weights)

    def cold_steps(self, tol: float, max_iter: int) -> int:
        """Chebyshev steps of a cold solve to full relative residual ``tol`` (capped)."""
        return _cold_steps(self.alpha, tol, max_iter)

    def __repr__(self) -> str:
        return (
            f"RedBlackLaplacian(shape={tuple(self.graph.guide.shape)}, alpha={self.alpha}, "
            f"packed width={self.half_width})"
        )


def _cold_steps(alpha: float, tol: float, max_iter: int) -> int:
    r"""Steps from :math:`x_0 = 0`: :math:`\lVert c_r + \alpha B c_b\rVert \le
    \sqrt{1 + \alpha^2}\,\lVert c\rVert`, so a reduction by :math:`\sqrt{1+\alpha^2}/\mathrm{tol}`
    on :math:`S` meets ``tol`` on the full system."""
    if tol == 0:
        return max_iter
    lower = 1.0 - alpha**2
    reduction = math.sqrt(1.0 + alpha**2) / tol
    return min(max_iter, chebyshev_steps(lower, 1.0, reduction))


@functools.lru_cache(maxsize=64)
def _compiled_rb_solver(
    height: int,
    width: int,
    alpha: float,
    method: str,
    max_iter: int,
    tol: float,
    jit_compile: bool,
) -> Callable[..., CGResult]:
    """A ``tf.function`` of the red-black solve, one per static configuration."""
    lower, upper = 1.0 - alpha**2, 1.0
    cold = _cold_steps(alpha, tol, max_iter)

    def solve(
        red_w: tf.Tensor,
        black_w: tf.Tensor,
        schur_w: tf.Tensor,
        rhs: tf.Tensor,
        x0: tf.Tensor | None,
    ) -> CGResult:
        dtype = rhs.dtype
        even = _even_rows(height)
        a = tf.constant(alpha, dtype)
        n_systems, channels = tf.shape(rhs)[0], tf.shape(rhs)[2]
        image_shape = tf.stack([n_systems, height, width, channels])
        c = tf.reshape(rhs, image_shape) * tf.constant(1.0 - alpha, dtype)
        c_r, c_b = _pack(c, height, width)
        c_norm = tf.sqrt(
            tf.reduce_sum(tf.square(c_r), axis=[2, 3]) + tf.reduce_sum(tf.square(c_b), axis=[2, 3])
        )  # [G, C]
        nonzero = c_norm > 0

        def schur(y: tf.Tensor) -> tf.Tensor:
            return _apply_schur(y, schur_w, even)

        reduced = c_r + a * _cross(c_b, red_w, even, True)
        if x0 is None:
            y, r = tf.zeros_like(reduced), reduced
        else:
            y, _ = _pack(tf.reshape(x0, image_shape), height, width)
            y = tf.where(nonzero[:, :, None, None], y, tf.zeros_like(y))
            r = reduced - schur(y)
        if method == "chebyshev":
            if x0 is None:
                steps = tf.constant(cold, tf.int32)
            else:
                r_norm0 = tf.norm(r, axis=[2, 3])
                steps = dynamic_steps(r_norm0, c_norm, nonzero, lower, upper, tol, max_iter)
            y, r = chebyshev_loop(schur, y, r, steps, lower, upper)
            r_norm = tf.norm(r, axis=[2, 3])
            iterations = tf.where(nonzero, steps, 0)
        else:
            threshold = tf.constant(tol, dtype) * c_norm
            y, rs, iterations = cg_loop(schur, y, r, threshold, nonzero, max_iter, axes=(2, 3))
            r_norm = tf.sqrt(rs)
        x_b = c_b + a * _cross(y, black_w, even, False)
        x = tf.reshape(_unpack(y, x_b, height, width), tf.shape(rhs))
        safe = tf.where(nonzero, c_norm, tf.ones_like(c_norm))
        residual = tf.where(nonzero, r_norm / safe, tf.zeros_like(c_norm))
        return CGResult(x, residual, iterations)

    return tf.function(solve, jit_compile=jit_compile)
