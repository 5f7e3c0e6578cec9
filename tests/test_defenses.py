"""Tests of tfsmooth.defenses: the bilateral filter against a brute-force NumPy oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.defenses import (
    TABLE3_SIGMA_RANGE,
    TABLE3_SIGMA_SPATIAL,
    BilateralFilter,
    bilateral_filter,
)
from tfsmooth.models.base import Model


def reference_bilateral(
    images: np.ndarray, guide: np.ndarray, sigma_spatial: float, sigma_range: float, radius: int
) -> np.ndarray:
    """Brute force: double loop over pixels, inner loop over the window pixels inside the image."""
    batch, height, width, _ = images.shape
    out = np.zeros(images.shape, np.float64)
    x = images.astype(np.float64)
    g = guide.astype(np.float64)
    for b in range(batch):
        for r in range(height):
            for c in range(width):
                num = np.zeros(images.shape[-1])
                den = 0.0
                for rr in range(max(0, r - radius), min(height, r + radius + 1)):
                    for cc in range(max(0, c - radius), min(width, c + radius + 1)):
                        d_pos = (rr - r) ** 2 + (cc - c) ** 2
                        d_val = np.sum((g[b, rr, cc] - g[b, r, c]) ** 2)
                        w = math.exp(-d_pos / (2 * sigma_spatial**2)) * math.exp(
                            -d_val / (2 * sigma_range**2)
                        )
                        num += w * x[b, rr, cc]
                        den += w
                out[b, r, c] = num / den
    return out


CASES = [
    # (sigma_spatial, sigma_range, radius); radius 3 -> 49 offsets: the tf.while_loop path
    (0.5, 0.2, None),
    (1.0, 0.1, 2),
    (1.5, 0.3, 3),
    (0.7, 0.05, 0),
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("sigma_spatial", "sigma_range", "radius"), CASES)
def test_matches_brute_force(dtype, sigma_spatial, sigma_range, radius):
    rng = np.random.default_rng(1)
    images = rng.uniform(size=(2, 7, 9, 3)).astype(dtype)
    out = bilateral_filter(
        images, sigma_spatial=sigma_spatial, sigma_range=sigma_range, radius=radius
    )
    assert out.dtype == tf.as_dtype(dtype)
    r = max(1, math.ceil(2 * sigma_spatial)) if radius is None else radius
    expected = reference_bilateral(images, images, sigma_spatial, sigma_range, r)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out.numpy(), expected, rtol=tol, atol=tol)
    if radius != 0:
        assert not np.allclose(out.numpy(), images, atol=1e-3)  # it filters something


def test_default_radius_is_ceil_two_sigma():
    rng = np.random.default_rng(2)
    images = rng.uniform(size=(1, 6, 6, 1))
    out = bilateral_filter(images, sigma_spatial=1.2, sigma_range=0.5)
    np.testing.assert_allclose(out, reference_bilateral(images, images, 1.2, 0.5, 3), atol=1e-12)
    assert not np.allclose(out, reference_bilateral(images, images, 1.2, 0.5, 2), atol=1e-6)


def test_explicit_guide_with_other_channels():
    rng = np.random.default_rng(3)
    images = rng.uniform(size=(2, 5, 6, 3))
    guide = rng.uniform(size=(2, 5, 6, 1))
    out = bilateral_filter(images, sigma_spatial=1.0, sigma_range=0.2, guide=guide)
    np.testing.assert_allclose(out, reference_bilateral(images, guide, 1.0, 0.2, 2), atol=1e-12)


def test_one_photometric_distance_for_all_channels():
    # Channel 0 is a gentle ramp, channel 1 a step edge: the edge of channel 1 must stop the
    # averaging of channel 0 too (one distance over all channels), unlike a per-channel filter.
    images = np.zeros((1, 1, 6, 2))
    images[0, 0, :, 0] = [0.0, 0.01, 0.02, 0.03, 0.04, 0.05]
    images[0, 0, :, 1] = [0, 0, 0, 1, 1, 1]
    joint = bilateral_filter(images, sigma_spatial=2.0, sigma_range=0.1)[0, 0, :, 0].numpy()
    alone = bilateral_filter(images[..., :1], sigma_spatial=2.0, sigma_range=0.1)[0, 0, :, 0]
    alone = alone.numpy()
    assert joint[:3].max() <= 0.02 + 1e-9 and joint[3:].min() >= 0.03 - 1e-9
    assert alone[2] > 0.021 and alone[3] < 0.029


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_constant_image_unchanged(dtype):
    images = np.full((2, 5, 7, 3), 0.3, dtype)
    out = bilateral_filter(images, sigma_spatial=1.5, sigma_range=0.1)
    assert out.dtype == tf.as_dtype(dtype)
    np.testing.assert_allclose(out.numpy().astype(np.float64), images.astype(np.float64), atol=1e-6)


@pytest.mark.parametrize(("radius", "graph"), [(1, False), (1, True), (3, True)])
def test_gradient_matches_numeric(radius, graph):
    # radius 3 has 49 offsets: the tf.while_loop path, differentiated inside tf.function
    rng = np.random.default_rng(4)
    images = tf.constant(rng.uniform(size=(1, 3, 4, 2)))
    guide = images.numpy()  # a copy: the tape must not see it as the input

    def full(x):  # guide = x: gradient also through the range weights
        return bilateral_filter(x, sigma_spatial=1.0, sigma_range=0.3, radius=radius)

    def fixed_weights(x):  # constant guide: the weights do not move with x
        return bilateral_filter(x, sigma_spatial=1.0, sigma_range=0.3, radius=radius, guide=guide)

    jacobians = []
    for fn in (full, fixed_weights):
        run = tf.function(fn) if graph else fn
        theoretical, numerical = tf.test.compute_gradient(run, [images])
        np.testing.assert_allclose(theoretical[0], numerical[0], atol=1e-5)
        jacobians.append(theoretical[0])
    # The two Jacobians differ: the range weights depend on the image.
    assert not np.allclose(jacobians[0], jacobians[1], atol=1e-3)


@pytest.mark.parametrize("radius", [1, 3])
def test_tf_function_unknown_shape(radius):
    rng = np.random.default_rng(5)
    images = rng.uniform(size=(2, 6, 5, 3)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def fn(x):
        return bilateral_filter(x, sigma_spatial=1.0, sigma_range=0.2, radius=radius)

    eager = bilateral_filter(images, sigma_spatial=1.0, sigma_range=0.2, radius=radius)
    np.testing.assert_allclose(fn(images), eager, atol=1e-6)
    np.testing.assert_allclose(
        fn(images[:1, :4]),
        bilateral_filter(images[:1, :4], sigma_spatial=1.0, sigma_range=0.2, radius=radius),
        atol=1e-6,
    )


def test_gradient_inside_tf_function():
    images = tf.random.stateless_uniform([2, 5, 5, 3], seed=[1, 1])

    @tf.function
    def grad(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(tf.square(bilateral_filter(x, sigma_spatial=0.5, sigma_range=0.2)))
        return tape.gradient(loss, x)

    g = grad(images)
    assert g.shape == images.shape
    assert bool(tf.reduce_all(tf.math.is_finite(g)))


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"sigma_spatial": 0.0, "sigma_range": 0.2}, ValueError),
        ({"sigma_spatial": 1.0, "sigma_range": -0.2}, ValueError),
        ({"sigma_spatial": float("nan"), "sigma_range": 0.2}, ValueError),
        ({"sigma_spatial": "1", "sigma_range": 0.2}, TypeError),
        ({"sigma_spatial": 1.0, "sigma_range": 0.2, "radius": -1}, ValueError),
        ({"sigma_spatial": 1.0, "sigma_range": 0.2, "radius": 1.5}, TypeError),
        ({"sigma_spatial": 1.0, "sigma_range": 0.2, "guide": np.zeros((2, 4, 5, 1))}, ValueError),
        ({"sigma_spatial": 1.0, "sigma_range": 0.2, "guide": np.zeros((1, 4, 4, 3))}, ValueError),
        (
            {"sigma_spatial": 1.0, "sigma_range": 0.2, "guide": np.ones((1, 4, 5, 3), int)},
            TypeError,
        ),
    ],
)
def test_bad_parameters(kwargs, error):
    with pytest.raises(error, match="expected|must"):
        bilateral_filter(np.zeros((1, 4, 5, 3), np.float32), **kwargs)


@pytest.mark.parametrize(
    ("images", "error"),
    [
        (np.zeros((4, 5, 3), np.float32), ValueError),
        (np.zeros((1, 1, 4, 5, 3), np.float32), ValueError),
        (np.zeros((1, 4, 5, 3), np.int32), TypeError),
        (np.zeros((1, 4, 5, 3), bool), TypeError),
        (np.full((1, 4, 5, 3), np.nan, np.float32), ValueError),
    ],
)
def test_bad_images(images, error):
    with pytest.raises(error):
        bilateral_filter(images, sigma_spatial=1.0, sigma_range=0.2)


def test_bilateral_filter_class():
    bf = BilateralFilter.paper()
    assert (bf.sigma_spatial, bf.sigma_range, bf.radius) == (0.5, 0.2, 1)
    assert (TABLE3_SIGMA_SPATIAL, TABLE3_SIGMA_RANGE) == (0.5, 0.2)
    assert repr(bf) == "BilateralFilter(sigma_spatial=0.5, sigma_range=0.2, radius=1)"
    assert BilateralFilter.from_config(bf.get_config()) == bf
    assert BilateralFilter(0.5, 0.2, radius=2) != bf
    images = tf.random.stateless_uniform([2, 6, 6, 3], seed=[2, 3])
    np.testing.assert_allclose(
        bf(images), bilateral_filter(images, sigma_spatial=0.5, sigma_range=0.2), atol=0
    )
    then = BilateralFilter(0.5, 0.2, then="tf")
    assert "then='tf'" in repr(then)
    np.testing.assert_allclose(then(images), 2.0 * bf(images) - 1.0, atol=1e-6)
    assert "then=<callable>" in repr(BilateralFilter(0.5, 0.2, then=tf.identity))


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((0.0, 0.2), {}, ValueError),
        ((0.5, 0.0), {}, ValueError),
        ((0.5, 0.2), {"radius": -2}, ValueError),
        ((0.5, 0.2), {"then": "nope"}, ValueError),
        ((0.5, 0.2), {"then": 3}, TypeError),
    ],
)
def test_bilateral_filter_class_bad_input(args, kwargs, error):
    with pytest.raises(error):
        BilateralFilter(*args, **kwargs)


def test_as_model_preprocessing_is_differentiable():
    net = Model(
        lambda x: tf.reduce_mean(tf.square(x), axis=[1, 2]),
        preprocessing=BilateralFilter.paper(),
        num_classes=3,
    )
    images = tf.random.stateless_uniform([2, 6, 6, 3], seed=[4, 5])
    with tf.GradientTape() as tape:
        tape.watch(images)
        logits = net(images)
        loss = tf.reduce_sum(logits)
    grad = tape.gradient(loss, images)
    expected = tf.reduce_mean(
        tf.square(bilateral_filter(images, sigma_spatial=0.5, sigma_range=0.2)), axis=[1, 2]
    )
    np.testing.assert_allclose(logits, expected, atol=1e-6)
    assert grad is not None and float(tf.reduce_max(tf.abs(grad))) > 0
