r"""The image graph of *Smooth Adversarial Examples*, section 3 (eq. 5).

Each pixel of a guide image is a vertex. Pixels ``i`` and ``j`` that are spatial neighbours
(4- or 8-connectivity) are joined by an edge of weight

.. math::

    w_{ij} = k_f(\mathbf{x}_i, \mathbf{x}_j), \qquad
    k_f = \exp\!\left(-\frac{\lVert \mathbf{x}_i - \mathbf{x}_j \rVert}{\sigma}\right)
    \ \text{(laplacian)} \quad\text{or}\quad
    \exp\!\left(-\frac{\lVert \mathbf{x}_i - \mathbf{x}_j \rVert^2}{2\sigma^2}\right)
    \ \text{(gaussian)},

with :math:`\lVert\cdot\rVert` the Euclidean norm over channels (one graph for all channels) and
the spatial kernel :math:`k_s` equal to one on neighbours and zero elsewhere. Weights are stored
as a *stencil* ``[batch, height, width, K]``: entry ``[b, r, c, k]`` is the weight of the edge from
pixel ``(r, c)`` to ``(r + dr_k, c + dc_k)`` with ``(dr_k, dc_k) = NEIGHBOUR_OFFSETS[K][k]``, and 0
where that neighbour falls outside the image. Vertices are numbered row-major,
``i = r * width + c``, as in ``tf.reshape(image, [batch, height * width, channels])``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import tensorflow as tf

from tfsmooth import _validation as v

logger = logging.getLogger(__name__)

__all__ = ["KERNELS", "NEIGHBOUR_OFFSETS", "ImageGraph", "edge_weights"]

#: Feature kernels :math:`k_f` by name.
KERNELS = ("laplacian", "gaussian")

#: Neighbour offsets ``(d_row, d_col)`` for each connectivity; opposite offsets are ``K/2`` apart.
NEIGHBOUR_OFFSETS: dict[int, tuple[tuple[int, int], ...]] = {
    4: ((0, 1), (1, 0), (0, -1), (-1, 0)),
    8: ((0, 1), (1, 0), (1, 1), (1, -1), (0, -1), (-1, 0), (-1, -1), (-1, 1)),
}


def shift(x: tf.Tensor, d_row: int, d_col: int) -> tf.Tensor:
    """``y[:, r, c] = x[:, r + d_row, c + d_col]``, zero outside the image (shapes ``[B,H,W,...]``)."""
    height, width = tf.shape(x)[1], tf.shape(x)[2]
    pad = [[0, 0], [max(-d_row, 0), max(d_row, 0)], [max(-d_col, 0), max(d_col, 0)]]
    pad += [[0, 0]] * (x.shape.rank - 3)
    padded = tf.pad(x, pad)
    begin = [0, max(d_row, 0), max(d_col, 0)] + [0] * (x.shape.rank - 3)
    size = [-1, height, width] + [-1] * (x.shape.rank - 3)
    return tf.slice(padded, begin, size)


def edge_weights(
    guide: tf.Tensor,
    *,
    connectivity: int = 4,
    kernel: str = "laplacian",
    sigma: float = 0.1,
) -> tf.Tensor:
    """Stencil edge weights ``[B, H, W, K]`` of the graph guided by ``guide`` ``[B, H, W, C]``.

    The guide is treated as a constant (no gradient flows into the weights).

    Example:
        >>> w = edge_weights(tf.zeros([1, 2, 2, 1]))
        >>> w[0, :, :, 0].numpy()  # edges to the right neighbour; none leave the last column
        array([[1., 0.],
               [1., 0.]], dtype=float32)
    """
    offsets = NEIGHBOUR_OFFSETS[connectivity]
    guide = tf.stop_gradient(guide)
    half = len(offsets) // 2
    forward = []
    for d_row, d_col in offsets[:half]:
        diff = shift(guide, d_row, d_col) - guide
        dist2 = tf.reduce_sum(tf.square(diff), axis=-1)
        if kernel == "laplacian":
            weight = tf.exp(-tf.sqrt(dist2) / sigma)
        else:
            weight = tf.exp(-dist2 / (2.0 * sigma * sigma))
        forward.append(weight * _inside_mask(guide, d_row, d_col))
    # The edge (i -> i + o) for a backward offset o = -f is the edge (i - f -> i) of offset f.
    backward = [shift(w, -dr, -dc) for w, (dr, dc) in zip(forward, offsets[:half])]
    return tf.stack(forward + backward, axis=-1)


def _inside_mask(guide: tf.Tensor, d_row: int, d_col: int) -> tf.Tensor:
    """1 where pixel ``(r + d_row, c + d_col)`` lies inside the image, else 0; shape ``[1, H, W]``."""
    height, width = tf.shape(guide)[1], tf.shape(guide)[2]
    rows = tf.range(height) + d_row
    cols = tf.range(width) + d_col
    ok_r = tf.logical_and(rows >= 0, rows < height)
    ok_c = tf.logical_and(cols >= 0, cols < width)
    mask = tf.logical_and(ok_r[:, None], ok_c[None, :])
    return tf.cast(mask, guide.dtype)[None]


class ImageGraph:
    r"""Batched 4- or 8-neighbour pixel graphs guided by images (paper eq. 5).

    Args:
        guide: images ``[batch, height, width, channels]``, floating point, values in ``[0, 1]``.
        connectivity: 4 or 8 neighbours per pixel.
        kernel: ``"laplacian"`` (:math:`e^{-d/\sigma}`, the paper's) or ``"gaussian"``
            (:math:`e^{-d^2/2\sigma^2}`).
        sigma: kernel scale for pixel values in ``[0, 1]``, > 0.
        name: optional name scope.

    Attributes:
        weights: stencil ``[batch, height, width, K]`` of edge weights, dtype of ``guide``.

    Example:
        >>> g = ImageGraph(tf.random.uniform([2, 5, 6, 3], seed=1))
        >>> g.n_vertices, g.n_edges, tuple(g.weights.shape)
        (30, 49, (2, 5, 6, 4))
        >>> g.to_scipy(0).shape
        (30, 30)
    """

    def __init__(
        self,
        guide: Any,
        *,
        connectivity: int = 4,
        kernel: str = "laplacian",
        sigma: float = 0.1,
        name: str | None = None,
    ) -> None:
        v.check_choice(connectivity, "connectivity", NEIGHBOUR_OFFSETS)
        v.check_choice(kernel, "kernel", KERNELS)
        self.sigma = v.check_positive(sigma, "sigma")
        self.connectivity = connectivity
        self.kernel = kernel
        with tf.name_scope(name or "ImageGraph"):
            self.guide = v.check_image_batch(guide, "guide", bounds=(0.0, 1.0))
            self.weights = edge_weights(
                self.guide, connectivity=connectivity, kernel=kernel, sigma=self.sigma
            )
        self._degree: tf.Tensor | None = None

    # -- sizes -------------------------------------------------------------------------------
    @property
    def batch_size(self) -> int | tf.Tensor:
        """Number of images (graphs) in the batch."""
        return self.guide.shape[0] if self.guide.shape[0] is not None else tf.shape(self.guide)[0]

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the guide (static)."""
        height, width = self.guide.shape[1], self.guide.shape[2]
        if height is None or width is None:
            raise ValueError(f"the guide needs a static height and width, got {self.guide.shape}")
        return int(height), int(width)

    @property
    def n_vertices(self) -> int:
        """Number of vertices (pixels) per graph, ``height * width``."""
        height, width = self.image_shape
        return height * width

    @property
    def n_edges(self) -> int:
        """Number of undirected edges per graph (grid edges, whatever their weight)."""
        height, width = self.image_shape
        edges = height * (width - 1) + (height - 1) * width
        if self.connectivity == 8:
            edges += 2 * (height - 1) * (width - 1)
        return edges

    @property
    def offsets(self) -> tuple[tuple[int, int], ...]:
        """Neighbour offsets ``(d_row, d_col)`` matching the last axis of :attr:`weights`."""
        return NEIGHBOUR_OFFSETS[self.connectivity]

    @property
    def degree(self) -> tf.Tensor:
        """Vertex degrees :math:`D_{ii} = \\sum_j w_{ij}`, shape ``[batch, height, width]``."""
        if self._degree is None:
            self._degree = tf.reduce_sum(self.weights, axis=-1)
        return self._degree

    def normalized_weights(self) -> tf.Tensor:
        r"""Stencil of :math:`\mathcal{W} = D^{-1/2} W D^{-1/2}`, shape ``[B, H, W, K]``.

        Isolated vertices (degree 0) get zero rows.
        """
        degree = self.degree
        positive = degree > 0
        safe = tf.where(positive, degree, tf.ones_like(degree))
        inv_sqrt = tf.where(positive, tf.math.rsqrt(safe), tf.zeros_like(degree))
        neighbours = tf.stack([shift(inv_sqrt, dr, dc) for dr, dc in self.offsets], axis=-1)
        return self.weights * inv_sqrt[..., None] * neighbours

    # -- exports -----------------------------------------------------------------------------
    def _coo(self, stencil: tf.Tensor, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row, column and value arrays of the non-zero stencil entries of image ``index``."""
        height, width = self.image_shape
        values = np.asarray(stencil[index])
        rows, cols, ks = np.nonzero(values)
        offsets = np.asarray(self.offsets)
        src = rows * width + cols
        dst = (rows + offsets[ks, 0]) * width + (cols + offsets[ks, 1])
        return src, dst, values[rows, cols, ks]

    def _check_index(self, index: int) -> int:
        batch = int(self.batch_size)
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"`index` must be an int in [0, {batch}), got {index!r}")
        if not -batch <= index < batch:
            raise ValueError(f"`index` must lie in [0, {batch}), got {index}")
        return int(index) % batch

    def to_scipy(self, index: int = 0, *, normalized: bool = False) -> Any:
        """Adjacency matrix ``W`` (or ``D^-1/2 W D^-1/2``) of image ``index`` as ``scipy.sparse`` csr.

        Needs eager execution (numpy values); meant for tests, references and plotting.
        """
        import scipy.sparse as sp

        index = self._check_index(index)
        stencil = self.normalized_weights() if normalized else self.weights
        src, dst, vals = self._coo(stencil, index)
        n = self.n_vertices
        return sp.csr_matrix((vals, (src, dst)), shape=(n, n))

    def _edge_index(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Static ``(src, dst, flat)`` of all in-image stencil entries, sorted row-major.

        ``flat`` indexes the stencil reshaped to ``[batch, n * K]``.
        """
        height, width = self.image_shape
        k = len(self.offsets)
        offsets = np.asarray(self.offsets)
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        nbr_r = rows[..., None] + offsets[:, 0]
        nbr_c = cols[..., None] + offsets[:, 1]
        inside = (nbr_r >= 0) & (nbr_r < height) & (nbr_c >= 0) & (nbr_c < width)
        r_idx, c_idx, k_idx = np.nonzero(inside)
        src = (r_idx * width + c_idx).astype(np.int64)
        dst = (nbr_r[r_idx, c_idx, k_idx] * width + nbr_c[r_idx, c_idx, k_idx]).astype(np.int64)
        flat = (r_idx * width * k + c_idx * k + k_idx).astype(np.int64)
        order = np.lexsort((dst, src))
        return src[order], dst[order], flat[order]

    def _edge_values(self, normalized: bool) -> tf.Tensor:
        """Weights of the edges of :meth:`_edge_index`, shape ``[batch, E]``."""
        stencil = self.normalized_weights() if normalized else self.weights
        n_k = self.n_vertices * len(self.offsets)
        _, _, flat = self._edge_index()
        return tf.gather(tf.reshape(stencil, [-1, n_k]), flat, axis=1)

    def to_dense(self, *, normalized: bool = False) -> tf.Tensor:
        """Dense adjacency ``[batch, n, n]`` (small images only). XLA-compatible.

        Example:
            >>> ImageGraph(tf.zeros([1, 1, 2, 1])).to_dense().numpy()
            array([[[0., 1.],
                    [1., 0.]]], dtype=float32)
        """
        src, dst, _ = self._edge_index()
        values = self._edge_values(normalized)  # [B, E]
        n = self.n_vertices
        batch = tf.shape(values)[0]
        scattered = tf.scatter_nd(
            np.stack([src, dst], axis=1).astype(np.int32),
            tf.transpose(values),
            tf.stack([n, n, batch]),
        )
        return tf.transpose(scattered, [2, 0, 1])

    def to_sparse_tensor(
        self, index: int | None = None, *, normalized: bool = False
    ) -> tf.sparse.SparseTensor:
        """Adjacency as a ``tf.sparse.SparseTensor`` (indices in canonical row-major order).

        Args:
            index: an image of the batch, giving ``[n, n]``; ``None`` gives all images as a
                batched ``[batch, n, n]`` tensor.
            normalized: export :math:`D^{-1/2} W D^{-1/2}` instead of ``W``.

        Works in graph mode as well (indices are built from the static image size).
        """
        src, dst, _ = self._edge_index()
        values = self._edge_values(normalized)
        n = self.n_vertices
        pairs = np.stack([src, dst], axis=1)
        if index is not None:
            index = self._check_index(index)
            return tf.sparse.SparseTensor(pairs, values[index], [n, n])
        batch = tf.shape(values, out_type=tf.int64)[0]
        n_e = pairs.shape[0]
        b_idx = tf.repeat(tf.range(batch), n_e)
        idx = tf.concat([b_idx[:, None], tf.tile(tf.constant(pairs), tf.stack([batch, 1]))], axis=1)
        return tf.sparse.SparseTensor(idx, tf.reshape(values, [-1]), tf.stack([batch, n, n]))

    def to_pygsp(self, index: int = 0, *, lap_type: str = "normalized") -> Any:
        """The graph of image ``index`` as a ``pygsp.graphs.Graph`` with pixel coordinates."""
        try:
            import pygsp
        except ImportError as err:  # pragma: no cover - pygsp is a core dependency
            raise ImportError("to_pygsp() needs PyGSP: pip install pygsp") from err
        height, width = self.image_shape
        rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        coords = np.stack([cols.ravel(), height - 1 - rows.ravel()], axis=1).astype(float)
        adjacency = self.to_scipy(index)
        return pygsp.graphs.Graph(adjacency, lap_type=lap_type, coords=coords)

    def __repr__(self) -> str:
        return (
            f"ImageGraph(shape={tuple(self.guide.shape)}, connectivity={self.connectivity}, "
            f"kernel={self.kernel!r}, sigma={self.sigma})"
        )
