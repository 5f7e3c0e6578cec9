"""Toy data, model and smoother shared by the attack tests."""

import keras
import numpy as np
import tensorflow as tf

from tfsmooth.smoothing import Smoother

N, H, W, C, K = 8, 12, 12, 1, 10


def blob_images(n=N, h=H, w=W, c=C, seed=0):
    """Piecewise-constant images (a rectangle on a background) with mild noise, in [0.2, 0.8]."""
    rng = np.random.default_rng(seed)
    out = np.empty((n, h, w, c), np.float32)
    for i in range(n):
        out[i] = rng.uniform(0.25, 0.4, size=c)
        r0, c0 = rng.integers(0, h // 2), rng.integers(0, w // 2)
        r1, c1 = r0 + rng.integers(3, h // 2 + 1), c0 + rng.integers(3, w // 2 + 1)
        out[i, r0:r1, c0:c1] = rng.uniform(0.6, 0.75, size=c)
    out += rng.normal(scale=0.01, size=out.shape).astype(np.float32)
    return np.clip(out, 0.2, 0.8)


def tiny_net(shape=(H, W, C), classes=K, seed=0):
    keras.utils.set_random_seed(seed)
    return keras.Sequential(
        [
            keras.Input(shape),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(classes),
        ]
    )


def toy_setup():
    net = tiny_net()
    images = tf.constant(blob_images())
    labels = tf.argmax(net(images), axis=1, output_type=tf.int32)
    return net, images, labels


def smoother():
    return Smoother(0.95, solver="exact")
