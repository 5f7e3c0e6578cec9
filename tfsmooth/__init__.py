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

from tfsmooth import (
    attacks,
    callbacks,
    data,
    defenses,
    evaluation,
    graphs,
    magnification,
    models,
    smoothing,
)
from tfsmooth._version import __version__
from tfsmooth.callbacks import AdversarialEvaluation
from tfsmooth.graphs import ImageGraph
from tfsmooth.models import Model
from tfsmooth.smoothing import BoundSmoother, Smoother

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
    "models",
    "smoothing",
]
