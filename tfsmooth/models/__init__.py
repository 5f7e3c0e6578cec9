"""Models seen by the attacks: a wrapper, the paper's MNIST C4, TF-Hub and TF-slim loaders."""

from tfsmooth.models.base import PREPROCESSING, Model
from tfsmooth.models.hub import KNOWN_HANDLES, hub_cache_path, load_hub_model
from tfsmooth.models.slim import SLIM_CHECKPOINTS, load_slim_inception_v3

__all__ = [
    "KNOWN_HANDLES",
    "PREPROCESSING",
    "SLIM_CHECKPOINTS",
    "Model",
    "hub_cache_path",
    "load_hub_model",
    "load_slim_inception_v3",
]
