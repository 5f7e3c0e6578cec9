r"""Perceptual measures of adversarial perturbations: PSNR, SSIM, graph smoothness, visibility.

The paper compares attacks by their L2 distortion and by eye (its Figs. 1, 4-6). These batched
TensorFlow functions put numbers on what the figures show. Every function takes channels-last
batches ``[batch, height, width, channels]`` (images in ``[0, 1]``) and returns one value per image,
a float tensor ``[batch]`` of the input's dtype:

- :func:`psnr` and :func:`ssim_luma`: the usual fidelity scores (higher = closer);
- :func:`dirichlet_energy`: the smoothness of a perturbation on the graph of the clean image
  (paper §3-4; lower = smoother, i.e. following the image's edges);
- :func:`total_variation`: anisotropic total variation of a perturbation (lower = flatter);
- :func:`visibility`: how much a perturbation changes the adversarial magnification of
  Appendix A (lower = less visible);
- :func:`perceptual_report`: all of them at once, as numpy arrays (for the reproduction rows).

Input checks (rank, matching shapes, NaN/Inf, images outside ``[0, 1]``) raise ``ValueError``
saying what was expected and what was received; the value checks run where the values are known
(eagerly, or on constants inside :func:`tf.function`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v
from tfsmooth.graphs.image_graph import ImageGraph, shift
from tfsmooth.magnification import magnify

logger = logging.getLogger(__name__)

__all__ = [
    "LUMA_WEIGHTS",
    "PERCEPTUAL_METRICS",
    "SSIM_FILTER_SIZE",
    "dirichlet_energy",
    "perceptual_report",
    "psnr",
    "ssim_luma",
    "total_variation",
    "visibility",
]

#: ITU-R BT.601 luma weights of R, G, B (:func:`ssim_luma`).
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Side of the Gaussian SSIM window; images must be at least this high and wide.
SSIM_FILTER_SIZE = 11
#: Keys of :func:`perceptual_report`, in order.
PERCEPTUAL_METRICS = (
    "l2",
    "psnr",
    "ssim_luma",
    "dirichlet_energy",
    "total_variation",
    "visibility",
)


def _compute_dtype(dtype: tf.DType) -> tf.DType:
    """Half precision is computed in float32 (squares and logs underflow)."""
    return tf.float32 if dtype in (tf.float16, tf.bfloat16) else dtype


def _shape(tensor: tf.Tensor) -> str:
    return str(tensor.shape.as_list() if tensor.shape.rank is not None else "unknown")


def _check_same_shape(a: tf.Tensor, b: tf.Tensor, a_name: str, b_name: str, axes: int) -> None:
    """``b`` must match ``a`` on the first ``axes`` axes (4: the whole shape)."""
    if a.shape.rank is None or b.shape.rank is None:
        return
    if not a.shape[:axes].is_compatible_with(b.shape[:axes]):
        what = "shape" if axes == 4 else "batch size, height and width"
        raise ValueError(
            f"`{b_name}` must have the {what} of `{a_name}` (shape {_shape(a)}), got shape "
            f"{_shape(b)}"
        )


def _image_pair(clean: Any, adversarial: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Checks and converts a clean / adversarial pair; ``adversarial`` gets ``clean``'s dtype."""
    clean = v.check_image_batch(clean, "clean", bounds=(0.0, 1.0))
    adversarial = v.check_image_batch(adversarial, "adversarial", bounds=(0.0, 1.0))
    _check_same_shape(clean, adversarial, "clean", "adversarial", 4)
    return clean, tf.cast(adversarial, clean.dtype)


def _per_image_sum(x: tf.Tensor) -> tf.Tensor:
    return tf.reduce_sum(x, axis=[1, 2, 3])


