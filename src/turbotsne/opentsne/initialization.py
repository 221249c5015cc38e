"""openTSNE's ``initialization`` module: turbotsne's initialisations."""
from ..initialization import jitter, median, pca, random, rescale, spectral, weighted_mean  # noqa: F401

__all__ = ["pca", "spectral", "random", "rescale", "jitter", "median", "weighted_mean"]
