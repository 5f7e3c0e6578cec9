"""Data loaders: MNIST, the NIPS 2017 dev set, folders of images."""

from tfsmooth.data.folder import ImageFolder, load_image_folder
from tfsmooth.data.mnist import MNIST_SOURCES, MnistData, default_keras_cache, load_mnist
from tfsmooth.data.nips17 import Nips17Dataset, iter_nips17_batches, load_nips17

__all__ = [
    "MNIST_SOURCES",
    "MnistData",
    "default_keras_cache",
    "load_mnist",
    "ImageFolder",
    "Nips17Dataset",
    "iter_nips17_batches",
    "load_image_folder",
    "load_nips17",
]
