"""Graph smoothing guided by the image: solvers, the operator :math:`L_\\alpha`, the smoother."""

from tfsmooth.smoothing.cg import CGResult, conjugate_gradient
from tfsmooth.smoothing.chebyshev import chebyshev_iteration, chebyshev_steps
from tfsmooth.smoothing.operators import SparseLaplacian, StencilLaplacian, stencil_matvec
from tfsmooth.smoothing.redblack import RedBlackLaplacian
from tfsmooth.smoothing.smoother import (
    EXACT_MAX_VERTICES,
    ONES_MAX_ITER,
    ONES_TOL,
    SOLVERS,
    BoundSmoother,
    Smoother,
    SmoothResult,
    choose_solver,
)

__all__ = [
    "EXACT_MAX_VERTICES",
    "ONES_MAX_ITER",
    "ONES_TOL",
    "SOLVERS",
    "BoundSmoother",
    "CGResult",
    "RedBlackLaplacian",
    "SmoothResult",
    "Smoother",
    "SparseLaplacian",
    "StencilLaplacian",
    "chebyshev_iteration",
    "chebyshev_steps",
    "choose_solver",
    "conjugate_gradient",
    "stencil_matvec",
]
