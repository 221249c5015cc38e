"""openTSNE's ``metrics`` module: turbotsne's embedding-quality metrics."""
from ..metrics import kl_divergence, knn_preservation, trustworthiness  # noqa: F401

__all__ = ["kl_divergence", "knn_preservation", "trustworthiness"]