def psnr(
    clean: Any, adversarial: Any, max_value: float = 1.0, *, name: str | None = None
) -> tf.Tensor:
    r"""Peak signal-to-noise ratio per image, in dB.

    .. math::

        \mathrm{PSNR}(x_o, x) = 10 \log_{10} \frac{\mathrm{max}^2}{\mathrm{MSE}(x_o, x)}, \qquad
        \mathrm{MSE} = \frac{1}{n d} \sum_{i, c} (x_{ic} - x_{o,ic})^2

    over all ``n = H W`` pixels and ``d`` channels. Identical images give ``+inf``.

    Args:
        clean: ``[batch, height, width, channels]`` in ``[0, 1]``, floating point.
        adversarial: same shape, in ``[0, 1]``.
        max_value: peak value of the images, > 0 (1 for ``[0, 1]``).
        name: optional name scope.

    Returns:
        ``[batch]``, dtype of ``clean``; ``inf`` where the images are identical.

    Raises:
        ValueError: bad rank, shapes that differ, NaN/Inf, values outside ``[0, 1]``.
        TypeError: non-float input.

    Example:
        >>> x = tf.fill([2, 4, 4, 3], 0.5)
        >>> psnr(x, x + tf.constant([0.0, 0.1])[:, None, None, None]).numpy().round(2)
        array([inf, 20.], dtype=float32)
    """
    max_value = v.check_positive(max_value, "max_value")
    with tf.name_scope(name or "psnr"):
        clean, adversarial = _image_pair(clean, adversarial)
        dtype = clean.dtype
        compute = _compute_dtype(dtype)
        diff = tf.cast(adversarial, compute) - tf.cast(clean, compute)
        mse = tf.reduce_mean(tf.square(diff), axis=[1, 2, 3])
        ln10 = tf.math.log(tf.constant(10.0, compute))
        value = (20.0 * np.log10(max_value)) - 10.0 * tf.math.log(mse) / ln10  # mse = 0: +inf
        return tf.cast(value, dtype)


def _luma(images: tf.Tensor, name: str) -> tf.Tensor:
    channels = images.shape[-1]
    if channels == 1:
        return images
    if channels == 3:
        weights = tf.constant(LUMA_WEIGHTS, images.dtype)
        return tf.reduce_sum(images * weights, axis=-1, keepdims=True)
    raise ValueError(
        f"`{name}` must have 1 (grayscale) or 3 (RGB) channels for luma, got shape {_shape(images)}"
    )


def ssim_luma(clean: Any, adversarial: Any, *, name: str | None = None) -> tf.Tensor:
    r"""Structural similarity (SSIM, Wang et al. 2004) of the luma of each image pair.

    RGB is reduced to BT.601 luma :math:`Y = 0.299 R + 0.587 G + 0.114 B` (a single channel is
    used as is), then :func:`tf.image.ssim` is applied with the standard settings: an 11x11
    Gaussian window of standard deviation 1.5, :math:`k_1 = 0.01`, :math:`k_2 = 0.03`, peak value
    1, averaged over the valid window positions:

    .. math::

        \mathrm{SSIM}(a, b) = \operatorname{mean}_{\text{windows}}
            \frac{(2 \mu_a \mu_b + C_1)(2 \sigma_{ab} + C_2)}
                 {(\mu_a^2 + \mu_b^2 + C_1)(\sigma_a^2 + \sigma_b^2 + C_2)}, \qquad
            C_i = (k_i \cdot 1)^2.

    This equals ``skimage.metrics.structural_similarity(a, b, gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1)`` on the luma images.

    Args:
        clean: ``[batch, height, width, channels]`` in ``[0, 1]``, 1 or 3 channels, height and
            width at least 11.
        adversarial: same shape, in ``[0, 1]``.
        name: optional name scope.

    Returns:
        ``[batch]``, dtype of ``clean``; 1 for identical images, at most 1.

    Raises:
        ValueError: bad rank, shapes that differ, other channel counts, images smaller than
            11x11, NaN/Inf, values outside ``[0, 1]``.
        TypeError: non-float input.

    Example:
        >>> x = tf.reshape(tf.linspace(0.0, 1.0, 3 * 16 * 16), [1, 16, 16, 3])
        >>> ssim_luma(x, x).numpy()
        array([1.], dtype=float32)
        >>> float(ssim_luma(x, 0.5 * x)[0]) < 1.0
        True
    """
    with tf.name_scope(name or "ssim_luma"):
        clean, adversarial = _image_pair(clean, adversarial)
        height, width = clean.shape[1], clean.shape[2]
        if (height is not None and height < SSIM_FILTER_SIZE) or (
            width is not None and width < SSIM_FILTER_SIZE
        ):
            raise ValueError(
                f"ssim_luma needs images of at least {SSIM_FILTER_SIZE}x{SSIM_FILTER_SIZE} pixels "
                f"(its Gaussian window), got shape {_shape(clean)}"
            )
        dtype = clean.dtype
        compute = _compute_dtype(dtype)
        luma_clean = _luma(tf.cast(clean, compute), "clean")
        luma_adversarial = _luma(tf.cast(adversarial, compute), "adversarial")
        value = tf.image.ssim(
            luma_clean,
            luma_adversarial,
            max_val=1.0,
            filter_size=SSIM_FILTER_SIZE,
            filter_sigma=1.5,
            k1=0.01,
            k2=0.03,
        )
        return tf.cast(value, dtype)


