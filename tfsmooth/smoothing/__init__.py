"""Graph smoothing guided by the image: CG, the operator :math:`L_\\alpha`, the smoother."""

from tfsmooth.smoothing.cg import CGResult, conjugate_gradient
from tfsmooth.smoothing.operators import SparseLaplacian, StencilLaplacian, stencil_matvec
from tfsmooth.smoothing.smoother import (
    EXACT_MAX_VERTICES,
    BoundSmoother,
    Smoother,
    SmoothResult,
)

__all__ = [
    "EXACT_MAX_VERTICES",
    "BoundSmoother",
    "CGResult",
    "SmoothResult",
    "Smoother",
    "SparseLaplacian",
    "StencilLaplacian",
    "conjugate_gradient",
    "stencil_matvec",
]
