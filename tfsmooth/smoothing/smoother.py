r"""The normalized graph smoother :math:`\hat{s}_\alpha` of the paper (eq. 8–9, 19).

Given a guide image :math:`x_o` and its graph (:class:`~tfsmooth.graphs.ImageGraph`),

.. math::

    s_\alpha(z) = L_\alpha^{-1} z, \qquad
    \hat{s}_\alpha(z) = \operatorname{diag}(s_\alpha(\mathbf{1}))^{-1} s_\alpha(z),

applied to every channel of ``z``. :math:`\hat{s}_\alpha` is linear, maps constants to themselves
and its Jacobian is :math:`\operatorname{diag}(s_\alpha(\mathbf{1}))^{-1} L_\alpha^{-1}`; since
:math:`L_\alpha` is symmetric the gradient of a loss :math:`J` is

.. math::

    \nabla_z J = L_\alpha^{-1}\big(\nabla_{\hat{s}} J \,/\, s_\alpha(\mathbf{1})\big),

i.e. the backward pass is one more solve with the same operator. :class:`BoundSmoother`
implements it with ``tf.custom_gradient`` so that nothing is differentiated through the solver's
iterations: memory does not grow with their number.

The iterative solvers are *deflated by the constants*: with :math:`m` the mean of a channel of
:math:`z` and :math:`s(\mathbf{1})` solved once per bind to :data:`ONES_TOL`,
:math:`L_\alpha^{-1} z = m\, s(\mathbf{1}) + L_\alpha^{-1}(z - m\mathbf{1})`, so only
:math:`z - m\mathbf{1}` is solved iteratively. With :math:`P` the solver's map, the computed
smoother is :math:`F = \mathcal{M} + D^{-1} P (I - \mathcal{M})` (:math:`\mathcal{M}` the mean
projection, :math:`D = \operatorname{diag}(s(\mathbf{1}))`): it maps constants to themselves
exactly whatever ``tol``, and the backward pass is its adjoint :math:`F^\top = \mathcal{M} +
(I - \mathcal{M}) P D^{-1}` (exact for a cold Chebyshev solve, whose :math:`P` is symmetric).

Solvers (``Smoother(solver=...)``, all with the same meaning of ``tol``: relative residual of the
full system): ``"cg"`` on :math:`L_\alpha`; on the 4-neighbour grid, which is bipartite,
``"rb_cg"`` and ``"rb_chebyshev"`` solve the red-black reduced system
(:mod:`tfsmooth.smoothing.redblack`), half the unknowns and half the condition number, and
``"auto"`` (the default, :func:`choose_solver`) takes ``"rb_chebyshev"``: a cold Chebyshev solve
is a fixed polynomial, one symmetric linear map whose backward pass is its exact adjoint;
``"exact"`` keeps a dense inverse per image (small images only).

Usage: build a :class:`Smoother` once with its hyperparameters, then ``bind`` it to each batch of
clean images (this builds the graph, the operator and :math:`s_\alpha(\mathbf{1})` once), and call
the bound smoother at every attack iteration.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.graphs import KERNELS, NEIGHBOUR_OFFSETS, ImageGraph
from tfsmooth.smoothing.cg import CGResult, conjugate_gradient
from tfsmooth.smoothing.operators import SparseLaplacian, StencilLaplacian
from tfsmooth.smoothing.redblack import RedBlackLaplacian

logger = logging.getLogger(__name__)

__all__ = [
    "EXACT_MAX_VERTICES",
    "ONES_MAX_ITER",
    "ONES_TOL",
    "SOLVERS",
    "BoundSmoother",
    "SmoothResult",
    "Smoother",
    "choose_solver",
]

#: Largest image (``height * width``) for which ``solver="exact"`` builds a dense inverse.
EXACT_MAX_VERTICES = 4096

#: Solver names accepted by :class:`Smoother`.
SOLVERS = ("auto", "cg", "rb_cg", "rb_chebyshev", "exact")
OPERATORS = ("stencil", "sparse")

#: Relative residual of the solve of :math:`s(\mathbf{1})` at bind time, whatever ``tol``.
ONES_TOL = 1e-6
#: Iterations at most for that solve.
ONES_MAX_ITER = 5000


def choose_solver(connectivity: int, operator: str) -> str:
    """The solver that ``solver="auto"`` runs for a graph and operator.

    ``"rb_chebyshev"`` for the 4-neighbour stencil (bipartite grid: red-black reduction, fixed
    Chebyshev polynomial; the fastest in ``benchmarks/smoothing.py`` for ImageNet- and
    MNIST-sized batches alike, including against the dense inverse of ``"exact"``, whose cost
    grows as :math:`n^2` per image), ``"cg"`` for 8-connectivity (not bipartite) and for the
    ``tf.sparse`` reference operator.

    Example:
        >>> choose_solver(4, "stencil"), choose_solver(8, "stencil"), choose_solver(4, "sparse")
        ('rb_chebyshev', 'cg', 'cg')
    """
    v.check_choice(connectivity, "connectivity", NEIGHBOUR_OFFSETS)
    v.check_choice(operator, "operator", OPERATORS)
    if operator == "stencil" and connectivity == 4:
        return "rb_chebyshev"
    return "cg"


class SmoothResult(NamedTuple):
    """Output of :meth:`BoundSmoother.smooth`.

    Attributes:
        output: :math:`\\hat{s}(z)`, shape and dtype of ``z``, differentiable w.r.t. ``z``.
        iterations: iterations of the forward solve per system, int32 ``[systems, channels]``
            (zeros for the exact solver; iterations on the reduced system for ``rb_*``).
        residual_norm: relative residual of the full system after the forward solve, per
            system (from the solver's recursion).
    """

    output: tf.Tensor
    iterations: tf.Tensor
    residual_norm: tf.Tensor


class Smoother:
    r"""Graph smoothing guided by the image, :math:`\hat{s}_\alpha(z) = L_\alpha^{-1} z / L_\alpha^{-1}\mathbf{1}`.

    Args:
        alpha: regularization :math:`\alpha \in [0, 1)`; 0 is the identity, values near 1
            smooth more (the paper: 0.95 on MNIST, 0.997 on ImageNet).
        solver: how :math:`L_\alpha^{-1}` is applied:

            - ``"auto"`` (default): :func:`choose_solver`: ``"rb_chebyshev"`` for the
              4-neighbour stencil, ``"cg"`` otherwise;
            - ``"cg"``: conjugate gradient on the full system (any graph, any size);
            - ``"rb_cg"``: CG on the red-black reduced system :math:`S = I - \alpha^2 B
              B^\top` of the 4-neighbour grid (:class:`~tfsmooth.smoothing.RedBlackLaplacian`),
              half the unknowns and half the condition number;
            - ``"rb_chebyshev"``: Chebyshev iteration on :math:`S` with its closed-form
              spectral bounds :math:`[1 - \alpha^2, 1]`: no dot products, and the number of
              steps that guarantees ``tol`` follows from the bounds, so a cold solve is one
              fixed symmetric linear map (its backward pass is its exact adjoint);
            - ``"exact"``: a dense inverse computed once per bound batch; images of at most
              :data:`EXACT_MAX_VERTICES` pixels, memory ``batch * n**2`` floats.

            The ``rb_*`` solvers need ``connectivity=4`` and ``operator="stencil"``.
        operator: how ``"cg"`` applies :math:`L_\alpha`: ``"stencil"`` (fast) or ``"sparse"``
            (``tf.sparse`` reference).
        max_iter: iterations at most, >= 1 (the paper: 50 CG iterations on ImageNet). For the
            ``rb_*`` solvers these are iterations on the reduced system, each costing about
            one matvec of :math:`L_\alpha` on half-size vectors.
        tol: relative residual of the full system, :math:`\lVert z - L_\alpha x\rVert \le
            \mathrm{tol}\,\lVert z\rVert`, >= 0, the same for every solver: CG stops when
            it is reached, Chebyshev runs the number of steps that guarantees it; both at most
            ``max_iter``. 0 always runs ``max_iter`` iterations. :math:`s(\mathbf{1})` is
            always solved to :data:`ONES_TOL` (at most :data:`ONES_MAX_ITER` iterations).
        grad_tol: relative residual of the *backward* solve (the gradient of :math:`\hat{s}`),
            same meaning as ``tol``; ``None`` (default): ``tol``, so the gradient is that of the
            computed forward map. A looser value (the ImageNet photo preset's sC&W uses 1e-2)
            makes the gradient approximate and cheaper: where it only steers an optimizer, as in
            sC&W, the attack's results stay the same (benchmarks/solver_fidelity.py).
        kernel: feature kernel of the graph, ``"laplacian"`` or ``"gaussian"``.
        sigma: kernel scale, > 0, for pixels in ``[0, 1]``.
        connectivity: 4 or 8 neighbours.
        per_channel: one graph per colour channel, each guided by that channel only (the
            authors' released code on ImageNet) instead of one graph for all channels (the paper).
        jit_compile: compile each iterative solve of the stencil operator with XLA (fuses an
            iteration into a few memory passes; several times faster on CPU). Inside
            :meth:`BoundSmoother.smooth` the deflation's glue (means, centring, division by
            :math:`s(\mathbf{1})`, warm start) is compiled together with the solve, one
            computation for the forward pass and one for the backward. The sparse operator
            always runs without XLA.

    Example:
        >>> smoother = Smoother(0.95, solver="exact")
        >>> guide = tf.random.uniform([2, 8, 8, 1], seed=0)
        >>> bound = smoother.bind(guide)
        >>> out = bound(tf.ones([2, 8, 8, 1]))  # constants are preserved
        >>> bool(np.allclose(out, 1.0, atol=1e-5))
        True
    """

    def __init__(
        self,
        alpha: float,
        *,
        solver: str = "auto",
        operator: str = "stencil",
        max_iter: int = 50,
        tol: float = 1e-4,
        grad_tol: float | None = None,
        kernel: str = "laplacian",
        sigma: float = 0.1,
        connectivity: int = 4,
        per_channel: bool = False,
        jit_compile: bool = True,
    ) -> None:
        self.alpha = v.check_open_unit_interval(alpha, "alpha")
        self.solver = v.check_choice(solver, "solver", SOLVERS)
        self.operator = v.check_choice(operator, "operator", OPERATORS)
        self.max_iter = v.check_int_at_least(max_iter, "max_iter", 1)
        self.tol = v.check_tolerance(tol, "tol")
        self.grad_tol = v.check_tolerance(grad_tol, "grad_tol", allow_none=True)
        self.kernel = v.check_choice(kernel, "kernel", KERNELS)
        self.sigma = v.check_positive(sigma, "sigma")
        self.connectivity = v.check_choice(connectivity, "connectivity", NEIGHBOUR_OFFSETS)
        if not isinstance(per_channel, bool):
            raise TypeError(f"`per_channel` must be a bool, got {per_channel!r}")
        self.per_channel = per_channel
        if not isinstance(jit_compile, bool):
            raise TypeError(f"`jit_compile` must be a bool, got {jit_compile!r}")
        self.jit_compile = jit_compile
        if self.solver.startswith("rb_") and (self.connectivity != 4 or self.operator != "stencil"):
            raise ValueError(
                f"solver={self.solver!r} needs connectivity=4 and operator='stencil' (the "
                "red-black reduction holds on the bipartite 4-neighbour grid), got "
                f"connectivity={self.connectivity}, operator={self.operator!r}; use "
                "solver='cg' or 'auto'"
            )

    @property
    def resolved_solver(self) -> str:
        """The solver that runs: :attr:`solver`, or the choice of ``"auto"``."""
        if self.solver == "auto":
            return choose_solver(self.connectivity, self.operator)
        return self.solver

    def bind(self, guide: Any, *, name: str | None = None) -> BoundSmoother:
        """Builds the graph, the operator and :math:`s(\\mathbf{1})` for a batch of guide images.

        Args:
            guide: images ``[batch, height, width, channels]``, float, values in ``[0, 1]``.
            name: optional name scope.

        Returns:
            The :class:`BoundSmoother` that smooths signals of the guide's batch and size.
        """
        return BoundSmoother(self, guide, name=name)

    def __call__(self, z: Any, guide: Any) -> tf.Tensor:
        """One-shot :math:`\\hat{s}(z)` guided by ``guide`` (binds, then smooths)."""
        return self.bind(guide)(z)

    def get_config(self) -> dict[str, Any]:
        """The constructor arguments, for serialization and reports.

        ``grad_tol`` appears only when set, so that the configuration (and the headers of
        record files written before it existed) of a smoother without it stays the same.
        """
        config: dict[str, Any] = {
            "alpha": self.alpha,
            "solver": self.solver,
            "operator": self.operator,
            "max_iter": self.max_iter,
            "tol": self.tol,
        }
        if self.grad_tol is not None:
            config["grad_tol"] = self.grad_tol
        config.update(
            kernel=self.kernel,
            sigma=self.sigma,
            connectivity=self.connectivity,
            per_channel=self.per_channel,
            jit_compile=self.jit_compile,
        )
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={val!r}" for k, val in self.get_config().items())
        return f"Smoother({args})"


class BoundSmoother:
    """:math:`\\hat{s}` bound to a batch of guide images; call it on signals ``z`` of that shape.

    Made by :meth:`Smoother.bind`. Internally signals are *systems* ``[G, n, C']``: ``G = batch``
    and ``C' = channels`` for a shared graph, ``G = batch * channels`` and ``C' = 1`` per channel.

    Attributes:
        graph: the :class:`~tfsmooth.graphs.ImageGraph` (per-channel: of the ``batch * channels``
            single-channel guides).
        operator: :math:`L_\\alpha` as a ``tf.linalg.LinearOperator``.
        solver: the solver that runs (``"auto"`` resolved).
        red_black: the :class:`~tfsmooth.smoothing.RedBlackLaplacian` for the ``rb_*``
            solvers, else ``None``.
        ones_response: :math:`s(\\mathbf{1})` in system layout ``[G, n, 1]``, solved to
            :data:`ONES_TOL`.
    """

    def __init__(self, smoother: Smoother, guide: Any, *, name: str | None = None) -> None:
        self.smoother = smoother
        with tf.name_scope(name or "BoundSmoother"):
            guide = v.check_image_batch(guide, "guide", bounds=(0.0, 1.0))
            self.guide = guide
            self.dtype = guide.dtype
            batch, height, width, channels = (guide.shape[i] for i in range(4))
            if height is None or width is None or channels is None:
                raise ValueError(
                    f"`guide` needs a static height, width and channels, got {tuple(guide.shape)}"
                )
            self.image_shape = (int(height), int(width), int(channels))
            self.n_vertices = int(height) * int(width)
            if smoother.per_channel:
                guide = tf.reshape(tf.transpose(guide, [0, 3, 1, 2]), [-1, height, width, 1])
            self.graph = ImageGraph(
                guide,
                connectivity=smoother.connectivity,
                kernel=smoother.kernel,
                sigma=smoother.sigma,
            )
            if smoother.operator == "sparse":
                self.operator: tf.linalg.LinearOperator = SparseLaplacian(
                    self.graph, smoother.alpha
                )
            else:
                self.operator = StencilLaplacian(self.graph, smoother.alpha)
            self.solver = smoother.resolved_solver
            self.red_black: RedBlackLaplacian | None = None
            if self.solver.startswith("rb_"):
                self.red_black = RedBlackLaplacian(self.graph, smoother.alpha)
            self._inverse: tf.Tensor | None = None
            if self.solver == "exact":
                if self.n_vertices > EXACT_MAX_VERTICES:
                    raise ValueError(
                        f'solver="exact" handles images of at most {EXACT_MAX_VERTICES} pixels, got '
                        f'{height}x{width}={self.n_vertices}; use solver="auto"'
                    )
                chol = tf.linalg.cholesky(self.operator.to_dense())
                eye = tf.eye(self.n_vertices, batch_shape=[1], dtype=self.dtype)
                self._inverse = tf.linalg.cholesky_solve(chol, tf.broadcast_to(eye, tf.shape(chol)))
            ones = tf.ones([tf.shape(self.graph.weights)[0], self.n_vertices, 1], self.dtype)
            ones_tol = ONES_TOL if smoother.tol == 0 else min(ONES_TOL, smoother.tol)
            self.ones_response = self.solve_systems(
                ones, tol=ones_tol, max_iter=max(ONES_MAX_ITER, smoother.max_iter)
            ).x
            self._batch = batch

    # -- layout ------------------------------------------------------------------------------
    def _check_signal(self, z: Any, name: str) -> tf.Tensor:
        z = v.as_float_tensor(z, name)
        if z.shape.rank != 4:
            raise ValueError(
                f"`{name}` must have rank 4 [batch, height, width, channels] like the guide "
                f"{tuple(self.guide.shape)}, got shape {tuple(z.shape)}"
            )
        height, width, channels = self.image_shape
        expected = [self._batch, height, width, channels if self.smoother.per_channel else None]
        for axis, size in enumerate(expected):
            if size is not None and z.shape[axis] is not None and z.shape[axis] != size:
                raise ValueError(
                    f"`{name}` of shape {tuple(z.shape)} does not match the bound guide of shape "
                    f"{tuple(self.guide.shape)}"
                    + (
                        " (per_channel=True needs the guide's number of channels)"
                        if axis == 3
                        else ""
                    )
                )
        v.check_finite(z, name)
        return z

    def to_systems(self, z: tf.Tensor) -> tf.Tensor:
        """Image layout ``[B, H, W, C]`` to system layout ``[G, n, C']``."""
        shape = tf.shape(z)
        if self.smoother.per_channel:
            return tf.reshape(tf.transpose(z, [0, 3, 1, 2]), [-1, self.n_vertices, 1])
        return tf.reshape(z, [shape[0], self.n_vertices, shape[3]])

    def from_systems(self, x: tf.Tensor, channels: int | tf.Tensor) -> tf.Tensor:
        """System layout back to image layout ``[B, H, W, channels]``."""
        height, width, _ = self.image_shape
        if self.smoother.per_channel:
            images = tf.reshape(x, [-1, channels, height, width])
            return tf.transpose(images, [0, 2, 3, 1])
        return tf.reshape(x, [-1, height, width, channels])

    # -- solves ------------------------------------------------------------------------------
    def solve_systems(
        self,
        rhs: tf.Tensor,
        x0: tf.Tensor | None = None,
        *,
        tol: float | None = None,
        max_iter: int | None = None,
    ) -> CGResult:
        """:math:`L_\\alpha^{-1} b` for ``b`` in system layout (no gradient defined).

        Args:
            rhs: right-hand sides ``[G, n, C']``.
            x0: optional warm start, same shape.
            tol: overrides the smoother's ``tol`` for this solve.
            max_iter: overrides the smoother's ``max_iter`` for this solve.

        Returns:
            :class:`~tfsmooth.smoothing.CGResult`; iterations and residual are zero for the
            exact solver.
        """
        tol = self.smoother.tol if tol is None else tol
        max_iter = self.smoother.max_iter if max_iter is None else max_iter
        if self._inverse is not None:
            x = tf.linalg.matmul(self._inverse, rhs)
            zeros = tf.zeros([tf.shape(rhs)[0], tf.shape(rhs)[2]], rhs.dtype)
            return CGResult(x, zeros, tf.cast(zeros, tf.int32))
        if self.red_black is not None:
            return self.red_black.solve(
                rhs,
                x0=x0,
                method=self._rb_method,
                max_iter=max_iter,
                tol=tol,
                jit_compile=self.smoother.jit_compile,
            )
        if isinstance(self.operator, StencilLaplacian):
            return self.operator.solve(
                rhs, x0=x0, max_iter=max_iter, tol=tol, jit_compile=self.smoother.jit_compile
            )
        return conjugate_gradient(self.operator, rhs, x0=x0, max_iter=max_iter, tol=tol)

    @property
    def _rb_method(self) -> str:
        """The iteration on the red-black reduced system of the ``rb_*`` solvers."""
        return "chebyshev" if self.solver == "rb_chebyshev" else "cg"

    def _glue_solver(self, tol: float | None) -> _DeflatedSolve:
        """The deflated forward / backward solves at ``tol`` (``None``: the smoother's), fused
        with their glue into one XLA computation each when the solve itself is compiled."""
        tol = self.smoother.tol if tol is None else tol
        max_iter = self.smoother.max_iter
        jit = self.smoother.jit_compile
        core: Callable[..., CGResult] | None = None
        tensors: tuple[tf.Tensor, ...] = ()
        if jit and self.red_black is not None:
            core, tensors = self.red_black.compiled_solver(self._rb_method, max_iter, tol)
        elif jit and isinstance(self.operator, StencilLaplacian) and self._inverse is None:
            core, tensors = self.operator.compiled_solver(max_iter, float(tol))
        if core is not None:
            return _DeflatedSolve(core, tuple(tf.stop_gradient(t) for t in tensors), fused=True)

        def solve(rhs: tf.Tensor, x0: tf.Tensor | None) -> CGResult:
            return self.solve_systems(rhs, x0, tol=tol, max_iter=max_iter)

        return _DeflatedSolve(solve, (), fused=False)

    def solve(self, z: Any, *, x0: Any = None) -> CGResult:
        """The unnormalized :math:`s(z) = L_\\alpha^{-1} z` in image layout, with solver statistics.

        Args:
            z: signal ``[batch, height, width, channels]``.
            x0: optional warm start (a guess of :math:`s(z)`), same shape.
        """
        z = self._check_signal(z, "z")
        channels = tf.shape(z)[3]
        start = (
            None
            if x0 is None
            else self.to_systems(tf.cast(self._check_signal(x0, "x0"), self.dtype))
        )
        result = self.solve_systems(self.to_systems(tf.cast(z, self.dtype)), start)
        x = tf.cast(self.from_systems(result.x, channels), z.dtype)
        return CGResult(x, result.residual_norm, result.iterations)

    def smooth(self, z: Any, *, x0: Any = None, grad_x0: Any = None) -> SmoothResult:
        """:math:`\\hat{s}(z)` with the statistics of its forward solve.

        Args:
            z: signal ``[batch, height, width, channels]`` matching the guide (any number of
                channels with a shared graph).
            x0: optional warm start for the forward solve: a guess of the *output*
                :math:`\\hat{s}(z)`, e.g. the previous output inside an attack loop.
            grad_x0: optional warm start for the backward solve: a guess of the gradient with
                respect to ``z``, e.g. the previous gradient inside an attack loop.

        With ``"rb_chebyshev"`` and no warm start, forward and backward run the same number of
        steps (set by ``tol``), so the gradient is exactly that of the computed forward map; a
        warm start sets the number of steps from the residual of the guess instead, and
        ``grad_tol`` (when set) is the tolerance of the backward solve.

        Returns:
            :class:`SmoothResult`; only ``output`` carries a gradient.
        """
        z = self._check_signal(z, "z")
        in_dtype = z.dtype
        channels = tf.shape(z)[3]
        ones_response = self.ones_response
        systems = self.to_systems(tf.cast(z, self.dtype))
        # Deflation by the constants (iterative solvers; see _DeflatedSolve): with m the mean of
        # each system, L^-1 z = m s(1) + L^-1 (z - m 1), and s(1) is solved to ONES_TOL, so only
        # z - m 1 goes through the iterative solver: constants are preserved exactly whatever
        # `tol`, and the error of the solve scales with the non-constant part of z only.
        deflate = self._inverse is None
        start = guess = None
        if x0 is not None:
            guess = self.to_systems(tf.cast(self._check_signal(x0, "x0"), self.dtype))
            if not deflate:
                start = guess * ones_response
        grad_start = None
        if grad_x0 is not None:
            grad_start = self.to_systems(
                tf.cast(self._check_signal(grad_x0, "grad_x0"), self.dtype)
            )
        stats: list[CGResult] = []
        grad_tol = self.smoother.grad_tol

        @tf.custom_gradient
        def _smooth(systems: tf.Tensor) -> tuple[tf.Tensor, Any]:
            if not deflate:
                forward = self.solve_systems(systems, start)
                stats.append(forward)

                def grad(upstream: tf.Tensor) -> tf.Tensor:
                    return self.solve_systems(upstream / ones_response, grad_start, tol=grad_tol).x

                return forward.x / ones_response, grad

            # The forward map is F = M + D^-1 P (I - M), with M the mean projection, D =
            # diag(s(1)) and P the solver's map; its adjoint F^T = M + (I - M) P D^-1 is the
            # backward pass (P is symmetric for a cold Chebyshev solve, so the gradient is exact).
            output, iterations, residual = self._glue_solver(None).forward(
                systems, guess, ones_response
            )
            stats.append(CGResult(output, residual, iterations))

            def grad_deflated(upstream: tf.Tensor) -> tf.Tensor:
                return self._glue_solver(grad_tol).backward(upstream, grad_start, ones_response)

            return output, grad_deflated

        out = tf.cast(self.from_systems(_smooth(systems), channels), in_dtype)
        return SmoothResult(out, stats[0].iterations, stats[0].residual_norm)

    def __call__(self, z: Any, *, x0: Any = None, grad_x0: Any = None) -> tf.Tensor:
        """:math:`\\hat{s}(z)`, differentiable; see :meth:`smooth` for the arguments."""
        return self.smooth(z, x0=x0, grad_x0=grad_x0).output

    def __repr__(self) -> str:
        return f"BoundSmoother(guide_shape={tuple(self.guide.shape)}, {self.smoother!r})"


def _deflated_forward(
    solve: Callable[..., CGResult],
    systems: tf.Tensor,
    guess: tf.Tensor | None,
    ones_response: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``F z = m + P (z - m 1) / s(1)`` with its iterations and full-system relative residual.

    ``guess`` is a guess of the output (e.g. the previous one), turned into a warm start of the
    centred solve."""
    mean = tf.reduce_mean(systems, axis=1, keepdims=True)
    centred = systems - mean
    start = None if guess is None else (guess - mean) * ones_response
    result = solve(centred, start)
    # the solver's residual is relative to the centred right-hand side; rescale it to z
    scale = tf.math.divide_no_nan(tf.norm(centred, axis=1), tf.norm(systems, axis=1))
    return mean + result.x / ones_response, result.iterations, result.residual_norm * scale


def _deflated_backward(
    solve: Callable[..., CGResult],
    upstream: tf.Tensor,
    start: tf.Tensor | None,
    ones_response: tf.Tensor,
) -> tf.Tensor:
    """The adjoint ``F^T g = M g + (I - M) P (g / s(1))`` of :func:`_deflated_forward`."""
    solved = solve(upstream / ones_response, start).x
    return (
        solved
        - tf.reduce_mean(solved, axis=1, keepdims=True)
        + tf.reduce_mean(upstream, axis=1, keepdims=True)
    )


@functools.lru_cache(maxsize=128)
def _fused(core: Callable[..., CGResult], backward: bool) -> Callable[..., Any]:
    """One XLA computation for a compiled solver ``core(*tensors, rhs, x0)`` and its deflation
    glue (the glue alone is a dozen image-sized passes op by op; ``core`` is cached per static
    configuration, so is this)."""
    glue = _deflated_backward if backward else _deflated_forward

    def run(tensors: tuple[tf.Tensor, ...], a: tf.Tensor, b: Any, ones: tf.Tensor) -> Any:
        return glue(lambda rhs, x0: core(*tensors, rhs, x0), a, b, ones)

    return tf.function(run, jit_compile=True)


class _DeflatedSolve:
    """The deflated forward and backward solves of :meth:`BoundSmoother.smooth` (no gradient)."""

    def __init__(
        self, core: Callable[..., CGResult], tensors: tuple[tf.Tensor, ...], *, fused: bool
    ) -> None:
        self._core, self._tensors, self._fused = core, tensors, fused

    def forward(
        self, systems: tf.Tensor, guess: tf.Tensor | None, ones: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        systems = tf.stop_gradient(systems)
        guess = None if guess is None else tf.stop_gradient(guess)
        if self._fused:
            return _fused(self._core, False)(self._tensors, systems, guess, ones)
        return _deflated_forward(self._core, systems, guess, ones)

    def backward(self, upstream: tf.Tensor, start: tf.Tensor | None, ones: tf.Tensor) -> tf.Tensor:
        upstream = tf.stop_gradient(upstream)
        start = None if start is None else tf.stop_gradient(start)
        if self._fused:
            return _fused(self._core, True)(self._tensors, upstream, start, ones)
        return _deflated_backward(self._core, upstream, start, ones)
