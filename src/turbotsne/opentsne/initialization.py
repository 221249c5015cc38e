"""openTSNE's ``initialization`` module: turbotsne's initialisations."""
from ..initialization import pca, random, rescale, spectral  # noqa: F401

__all__ = ["pca", "random", "rescale", "spectral"]
