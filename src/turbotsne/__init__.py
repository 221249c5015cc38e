"""turbotsne: fast t-SNE with the openTSNE feature set and scikit-learn conventions.

Importing the package compiles nothing: numba kernels are compiled (and cached)
on first use.
"""
from . import _config  # noqa: F401  (first: sets OMP_WAIT_POLICY before any OpenMP runtime loads)
from .affinity import PerplexityBasedDense, PerplexityBasedNN
from .embedding import TSNEEmbedding
from .estimator import TSNE
from .optimizer import OptimizationInterrupt
from .plotting import plot  # matplotlib is imported only when a plot is drawn

__version__ = "0.1.0"

__all__ = ["TSNE", "TSNEEmbedding", "PerplexityBasedNN", "PerplexityBasedDense", "OptimizationInterrupt",
           "plot", "__version__"]
