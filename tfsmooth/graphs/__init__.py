"""Image graphs: pixels as vertices, neighbours as edges (paper eq. 5)."""

from tfsmooth.graphs.image_graph import KERNELS, NEIGHBOUR_OFFSETS, ImageGraph, edge_weights

__all__ = ["KERNELS", "NEIGHBOUR_OFFSETS", "ImageGraph", "edge_weights"]
