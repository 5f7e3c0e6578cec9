"""Oracle tests for ImageGraph: weights, exports, PyGSP agreement, bad input."""

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf

from tfsmooth.graphs import NEIGHBOUR_OFFSETS, ImageGraph, edge_weights


def brute_force_adjacency(image, connectivity, kernel, sigma):
    """W by a double loop over pixel pairs (the definition, eq. 5)."""
    height, width, _ = image.shape
    n = height * width
    w = np.zeros((n, n))
    for r in range(height):
        for c in range(width):
            for dr, dc in NEIGHBOUR_OFFSETS[connectivity]:
                rr, cc = r + dr, c + dc
                if 0 <= rr < height and 0 <= cc < width:
                    d = np.linalg.norm(image[r, c] - image[rr, cc])
                    k = (
                        np.exp(-d / sigma)
                        if kernel == "laplacian"
                        else np.exp(-(d**2) / (2 * sigma**2))
                    )
                    w[r * width + c, rr * width + cc] = k
    return w


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("kernel", ["laplacian", "gaussian"])
@pytest.mark.parametrize("shape", [(6, 6, 1), (7, 5, 3)])
def test_adjacency_matches_definition(connectivity, kernel, shape):
    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2,) + shape)
    graph = ImageGraph(images, connectivity=connectivity, kernel=kernel, sigma=0.3)
    for b in range(2):
        expected = brute_force_adjacency(images[b], connectivity, kernel, 0.3)
        np.testing.assert_allclose(graph.to_scipy(b).toarray(), expected, rtol=1e-12, atol=1e-15)
        dense = tf.sparse.to_dense(tf.sparse.reorder(graph.to_sparse_tensor(b))).numpy()
        np.testing.assert_allclose(dense, expected, rtol=1e-12)
    batched = tf.sparse.to_dense(tf.sparse.reorder(graph.to_sparse_tensor())).numpy()
    assert batched.shape == (2, shape[0] * shape[1], shape[0] * shape[1])
    np.testing.assert_allclose(
        batched[1], brute_force_adjacency(images[1], connectivity, kernel, 0.3)
    )


def test_symmetric_degree_and_edge_count():
    images = np.random.default_rng(1).uniform(size=(3, 5, 9, 3)).astype(np.float32)
    for connectivity in (4, 8):
        graph = ImageGraph(images, connectivity=connectivity)
        w = graph.to_scipy(2)
        assert abs(w - w.T).max() == 0
        assert w.nnz == 2 * graph.n_edges
        np.testing.assert_allclose(
            graph.degree[2].numpy().ravel(), np.asarray(w.sum(1)).ravel(), rtol=1e-6
        )
    assert graph.weights.dtype == tf.float32


def test_normalized_weights_match_scipy():
    images = np.random.default_rng(2).uniform(size=(1, 6, 7, 1))
    graph = ImageGraph(images)
    w = graph.to_scipy(0)
    d = np.asarray(w.sum(axis=1)).ravel()
    expected = sp.diags(d**-0.5) @ w @ sp.diags(d**-0.5)
    np.testing.assert_allclose(
        graph.to_scipy(0, normalized=True).toarray(), expected.toarray(), rtol=1e-12
    )


def test_pygsp_laplacian_equals_ours():
    images = np.random.default_rng(3).uniform(size=(2, 6, 8, 3))
    graph = ImageGraph(images, connectivity=8, sigma=0.2)
    pg = graph.to_pygsp(1)
    assert graph.n_vertices == pg.N and pg.Ne == graph.n_edges
    ours = np.eye(graph.n_vertices) - graph.to_scipy(1, normalized=True).toarray()
    np.testing.assert_allclose(pg.L.toarray(), ours, atol=1e-12)
    pg_comb = graph.to_pygsp(1, lap_type="combinatorial")
    w = graph.to_scipy(1).toarray()
    np.testing.assert_allclose(pg_comb.L.toarray(), np.diag(w.sum(1)) - w, atol=1e-12)


def test_constant_image_has_unit_weights_and_works_in_tf_function():
    guide = tf.fill([1, 4, 4, 3], 0.5)
    graph_weights = ImageGraph(guide).weights.numpy()
    np.testing.assert_array_equal(graph_weights, edge_weights(guide).numpy())
    inside = graph_weights[graph_weights > 0]
    np.testing.assert_allclose(inside, 1.0)

    @tf.function
    def weights(x):
        return ImageGraph(x, kernel="gaussian").weights

    np.testing.assert_allclose(
        weights(guide).numpy(), ImageGraph(guide, kernel="gaussian").weights.numpy()
    )


def test_single_pixel_image_has_no_edges():
    graph = ImageGraph(tf.zeros([1, 1, 1, 1]))
    assert graph.n_edges == 0
    assert graph.to_scipy().nnz == 0
    np.testing.assert_array_equal(graph.normalized_weights().numpy(), 0.0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"guide": np.zeros((4, 4, 1))}, ValueError, "rank 4"),
        ({"guide": np.zeros((1, 4, 4, 1), np.uint8)}, TypeError, "floating point"),
        ({"guide": np.full((1, 4, 4, 1), np.nan)}, ValueError, "finite"),
        ({"guide": np.full((1, 4, 4, 1), 2.0)}, ValueError, r"\[0.0, 1.0\]"),
        ({"sigma": 0.0}, ValueError, "sigma"),
        ({"sigma": -1}, ValueError, "sigma"),
        ({"kernel": "cauchy"}, ValueError, "kernel"),
        ({"connectivity": 6}, ValueError, "connectivity"),
    ],
)
def test_bad_input(kwargs, error, match):
    args = {"guide": np.zeros((1, 4, 4, 1), np.float32)} | kwargs
    guide = args.pop("guide")
    with pytest.raises(error, match=match):
        ImageGraph(guide, **args)


def test_bad_index_and_repr():
    graph = ImageGraph(tf.zeros([2, 3, 3, 1]))
    with pytest.raises(ValueError, match="index"):
        graph.to_scipy(5)
    with pytest.raises(TypeError, match="index"):
        graph.to_scipy(1.5)
    assert "connectivity=4" in repr(graph)