def _check_perturbation(perturbation: Any) -> tf.Tensor:
    return v.check_image_batch(perturbation, "perturbation")


def dirichlet_energy(
    perturbation: Any,
    guide: Any,
    *,
    connectivity: int = 4,
    kernel: str = "laplacian",
    sigma: float = 0.1,
    normalized: bool = True,
    per_unit_norm: bool = True,
    name: str | None = None,
) -> tf.Tensor:
    r"""Graph smoothness of a perturbation on the graph of the guide image (paper §3-4).

    With :math:`W` the weights of the guide's pixel graph (:class:`~tfsmooth.graphs.ImageGraph`,
    eq. 5), :math:`D = \operatorname{diag}(W \mathbf{1})` and the normalized Laplacian
    :math:`L = I - D^{-1/2} W D^{-1/2}` (``normalized=False``: :math:`L = D - W`), the energy of
    a perturbation :math:`r` with channels :math:`r_c \in \mathbb{R}^n` is

    .. math::

        E(r) = \frac{\sum_c r_c^\top L\, r_c}{\sum_c r_c^\top r_c}
             = \frac{\sum_c \sum_{i \sim j} w_{ij}
                     \big(r_{ic} / \sqrt{d_i} - r_{jc} / \sqrt{d_j}\big)^2}{\lVert r \rVert_2^2},

    the Rayleigh quotient of :math:`L`, summed over channels in the numerator and divided by the
    squared L2 norm of the whole perturbation ("per unit norm"; ``per_unit_norm=False`` returns
    the numerator alone). It is invariant to the scale of :math:`r` and, for the normalized
    Laplacian, lies in ``[0, 2]``: near 0 for a perturbation that is smooth on the graph, i.e.
    that varies only across the guide's edges (what the smoothing of eq. 8 produces), large
    for white noise. The null space of the normalized Laplacian is spanned by
    :math:`D^{1/2} \mathbf{1}`, not :math:`\mathbf{1}`, so a constant perturbation scores a small
    positive value (border pixels have fewer neighbours); with ``normalized=False`` it scores 0.
    Pixels without any edge (degree 0, possible only with the Gaussian kernel or a 1x1 image)
    count as :math:`L_{ii} = 1`. A zero perturbation gives 0.

    Args:
        perturbation: ``[batch, height, width, channels]`` floating point (e.g.
            ``adversarial - clean``), any number of channels.
        guide: ``[batch, height, width, guide_channels]`` in ``[0, 1]``, the image whose graph
            is used (normally the clean image).
        connectivity: 4 or 8 neighbours.
        kernel: ``"laplacian"`` (paper) or ``"gaussian"``.
        sigma: kernel scale, > 0 (0.1 by default, as the smoothing).
        normalized: normalized Laplacian :math:`I - D^{-1/2} W D^{-1/2}` (default) or the
            combinatorial :math:`D - W`.
        per_unit_norm: divide by :math:`\lVert r \rVert_2^2` (default).
        name: optional name scope.

    Returns:
        ``[batch]``, dtype of ``perturbation``.

    Raises:
        ValueError: bad rank, batch / height / width that differ from the guide's, NaN/Inf,
            a guide outside ``[0, 1]``, bad graph parameters.
        TypeError: non-float input.

    Example:
        >>> guide = tf.concat([tf.zeros([1, 4, 2, 1]), tf.ones([1, 4, 2, 1])], axis=2)
        >>> follows_edge = guide - 0.5      # changes only across the guide's edge
        >>> crosses_edge = tf.transpose(follows_edge, [0, 2, 1, 3])
        >>> dirichlet_energy(tf.concat([follows_edge, crosses_edge], 0),
        ...                  tf.concat([guide, guide], 0)).numpy().round(3)
        array([0.008, 0.342], dtype=float32)
    """
    if not isinstance(normalized, bool) or not isinstance(per_unit_norm, bool):
        raise TypeError(
            f"`normalized` and `per_unit_norm` must be bools, got {normalized!r} and "
            f"{per_unit_norm!r}"
        )
    with tf.name_scope(name or "dirichlet_energy"):
        perturbation = _check_perturbation(perturbation)
        dtype = perturbation.dtype
        compute = _compute_dtype(dtype)
        guide = v.check_image_batch(guide, "guide", bounds=(0.0, 1.0), dtype=compute)
        _check_same_shape(guide, perturbation, "guide", "perturbation", 3)
        graph = ImageGraph(guide, connectivity=connectivity, kernel=kernel, sigma=sigma)
        r = tf.cast(perturbation, compute)
        degree = graph.degree[..., None]  # [B, H, W, 1]
        isolated = tf.zeros([], compute)
        if normalized:
            positive = degree > 0
            inv_sqrt = tf.where(positive, tf.math.rsqrt(tf.where(positive, degree, 1.0)), 0.0)
            u = r * inv_sqrt
            isolated = _per_image_sum(tf.where(positive, 0.0, tf.square(r)))
        else:
            u = r
        half = len(graph.offsets) // 2  # forward offsets: each edge once
        energy = isolated
        for k, (d_row, d_col) in enumerate(graph.offsets[:half]):
            diff = shift(u, d_row, d_col) - u  # weight is 0 where the neighbour is outside
            energy = energy + _per_image_sum(graph.weights[..., k : k + 1] * tf.square(diff))
        if per_unit_norm:
            energy = tf.math.divide_no_nan(energy, _per_image_sum(tf.square(r)))
        return tf.cast(energy, dtype)


