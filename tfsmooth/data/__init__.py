"""Data loaders: MNIST, the NIPS 2017 dev set, folders of images."""

__all__: list[str] = []
