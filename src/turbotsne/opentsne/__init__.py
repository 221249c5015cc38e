"""openTSNE's public API on turbotsne, behind one changed import line.

``from turbotsne import opentsne as openTSNE`` (or ``import turbotsne.opentsne as
openTSNE``) gives the names and module layout of openTSNE 1.0.4 — ``TSNE``,
``TSNEEmbedding``, ``PartialTSNEEmbedding``, ``OptimizationInterrupt``, and the
modules ``affinity``, ``nearest_neighbors``, ``initialization``, ``callbacks``,
``sklearn``, ``tsne``, ``utils``, ``metrics`` — re-exporting turbotsne's own
classes and functions (no second implementation). The remaining differences
are listed in docs/migrating.md.
"""
from . import affinity, callbacks, initialization, metrics, nearest_neighbors, sklearn, tsne, utils  # noqa: F401
from ..embedding import PartialTSNEEmbedding, TSNEEmbedding
from ..optimizer import OptimizationInterrupt
from ..tsne import TSNE

__all__ = ["TSNE", "TSNEEmbedding", "PartialTSNEEmbedding", "OptimizationInterrupt", "affinity", "callbacks",
           "initialization", "metrics", "nearest_neighbors", "sklearn", "tsne", "utils"]