def total_variation(perturbation: Any, *, name: str | None = None) -> tf.Tensor:
    r"""Anisotropic total variation per image (plain, not normalized).

    .. math::

        \mathrm{TV}(r) = \sum_{c} \Big( \sum_{i, j} |r_{i+1, j, c} - r_{i, j, c}|
                                      + \sum_{i, j} |r_{i, j+1, c} - r_{i, j, c}| \Big),

    the sum of absolute differences between vertical and horizontal neighbours, over all
    channels (as :func:`tf.image.total_variation`). It scales linearly with :math:`r`; divide by
    ``tf.norm`` of the perturbation yourself for a scale-free number. 0 for a constant input.

    Args:
        perturbation: ``[batch, height, width, channels]`` floating point (a perturbation or
            an image).
        name: optional name scope.

    Returns:
        ``[batch]``, dtype of ``perturbation``.

    Raises:
        ValueError: bad rank, NaN/Inf.
        TypeError: non-float input.

    Example:
        >>> r = tf.constant([[0.0, 1.0], [1.0, 3.0]])[None, :, :, None]
        >>> total_variation(r).numpy()
        array([5.], dtype=float32)
    """
    with tf.name_scope(name or "total_variation"):
        perturbation = _check_perturbation(perturbation)
        dtype = perturbation.dtype
        r = tf.cast(perturbation, _compute_dtype(dtype))
        vertical = _per_image_sum(tf.abs(r[:, 1:] - r[:, :-1]))
        horizontal = _per_image_sum(tf.abs(r[:, :, 1:] - r[:, :, :-1]))
        return tf.cast(vertical + horizontal, dtype)


# Eagerly, a large magnification window (441 offsets at the paper's radius 10) runs faster as one
# graph (a tf.while_loop) than as thousands of eager ops, despite the tracing; shapes are relaxed
# so new batch sizes do not retrace. Small windows stay eager (no tracing cost).
_magnify_graph = tf.function(magnify, reduce_retracing=True, autograph=False)
_EAGER_MAX_OFFSETS = 25


