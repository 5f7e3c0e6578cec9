"""tfsmooth: smooth adversarial examples for TensorFlow 2 / Keras 3.

Implements *Smooth Adversarial Examples* (H. Zhang, Y. Avrithis, T. Furon, L. Amsaleg,
arXiv:1903.11862): a graph smoother guided by the attacked image, and attacks whose perturbation
follows the image's own structure.

Example:
    >>> import tfsmooth
    >>> smoother = tfsmooth.Smoother(0.95)
    >>> guide = tf.random.uniform([1, 8, 8, 3], seed=0)
    >>> smoother(tf.ones([1, 8, 8, 3]), guide).shape
    TensorShape([1, 8, 8, 3])
"""

import importlib
from typing import Any

from tfsmooth._version import __version__

#: Sub-packages, imported on first use: ``import tfsmooth`` (and ``tfsmooth --help``) does not
#: import TensorFlow until something needs it.
_SUBMODULES = (
    "attacks",
    "callbacks",
    "data",
    "defenses",
    "evaluation",
    "graphs",
    "magnification",
    "metrics",
    "models",
    "smoothing",
)

#: Names re-exported at the top level, and the module that defines each.
_EXPORTS = {
    "AdversarialEvaluation": "tfsmooth.callbacks",
    "BoundSmoother": "tfsmooth.smoothing",
    "ImageGraph": "tfsmooth.graphs",
    "Model": "tfsmooth.models",
    "Smoother": "tfsmooth.smoothing",
}

__all__ = [
    "AdversarialEvaluation",
    "BoundSmoother",
    "ImageGraph",
    "Model",
    "Smoother",
    "__version__",
    "attacks",
    "callbacks",
    "data",
    "defenses",
    "evaluation",
    "graphs",
    "magnification",
    "metrics",
    "models",
    "smoothing",
]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f"tfsmooth.{name}")
    elif name in _EXPORTS:
        module = getattr(importlib.import_module(_EXPORTS[name]), name)
    else:
        raise AttributeError(f"module 'tfsmooth' has no attribute {name!r}")
    globals()[name] = module
    return module


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
