"""openTSNE's ``nearest_neighbors`` module: turbotsne's neighbour indexes under openTSNE's names."""
from ..neighbors import HNSW, Annoy, Exact, KNNIndex, Precomputed, PyNNDescent  # noqa: F401

Sklearn = Exact
NNDescent = PyNNDescent

__all__ = ["KNNIndex", "Sklearn", "Annoy", "NNDescent", "HNSW"]