def _magnify_radius(radius: Any, sigma_spatial: Any) -> int:
    """The window radius :func:`magnify` will use (its own checks raise on bad values)."""
    if isinstance(radius, (int, np.integer)) and not isinstance(radius, bool):
        return int(radius)
    if isinstance(sigma_spatial, (int, float)) and not isinstance(sigma_spatial, bool):
        return max(1, math.ceil(2.0 * float(sigma_spatial)))
    return 0


def visibility(
    clean: Any,
    adversarial: Any,
    *,
    eta: float = 0.8,
    sigma_spatial: float = 5.0,
    sigma_range: float = 5.0,
    radius: int | None = None,
    name: str | None = None,
) -> tf.Tensor:
    r"""How much a perturbation stands out under adversarial magnification (Appendix A).

    With :math:`\operatorname{mag}` the adversarial magnification of
    :func:`tfsmooth.magnification.magnify` (a local normalization: detail over local standard
    deviation, which makes perturbations in flat regions glaring),

    .. math::

        V(x_o, x) = \frac{\lVert \operatorname{mag}(x) - \operatorname{mag}(x_o) \rVert_2}
                         {\lVert \operatorname{mag}(x_o) \rVert_2},

    norms over all pixels and channels of one image: the change the perturbation makes to the
    magnified image, relative to the magnified clean image's own content. 0 means invisible under
    magnification; a perturbation that follows the image (smooth on its graph) scores far lower
    than white noise of the same L2 norm, which magnification reveals in flat regions. For a
    flat clean image (:math:`\operatorname{mag}(x_o) = 0`) the value is 0 if
    :math:`\operatorname{mag}(x) = 0` too, else ``inf``.

    The score is not linear in the perturbation's amplitude: magnification divides by the local
    standard deviation of the image it magnifies, which a strong perturbation raises, so the
    score saturates (around 1 for strong white noise). Compare perturbations of equal L2 norm.
    For reference, on the astronaut photo of ``tfsmooth/assets`` at 96x96 with
    :math:`\lVert r \rVert_2 = 0.5`: white noise scores about 0.45, the same noise smoothed on
    the photo's graph (eq. 8-9, :math:`\alpha = 0.997`) about 0.14.

    Args:
        clean: ``[batch, height, width, channels]`` in ``[0, 1]``.
        adversarial: same shape, in ``[0, 1]``.
        eta: magnification's weight of the local standard deviation (paper: 0.8).
        sigma_spatial: bilateral domain kernel, pixels (paper: 5).
        sigma_range: bilateral range kernel, grey levels 0..255 (paper: 5).
        radius: filter window radius (default ``ceil(2 sigma_spatial)``).
        name: optional name scope.

    Returns:
        ``[batch]``, dtype of ``clean``.

    Raises:
        ValueError: bad rank, shapes that differ, NaN/Inf, values outside ``[0, 1]``, bad
            magnification parameters.
        TypeError: non-float input.

    Example:
        >>> x = tf.reshape(tf.linspace(0.2, 0.8, 16 * 16), [1, 16, 16, 1])
        >>> noise = 0.02 * tf.random.stateless_normal([1, 16, 16, 1], seed=[0, 1])
        >>> v = visibility(tf.concat([x, x], 0), tf.concat([x, x + noise], 0),
        ...                sigma_spatial=1.0)
        >>> float(v[0]), bool(v[1] > 0.1)
        (0.0, True)
    """
    with tf.name_scope(name or "visibility"):
        clean, adversarial = _image_pair(clean, adversarial)
        dtype = clean.dtype
        kwargs: dict[str, Any] = {
            "eta": eta,
            "sigma_spatial": sigma_spatial,
            "sigma_range": sigma_range,
            "radius": radius,
        }
        compute = _compute_dtype(dtype)
        magnify_fn = magnify
        window = 2 * _magnify_radius(radius, sigma_spatial) + 1
        if tf.executing_eagerly() and window * window > _EAGER_MAX_OFFSETS:
            magnify_fn = _magnify_graph
        both = tf.cast(magnify_fn(tf.concat([clean, adversarial], axis=0), **kwargs), compute)
        mag_clean, mag_adversarial = tf.split(both, 2, axis=0)
        numerator = tf.sqrt(_per_image_sum(tf.square(mag_adversarial - mag_clean)))
        denominator = tf.sqrt(_per_image_sum(tf.square(mag_clean)))
        inf = tf.constant(np.inf, compute)
        value = tf.where(
            denominator > 0,
            numerator / tf.where(denominator > 0, denominator, 1.0),
            tf.where(numerator > 0, inf, 0.0),
        )
        return tf.cast(value, dtype)


