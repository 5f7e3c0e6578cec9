"""Version of tfsmooth."""

__version__ = "0.1.0"
