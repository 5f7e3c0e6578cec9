"""Models seen by the attacks: a wrapper, the paper's MNIST C4, TF-Hub and TF-slim loaders."""

from tfsmooth.models.base import PREPROCESSING, Model

__all__ = ["PREPROCESSING", "Model"]
