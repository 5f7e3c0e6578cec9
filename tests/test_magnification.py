"""Tests of tfsmooth.magnification (paper Appendix A)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tensorflow as tf

from tfsmooth.magnification import magnify, to_display


def _np_bilateral(values, guide, sigma_spatial, sigma_range, radius):
    """Brute-force guided bilateral filter (window pixels inside the image only)."""
    batch, height, width, _ = values.shape
    out = np.zeros(values.shape)
    for b in range(batch):
        for r in range(height):
            for c in range(width):
                num, den = 0.0, 0.0
                for rr in range(max(0, r - radius), min(height, r + radius + 1)):
                    for cc in range(max(0, c - radius), min(width, c + radius + 1)):
                        w = math.exp(-((rr - r) ** 2 + (cc - c) ** 2) / (2 * sigma_spatial**2))
                        w *= math.exp(
                            -np.sum((guide[b, rr, cc] - guide[b, r, c]) ** 2) / (2 * sigma_range**2)
                        )
                        num = num + w * values[b, rr, cc]
                        den += w
                out[b, r, c] = num / den
    return out


def reference_magnify(x, eta, sigma_spatial, sigma_range_levels, radius, value_range=1.0):
    """Appendix A, eq. 22, written directly from the text."""
    x = x.astype(np.float64)
    sigma_range = sigma_range_levels * value_range / 255.0
    mu = _np_bilateral(x, x, sigma_spatial, sigma_range, radius)
    local_std = np.sqrt(_np_bilateral((x - mu) ** 2, x, sigma_spatial, sigma_range, radius))
    global_std = x.std(axis=(1, 2), keepdims=True)
    return (x - mu) / (eta * local_std + (1 - eta) * global_std)


def _textured(seed, shape=(1, 6, 7, 3)):
    """A smooth-ish image with a noise texture of a few grey levels (so range weights matter)."""
    rng = np.random.default_rng(seed)
    _, height, width, channels = shape
    r, c = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    base = 0.4 + 0.05 * np.sin(r / 2.0)[None, :, :, None] + 0.03 * c[None, :, :, None] / width
    base = np.broadcast_to(base, shape) + np.linspace(0, 0.2, channels)
    return base + rng.normal(scale=6 / 255, size=shape)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("eta", "sigma_spatial", "sigma_range", "radius"),
    [(0.8, 1.5, 5.0, 2), (0.5, 1.0, 12.0, None), (0.0, 1.0, 5.0, 1), (1.0, 2.0, 8.0, 3)],
)
def test_matches_reference(dtype, eta, sigma_spatial, sigma_range, radius):
    x = _textured(1).astype(dtype)
    out = magnify(x, eta=eta, sigma_spatial=sigma_spatial, sigma_range=sigma_range, radius=radius)
    assert out.dtype == tf.as_dtype(dtype) and out.shape == x.shape
    r = max(1, math.ceil(2 * sigma_spatial)) if radius is None else radius
    expected = reference_magnify(x, eta, sigma_spatial, sigma_range, r)
    tol = 2e-3 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(out.numpy(), expected, rtol=tol, atol=tol)
    assert np.abs(expected).max() > 0.2  # not a trivially small output


def test_paper_defaults_match_reference():
    x = _textured(2, shape=(2, 5, 5, 3))
    out = tf.function(magnify)(x)  # eta 0.8, sigma 5 px / 5 grey levels, radius 10
    np.testing.assert_allclose(out, reference_magnify(x, 0.8, 5.0, 5.0, 10), atol=1e-9)


@pytest.mark.parametrize("eta", [0.0, 0.8, 1.0])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_constant_image_gives_zeros(eta, dtype):
    x = np.full((2, 6, 5, 3), 0.37, dtype)
    out = magnify(x, eta=eta, sigma_spatial=1.5)
    assert out.dtype == tf.as_dtype(dtype)
    assert np.all(np.isfinite(out.numpy())) and np.all(out.numpy() == 0)


def test_invariant_to_adding_a_constant():
    x = _textured(3, shape=(2, 8, 8, 3))
    shifted = x + np.array([0.1, -0.2, 0.05])  # a different constant per channel
    a = magnify(x, sigma_spatial=1.5)
    np.testing.assert_allclose(magnify(shifted, sigma_spatial=1.5), a, atol=1e-7)
    assert np.abs(a.numpy()).max() > 0.5


def test_scaling_needs_value_range():
    # The range kernel has a fixed width in grey levels, so scaling x changes the result unless
    # the value range is scaled with it: mag(a x, value_range=a) = mag(x, value_range=1).
    x = _textured(4, shape=(1, 8, 8, 3))
    a = magnify(x, sigma_spatial=1.5)
    scaled = magnify(255.0 * x, sigma_spatial=1.5, value_range=255.0)
    np.testing.assert_allclose(scaled, a, atol=1e-7)
    assert not np.allclose(magnify(3.0 * x, sigma_spatial=1.5), a, atol=1e-2)


def test_smooth_perturbation_is_magnified_less_than_noise():
    """The paper's point: a low-frequency perturbation stays nearly invisible after magnification,
    white noise of the same L2 norm does not."""
    height = width = 32
    x = np.full((1, height, width, 3), 0.5)
    r, c = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    smooth = np.sin(2 * np.pi * (r + 0.5 * c) / 64)[None, :, :, None] * np.array([1.0, 0.8, 0.6])
    noise = np.random.default_rng(0).standard_normal(x.shape)
    target = 2 / 255 * math.sqrt(x.size)  # RMS of 2 grey levels
    smooth *= target / np.linalg.norm(smooth)
    noise *= target / np.linalg.norm(noise)
    np.testing.assert_allclose(np.linalg.norm(smooth), np.linalg.norm(noise))
    fn = tf.function(magnify)
    base = fn(tf.constant(x))
    energy_smooth = float(tf.reduce_sum(tf.square(fn(tf.constant(x + smooth)) - base)))
    energy_noise = float(tf.reduce_sum(tf.square(fn(tf.constant(x + noise)) - base)))
    # Measured: ratio ~0.28 (noise ~1 per value, i.e. ~3000 in total); require a clear margin.
    assert energy_noise > 0.5 * x.size
    assert energy_smooth < 0.5 * energy_noise


def test_tf_function_unknown_shape():
    x = _textured(5, shape=(2, 7, 6, 3)).astype(np.float32)

    @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
    def fn(t):
        return magnify(t, sigma_spatial=1.5)

    np.testing.assert_allclose(fn(x), magnify(x, sigma_spatial=1.5), atol=1e-5)
    fn_default = tf.function(magnify)  # radius 10: the loop path
    np.testing.assert_allclose(fn_default(x), magnify(x), atol=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"eta": 1.5}, ValueError),
        ({"eta": -0.1}, ValueError),
        ({"eta": "0.8"}, TypeError),
        ({"sigma_spatial": 0}, ValueError),
        ({"sigma_range": -5}, ValueError),
        ({"value_range": 0}, ValueError),
        ({"epsilon": 0}, ValueError),
        ({"radius": -1}, ValueError),
    ],
)
def test_bad_parameters(kwargs, error):
    with pytest.raises(error, match="must"):
        magnify(np.zeros((1, 4, 4, 3), np.float32), **kwargs)


@pytest.mark.parametrize(
    ("images", "error"),
    [
        (np.zeros((4, 4, 3), np.float32), ValueError),
        (np.zeros((1, 4, 4, 3), np.uint8), TypeError),
        (np.full((1, 4, 4, 3), np.inf, np.float32), ValueError),
    ],
)
def test_bad_images(images, error):
    with pytest.raises(error):
        magnify(images)


def test_to_display():
    mag = tf.constant([[-10.0, -3.0, -1.5, 0.0, 1.5, 3.0, 10.0]], tf.float64)
    out = to_display(mag)
    assert out.dtype == tf.float64
    np.testing.assert_allclose(out, [[0.0, 0.0, 0.25, 0.5, 0.75, 1.0, 1.0]])
    np.testing.assert_allclose(to_display(mag, clip=1.5), [[0, 0, 0, 0.5, 1, 1, 1]])
    real = to_display(magnify(_textured(6), sigma_spatial=1.0))
    assert float(tf.reduce_min(real)) >= 0.0 and float(tf.reduce_max(real)) <= 1.0
    with pytest.raises(ValueError, match="clip"):
        to_display(mag, clip=0.0)
    with pytest.raises(TypeError):
        to_display(np.zeros(3, np.int64))
