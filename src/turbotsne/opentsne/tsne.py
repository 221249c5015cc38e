"""openTSNE's ``tsne`` module: the main API class and the embeddings."""
from ..tsne import (TSNE, OptimizationInterrupt, PartialTSNEEmbedding, TSNEEmbedding,  # noqa: F401
                    kl_divergence_bh, kl_divergence_fft)

__all__ = ["TSNE", "TSNEEmbedding", "PartialTSNEEmbedding", "OptimizationInterrupt", "kl_divergence_bh",
           "kl_divergence_fft"]
