"""Data loaders: MNIST, the NIPS 2017 dev set, foolbox's sample photos, folders of images."""

from tfsmooth.data.folder import (
    ImageFolder,
    LabelledImages,
    load_image_folder,
    load_labelled_folder,
    load_labels_csv,
)
from tfsmooth.data.mnist import MNIST_SOURCES, MnistData, default_keras_cache, load_mnist
from tfsmooth.data.nips17 import Nips17Dataset, iter_nips17_batches, load_nips17
from tfsmooth.data.samples import SAMPLE_DATASETS, Samples, load_samples, sample_datasets

__all__ = [
    "MNIST_SOURCES",
    "SAMPLE_DATASETS",
    "MnistData",
    "default_keras_cache",
    "load_mnist",
    "ImageFolder",
    "LabelledImages",
    "Nips17Dataset",
    "Samples",
    "iter_nips17_batches",
    "load_image_folder",
    "load_labelled_folder",
    "load_labels_csv",
    "load_nips17",
    "load_samples",
    "sample_datasets",
]
