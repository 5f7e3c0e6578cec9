r"""Global statistics of an attack (paper §5.1), as pure numpy functions.

Given a test set of :math:`N_0` images, only the subset :math:`X` of the :math:`N` images that
the model classifies correctly counts. With :math:`X_{suc} \subseteq X` the images on which the
attack succeeds and :math:`D(\mathbf{x}_o) = \lVert \mathbf{x}_a - \mathbf{x}_o \rVert_2` the
distortion of a success (eq. 20–21):

.. math::

    P_{suc} = \frac{N_{suc}}{N}, \qquad
    \bar{D} = \frac{1}{N_{suc}} \sum_{\mathbf{x}_o \in X_{suc}} D(\mathbf{x}_o), \qquad
    P(D) = \frac{1}{N} \lvert \{\mathbf{x}_o \in X_{suc} : D(\mathbf{x}_o) \le D\} \rvert.

:math:`\bar{D}` is the *conditional* mean distortion (conditioned on success); it is ``NaN`` when
nothing succeeded. For distortion-targeting attacks run at several budgets
(:func:`combine_multi_epsilon`), an image counts as a success if any run succeeds and its
distortion is the smallest one over the successful runs.

All functions take array-likes (numpy arrays, lists, tensors) and return numpy values.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "combine_multi_epsilon",
    "conditional_mean_distortion",
    "operating_characteristic",
    "success_probability",
]


def _as_bool_vector(value: Any, name: str) -> np.ndarray:
    array = np.asarray(value)
    if array.ndim != 1:
        raise ValueError(f"`{name}` must be a vector [N], got shape {array.shape}")
    if array.dtype != bool:
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError(f"`{name}` must hold booleans, got values {np.unique(array)[:5]}")
        array = array.astype(bool)
    return array


def _as_distance_vector(value: Any, name: str, size: int) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64)
    if array.shape != (size,):
        raise ValueError(f"`{name}` must have shape ({size},), got {array.shape}")
    return array


def success_probability(success: Any, correct: Any = None) -> float:
    """:math:`P_{suc} = N_{suc} / N` over the correctly classified images.

    Args:
        success: bool ``[N0]``: the attack succeeded on image ``i``.
        correct: optional bool ``[N0]``: image ``i`` is classified correctly without attack
            (the mask of :math:`X`); ``None`` means all of them.

    Returns:
        The fraction of correctly classified images that the attack fooled; ``NaN`` if no image
        is correctly classified.

    Example:
        >>> success_probability([True, True, False, True], correct=[True, True, True, False])
        0.6666666666666666
    """
    success = _as_bool_vector(success, "success")
    if correct is None:
        correct = np.ones_like(success)
    correct = _as_bool_vector(correct, "correct")
    if correct.shape != success.shape:
        raise ValueError(
            f"`correct` must have the shape of `success` {success.shape}, got {correct.shape}"
        )
    n = int(correct.sum())
    if n == 0:
        return float("nan")
    return float(np.sum(success & correct)) / n


def conditional_mean_distortion(distances: Any, success: Any) -> float:
    r"""Mean distortion over the successes only, :math:`\bar{D}` of eq. 20.

    Args:
        distances: float ``[N]``: L2 distortion per image (ignored where ``success`` is false;
            may be ``NaN`` or ``inf`` there).
        success: bool ``[N]``.

    Returns:
        The mean of ``distances[success]``; ``NaN`` when there is no success (a distortion makes
        no sense for a failure).

    Raises:
        ValueError: shapes differ, or a successful image has a non-finite distance.

    Example:
        >>> conditional_mean_distortion([1.0, 3.0, float("nan")], [True, True, False])
        2.0
        >>> conditional_mean_distortion([1.0], [False])
        nan
    """
    success = _as_bool_vector(success, "success")
    distances = _as_distance_vector(distances, "distances", success.shape[0])
    if not success.any():
        return float("nan")
    chosen = distances[success]
    if not np.all(np.isfinite(chosen)):
        raise ValueError("`distances` must be finite wherever `success` is true")
    return float(np.mean(chosen))


def operating_characteristic(
    distances: Any, success: Any, n_total: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    r"""The operating characteristic :math:`P(D)` of eq. 21, a non-decreasing step function.

    Args:
        distances: float ``[N]``: distortion per image (only read where ``success``).
        success: bool ``[N]``.
        n_total: the denominator :math:`N` (number of correctly classified images); default
            ``len(success)``.

    Returns:
        ``(thresholds, probabilities)``: the sorted distinct distortions of the successes and,
        for each, :math:`P(D) = |\{x \in X_{suc} : D(x) \le D\}| / N`. Between two thresholds
        the function is constant; below the first it is 0, and at the last it equals
        :math:`P_{suc}`. Both are empty when nothing succeeded.

    Example:
        >>> d, p = operating_characteristic([2.0, 1.0, 2.0, 9.0], [True, True, True, False])
        >>> d.tolist(), p.tolist()
        ([1.0, 2.0], [0.25, 0.75])
    """
    success = _as_bool_vector(success, "success")
    distances = _as_distance_vector(distances, "distances", success.shape[0])
    if n_total is None:
        n_total = int(success.shape[0])
    if isinstance(n_total, bool) or not isinstance(n_total, (int, np.integer)) or n_total < 1:
        raise ValueError(f"`n_total` must be an integer >= 1, got {n_total!r}")
    n_success = int(success.sum())
    if n_success > n_total:
        raise ValueError(f"`n_total` ({n_total}) is smaller than the number of successes")
    chosen = np.sort(distances[success])
    if not np.all(np.isfinite(chosen)):
        raise ValueError("`distances` must be finite wherever `success` is true")
    thresholds = np.unique(chosen)
    counts = np.searchsorted(chosen, thresholds, side="right")
    return thresholds, counts.astype(np.float64) / float(n_total)


def combine_multi_epsilon(
    success: Any, distances: Any, *, return_index: bool = False
) -> tuple[np.ndarray, ...]:
    """Combines K runs of a distortion-targeting attack (paper §5.1).

    An image is a success if any of the runs succeeds on it, and its distortion is the minimum
    distortion over the successful runs.

    Args:
        success: bool ``[K, N]``: run ``k`` succeeded on image ``i``.
        distances: float ``[K, N]``: distortion of run ``k`` on image ``i``.
        return_index: also return the index of the chosen run.

    Returns:
        ``(success_any, distance)``: bool ``[N]`` and float64 ``[N]`` (``NaN`` where no run
        succeeded); with ``return_index``, also int ``[N]``, the run of the minimum (``-1``
        where none succeeded).

    Example:
        >>> ok, d = combine_multi_epsilon([[False, True], [True, True]], [[0.5, 2.0], [1.5, 1.0]])
        >>> ok.tolist(), d.tolist()
        ([True, True], [1.5, 1.0])
    """
    success = np.asarray(success)
    if success.ndim != 2 or success.shape[0] < 1:
        raise ValueError(f"`success` must have shape [K, N] with K >= 1, got {success.shape}")
    success = success.astype(bool)
    distances = np.asarray(distances, dtype=np.float64)
    if distances.shape != success.shape:
        raise ValueError(
            f"`distances` must have the shape of `success` {success.shape}, got {distances.shape}"
        )
    masked = np.where(success, distances, np.inf)
    if np.any(np.isnan(masked)):
        raise ValueError("`distances` must not be NaN wherever `success` is true")
    index = np.argmin(masked, axis=0)
    success_any = success.any(axis=0)
    best = np.take_along_axis(masked, index[None, :], axis=0)[0]
    distance = np.where(success_any, best, np.nan).astype(np.float64)
    if return_index:
        return success_any, distance, np.where(success_any, index, -1)
    return success_any, distance
