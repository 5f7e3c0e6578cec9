"""tfsmooth: smooth adversarial examples for TensorFlow 2 / Keras 3.

Implements *Smooth Adversarial Examples* (H. Zhang, Y. Avrithis, T. Furon, L. Amsaleg,
arXiv:1903.11862): a graph smoother guided by the attacked image, and attacks whose perturbation
follows the image's own structure.
"""

from tfsmooth._version import __version__

__all__ = ["__version__"]