def perceptual_report(
    clean: Any,
    adversarial: Any,
    guide: Any = None,
    *,
    metrics: Sequence[str] | None = None,
    connectivity: int = 4,
    kernel: str = "laplacian",
    sigma: float = 0.1,
) -> dict[str, np.ndarray]:
    r"""All perceptual measures of ``adversarial`` against ``clean`` at once, as numpy arrays.

    Keys (:data:`PERCEPTUAL_METRICS`), each a float array ``[batch]``:

    - ``"l2"``: :math:`\lVert x - x_o \rVert_2` (the paper's distortion);
    - ``"psnr"``: :func:`psnr` in dB (``inf`` where nothing changed);
    - ``"ssim_luma"``: :func:`ssim_luma` (needs images of at least 11x11);
    - ``"dirichlet_energy"``: :func:`dirichlet_energy` of :math:`r = x - x_o` on the graph of
      ``guide`` (normalized Laplacian, per unit norm, graph parameters as given);
    - ``"total_variation"``: :func:`total_variation` of :math:`r`;
    - ``"visibility"``: :func:`visibility` with the paper's magnification settings.

    Needs eager execution (it returns numpy values).

    Args:
        clean: ``[batch, height, width, channels]`` in ``[0, 1]``.
        adversarial: same shape, in ``[0, 1]``.
        guide: image whose graph measures smoothness; default ``clean``.
        metrics: subset of :data:`PERCEPTUAL_METRICS` to compute (default: all).
        connectivity: graph connectivity for ``"dirichlet_energy"``.
        kernel: graph kernel for ``"dirichlet_energy"``.
        sigma: graph kernel scale for ``"dirichlet_energy"``.

    Returns:
        ``{name: np.ndarray [batch]}`` in the order of :data:`PERCEPTUAL_METRICS`.

    Raises:
        ValueError: as the individual functions, or an unknown metric name.

    Example:
        >>> x = tf.fill([2, 12, 12, 3], 0.5)
        >>> report = perceptual_report(x, x + 0.01, metrics=["l2", "psnr", "total_variation"])
        >>> {key: value.round(3).tolist() for key, value in report.items()}
        {'l2': [0.208, 0.208], 'psnr': [40.0, 40.0], 'total_variation': [0.0, 0.0]}
    """
    if metrics is None:
        chosen: tuple[str, ...] = PERCEPTUAL_METRICS
    else:
        if isinstance(metrics, str):
            metrics = [metrics]
        unknown = [m for m in metrics if m not in PERCEPTUAL_METRICS]
        if unknown or not metrics:
            raise ValueError(
                f"`metrics` must name some of {PERCEPTUAL_METRICS}, got {list(metrics)!r}"
            )
        chosen = tuple(m for m in PERCEPTUAL_METRICS if m in metrics)
    if not tf.executing_eagerly():
        raise RuntimeError("perceptual_report() returns numpy values: call it eagerly")
    clean_t, adversarial_t = _image_pair(clean, adversarial)
    guide_t = clean_t if guide is None else guide
    perturbation = adversarial_t - clean_t
    compute = {
        "l2": lambda: tf.cast(
            tf.sqrt(_per_image_sum(tf.square(tf.cast(perturbation, tf.float64)))), clean_t.dtype
        ),
        "psnr": lambda: psnr(clean_t, adversarial_t),
        "ssim_luma": lambda: ssim_luma(clean_t, adversarial_t),
        "dirichlet_energy": lambda: dirichlet_energy(
            perturbation, guide_t, connectivity=connectivity, kernel=kernel, sigma=sigma
        ),
        "total_variation": lambda: total_variation(perturbation),
        "visibility": lambda: visibility(clean_t, adversarial_t),
    }
    report = {key: np.asarray(compute[key]()) for key in chosen}
    logger.debug("perceptual report of %d images: %s", int(clean_t.shape[0] or 0), list(report))
    return report
