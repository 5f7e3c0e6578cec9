"""Tests of tfsmooth.metrics against skimage / scipy oracles and hand computations."""

from __future__ import annotations

import importlib.resources

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla
import tensorflow as tf
from PIL import Image

from tfsmooth.graphs import ImageGraph
from tfsmooth.metrics import (
    LUMA_WEIGHTS,
    PERCEPTUAL_METRICS,
    dirichlet_energy,
    perceptual_report,
    psnr,
    ssim_luma,
    total_variation,
    visibility,
)

skimage_metrics = pytest.importorskip("skimage.metrics")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _pair(shape=(3, 24, 20, 3), scale=0.05, seed=0, dtype=np.float32):
    rng = _rng(seed)
    clean = rng.uniform(0.1, 0.9, shape)
    adversarial = np.clip(clean + scale * rng.standard_normal(shape), 0.0, 1.0)
    return clean.astype(dtype), adversarial.astype(dtype)


def _luma_np(images: np.ndarray) -> np.ndarray:
    if images.shape[-1] == 1:
        return images[..., 0]
    return np.tensordot(images, np.asarray(LUMA_WEIGHTS), axes=([-1], [0]))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The astronaut photo downsized to 96x96, float64 in [0, 1], shape [1, 96, 96, 3]."""
    path = importlib.resources.files("tfsmooth").joinpath("assets", "astronaut_256.png")
    with path.open("rb") as handle:
        image = Image.open(handle).convert("RGB").resize((96, 96), Image.Resampling.BILINEAR)
        return (np.asarray(image, np.float64) / 255.0)[None]


# -- PSNR ------------------------------------------------------------------------------------------
def test_psnr_matches_skimage_and_hand_value():
    clean, adversarial = _pair()
    ours = psnr(clean, adversarial).numpy()
    assert ours.shape == (3,) and ours.dtype == np.float32
    for index in range(3):
        want = skimage_metrics.peak_signal_noise_ratio(
            clean[index].astype(np.float64), adversarial[index].astype(np.float64), data_range=1
        )
        np.testing.assert_allclose(ours[index], want, rtol=1e-5)
    x = np.full([1, 4, 4, 1], 0.5, np.float64)
    np.testing.assert_allclose(psnr(x, x + 0.01).numpy(), [40.0])  # 10 log10(1 / 1e-4)
    np.testing.assert_allclose(psnr(255 * x / 255, x + 0.01, max_value=2.0).numpy(), [46.0206])


def test_psnr_identical_is_inf_and_dtype_kept():
    clean, adversarial = _pair(dtype=np.float64)
    adversarial[1] = clean[1]
    value = psnr(clean, adversarial)
    assert value.dtype == tf.float64
    assert np.isinf(value[1]) and value[1] > 0 and np.all(np.isfinite(value.numpy()[[0, 2]]))
    half = psnr(tf.cast(clean, tf.float16), tf.cast(adversarial, tf.float16))
    assert half.dtype == tf.float16
    np.testing.assert_allclose(half.numpy()[[0, 2]], value.numpy()[[0, 2]], rtol=1e-2)


# -- SSIM ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_luma_matches_skimage(channels):
    clean, adversarial = _pair(shape=(2, 32, 27, channels), scale=0.1, dtype=np.float64)
    ours = ssim_luma(clean, adversarial).numpy()
    luma_clean, luma_adversarial = _luma_np(clean), _luma_np(adversarial)
    for index in range(2):
        want = skimage_metrics.structural_similarity(
            luma_clean[index],
            luma_adversarial[index],
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        np.testing.assert_allclose(ours[index], want, rtol=1e-6, atol=1e-7)
    assert np.all(ours < 1.0)
    np.testing.assert_allclose(ssim_luma(clean, clean).numpy(), [1.0, 1.0], atol=1e-6)


def test_ssim_luma_rejects_small_or_odd_channel_images():
    with pytest.raises(ValueError, match=r"at least 11x11.*\[1, 10, 12, 3\]"):
        ssim_luma(np.zeros([1, 10, 12, 3], np.float32), np.zeros([1, 10, 12, 3], np.float32))
    with pytest.raises(ValueError, match="1 \\(grayscale\\) or 3 \\(RGB\\) channels"):
        ssim_luma(np.zeros([1, 12, 12, 2], np.float32), np.zeros([1, 12, 12, 2], np.float32))


# -- Dirichlet energy --------------------------------------------------------------------------------
def _scipy_energy(perturbation, guide, *, normalized=True, per_unit_norm=True, **graph_kwargs):
    graph = ImageGraph(guide, **graph_kwargs)
    values = []
    for index in range(perturbation.shape[0]):
        weights = graph.to_scipy(index)
        n = weights.shape[0]
        degree = np.asarray(weights.sum(axis=1)).ravel()
        if normalized:
            laplacian = sp.identity(n) - graph.to_scipy(index, normalized=True)
        else:
            laplacian = sp.diags(degree) - weights
        r = perturbation[index].reshape(n, -1)
        energy = sum(r[:, c] @ (laplacian @ r[:, c]) for c in range(r.shape[1]))
        values.append(energy / np.sum(r**2) if per_unit_norm else energy)
    return np.asarray(values)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"connectivity": 8},
        {"kernel": "gaussian", "sigma": 0.3},
        {"normalized": False},
        {"per_unit_norm": False, "connectivity": 8, "normalized": False},
    ],
)
def test_dirichlet_energy_matches_scipy(options):
    rng = _rng(1)
    guide = rng.uniform(0, 1, (2, 6, 7, 3))
    perturbation = rng.standard_normal((2, 6, 7, 2))  # channel count need not match the guide
    graph_kwargs = {k: options[k] for k in ("connectivity", "kernel", "sigma") if k in options}
    laplacian_kwargs = {k: options[k] for k in ("normalized", "per_unit_norm") if k in options}
    ours = dirichlet_energy(perturbation, guide, **options)
    assert ours.dtype == tf.float64 and ours.shape == (2,)
    want = _scipy_energy(perturbation, guide, **graph_kwargs, **laplacian_kwargs)
    np.testing.assert_allclose(ours.numpy(), want, rtol=1e-10)


def test_dirichlet_energy_isolated_vertices_zero_and_scale():
    # a checkerboard with a sharp Gaussian kernel: every edge weight underflows to 0
    checker = (np.indices((4, 4)).sum(axis=0) % 2).astype(np.float64)[None, :, :, None]
    r = _rng(2).standard_normal((1, 4, 4, 1))
    kwargs = {"kernel": "gaussian", "sigma": 0.01}
    assert ImageGraph(checker, **kwargs).to_scipy().nnz == 0
    np.testing.assert_allclose(dirichlet_energy(r, checker, **kwargs).numpy(), [1.0])
    np.testing.assert_allclose(
        dirichlet_energy(r, checker, **kwargs).numpy(), _scipy_energy(r, checker, **kwargs)
    )
    guide = _rng(3).uniform(0, 1, (2, 5, 5, 3)).astype(np.float32)
    zero = dirichlet_energy(np.zeros([2, 5, 5, 3], np.float32), guide)
    assert zero.numpy().tolist() == [0.0, 0.0]
    r = _rng(4).standard_normal((2, 5, 5, 3)).astype(np.float32)
    np.testing.assert_allclose(
        dirichlet_energy(7.0 * r, guide).numpy(), dirichlet_energy(r, guide).numpy(), rtol=1e-5
    )
    assert np.all((dirichlet_energy(r, guide).numpy() >= 0) & (dirichlet_energy(r, guide) <= 2))
    constant = np.ones([1, 5, 5, 1], np.float32)
    assert dirichlet_energy(constant, guide[:1], normalized=False).numpy()[0] == 0.0


def test_dirichlet_energy_in_tf_function():
    guide = _rng(5).uniform(0, 1, (2, 8, 8, 3)).astype(np.float32)
    r = _rng(6).standard_normal((2, 8, 8, 3)).astype(np.float32)
    compiled = tf.function(lambda a, b: dirichlet_energy(a, b))
    np.testing.assert_allclose(
        compiled(r, guide).numpy(), dirichlet_energy(r, guide).numpy(), rtol=1e-5
    )


# -- total variation -------------------------------------------------------------------------------
def test_total_variation_by_hand():
    r = _rng(7).standard_normal((2, 5, 4, 3))
    want = [
        sum(
            abs(r[b, i + 1, j, c] - r[b, i, j, c])
            for i in range(4)
            for j in range(4)
            for c in range(3)
        )
        + sum(
            abs(r[b, i, j + 1, c] - r[b, i, j, c])
            for i in range(5)
            for j in range(3)
            for c in range(3)
        )
        for b in range(2)
    ]
    ours = total_variation(r)
    assert ours.dtype == tf.float64
    np.testing.assert_allclose(ours.numpy(), want, rtol=1e-12)
    np.testing.assert_allclose(
        ours.numpy(), tf.image.total_variation(tf.constant(r)).numpy(), rtol=1e-12
    )
    assert total_variation(np.full([1, 3, 3, 1], 0.3, np.float32)).numpy().tolist() == [0.0]


# -- visibility ------------------------------------------------------------------------------------
def _smooth_noise(guide: np.ndarray, alpha: float, seed: int) -> np.ndarray:
    """Normalized graph smoothing s(z) / s(1) of white noise (eq. 8-9), solved with scipy."""
    graph = ImageGraph(guide)
    n = graph.n_vertices
    regularized = (sp.identity(n) - alpha * graph.to_scipy(0, normalized=True)) / (1 - alpha)
    z = _rng(seed).standard_normal((n, guide.shape[-1]))
    solve = spla.factorized(sp.csc_matrix(regularized))
    ones = solve(np.ones(n))
    out = np.stack([solve(z[:, c]) / ones for c in range(z.shape[1])], axis=1)
    return out.reshape(guide.shape)


def _with_l2(clean: np.ndarray, direction: np.ndarray, norm: float) -> np.ndarray:
    return np.clip(clean + norm * direction / np.linalg.norm(direction), 0.0, 1.0)


def test_smooth_perturbation_is_less_visible_than_white_noise(photo):
    # the paper's ImageNet smoothing (alpha = 0.997) of white noise vs white noise, same L2 norm
    # (0.5 on 96x96x3: about 0.8 grey levels RMS)
    smooth = _with_l2(photo, _smooth_noise(photo, alpha=0.997, seed=8), 0.5)
    noise = _with_l2(photo, _rng(9).standard_normal(photo.shape), 0.5)
    clean = np.concatenate([photo, photo]).astype(np.float32)
    adversarial = np.concatenate([smooth, noise]).astype(np.float32)
    l2 = np.linalg.norm((adversarial - clean).reshape(2, -1), axis=1)
    np.testing.assert_allclose(l2, [0.5, 0.5], rtol=0.05)  # clipping changes little
    report = perceptual_report(clean, adversarial)
    assert list(report) == list(PERCEPTUAL_METRICS)
    assert all(value.shape == (2,) for value in report.values())
    np.testing.assert_allclose(report["l2"], l2, rtol=1e-5)
    vis_smooth, vis_noise = report["visibility"]
    assert 0 < vis_smooth < 0.5 * vis_noise, report["visibility"]
    assert report["dirichlet_energy"][0] < 0.2 * report["dirichlet_energy"][1]
    assert report["total_variation"][0] < 0.5 * report["total_variation"][1]
    assert report["ssim_luma"][0] > report["ssim_luma"][1]
    np.testing.assert_allclose(report["psnr"][0], report["psnr"][1], atol=0.5)  # same norm
    assert visibility(clean[:1], clean[:1]).numpy().tolist() == [0.0]


def test_visibility_flat_clean_image_and_definition():
    flat = np.full([2, 12, 12, 1], 0.5, np.float32)
    bumped = flat.copy()
    bumped[1, 6, 6] = 0.6
    value = visibility(flat, bumped, sigma_spatial=1.0).numpy()
    assert value[0] == 0.0 and np.isinf(value[1])
    # the definition: ||mag(x) - mag(x_o)|| / ||mag(x_o)||
    from tfsmooth.magnification import magnify

    clean, adversarial = _pair(shape=(2, 12, 12, 3), scale=0.02, seed=10)
    mag_c = magnify(clean, sigma_spatial=1.0).numpy()
    mag_a = magnify(adversarial, sigma_spatial=1.0).numpy()
    want = np.linalg.norm((mag_a - mag_c).reshape(2, -1), axis=1) / np.linalg.norm(
        mag_c.reshape(2, -1), axis=1
    )
    np.testing.assert_allclose(
        visibility(clean, adversarial, sigma_spatial=1.0).numpy(), want, rtol=1e-5
    )


# -- report and bad input --------------------------------------------------------------------------
def test_perceptual_report_subset_and_guide():
    clean, adversarial = _pair(shape=(2, 12, 12, 3))
    guide = np.flip(clean, axis=1).copy()
    report = perceptual_report(clean, adversarial, guide, metrics=["dirichlet_energy", "psnr"])
    assert list(report) == ["psnr", "dirichlet_energy"]
    np.testing.assert_allclose(
        report["dirichlet_energy"], dirichlet_energy(adversarial - clean, guide).numpy(), rtol=1e-6
    )
    with pytest.raises(ValueError, match="must name some of"):
        perceptual_report(clean, adversarial, metrics=["lpips"])
    with pytest.raises(ValueError, match="must name some of"):
        perceptual_report(clean, adversarial, metrics=[])


@pytest.mark.parametrize("function", [psnr, ssim_luma, visibility])
def test_bad_image_pairs(function):
    good = np.full([1, 12, 12, 3], 0.5, np.float32)
    with pytest.raises(
        ValueError, match=r"shape of `clean` \(shape \[1, 12, 12, 3\]\).*\[1, 12, 13"
    ):
        function(good, np.full([1, 12, 13, 3], 0.5, np.float32))
    with pytest.raises(ValueError, match="rank 4"):
        function(good[0], good[0])
    nan = good.copy()
    nan[0, 1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="`adversarial` must be finite"):
        function(good, nan)
    with pytest.raises(ValueError, match=r"`clean` must lie in \[0.0, 1.0\], got values in"):
        function(good + 0.6, good)
    with pytest.raises(TypeError, match="floating point"):
        function(np.zeros([1, 12, 12, 3], np.uint8), good)


def test_bad_perturbations():
    guide = np.full([1, 6, 6, 3], 0.5, np.float32)
    with pytest.raises(ValueError, match="batch size, height and width of `guide`"):
        dirichlet_energy(np.zeros([1, 6, 5, 3], np.float32), guide)
    with pytest.raises(ValueError, match="`guide` must lie in"):
        dirichlet_energy(np.zeros([1, 6, 6, 3], np.float32), guide + 1.0)
    with pytest.raises(ValueError, match="`perturbation` must be finite"):
        total_variation(np.full([1, 6, 6, 3], np.inf, np.float32))
    with pytest.raises(ValueError, match="rank 4"):
        total_variation(np.zeros([6, 6, 3], np.float32))
    with pytest.raises(ValueError, match="connectivity"):
        dirichlet_energy(np.zeros([1, 6, 6, 3], np.float32), guide, connectivity=6)
    with pytest.raises(TypeError, match="bools"):
        dirichlet_energy(np.zeros([1, 6, 6, 3], np.float32), guide, normalized=1)
    with pytest.raises(ValueError, match="max_value"):
        psnr(guide, guide, max_value=0.0)
