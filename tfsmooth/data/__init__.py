"""Data loaders: MNIST, the NIPS 2017 dev set, folders of images."""

from tfsmooth.data.folder import ImageFolder, load_image_folder
from tfsmooth.data.nips17 import Nips17Dataset, iter_nips17_batches, load_nips17

__all__ = [
    "ImageFolder",
    "Nips17Dataset",
    "iter_nips17_batches",
    "load_image_folder",
    "load_nips17",
]
