"""Nearest-neighbour indexes: ``KNNIndex.build(X, k)`` and ``.query(X_new, k)``.

Both return ``(indices, distances)`` as ``(n, k)`` arrays (int64, float64),
sorted by distance; ``build`` excludes each point itself from its own list.
"""
from __future__ import annotations

import abc

import numpy as np


class KNNIndex(abc.ABC):
    """A nearest-neighbour index over the reference data."""

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None):
        self.metric = metric
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.random_state = random_state

    @abc.abstractmethod
    def build(self, X, k):
        """Index ``X`` and return the ``k`` nearest neighbours of each of its rows."""

    @abc.abstractmethod
    def query(self, X_new, k):
        """Return the ``k`` nearest reference points of each row of ``X_new``."""


class Exact(KNNIndex):
    """Exact neighbours by brute force (scikit-learn's ``NearestNeighbors``)."""

    def build(self, X, k):
        from sklearn.neighbors import NearestNeighbors

        self._nn = NearestNeighbors(
            n_neighbors=k, algorithm="brute", metric=self.metric,
            metric_params=self.metric_params, n_jobs=self.n_jobs,
        ).fit(X)
        distances, indices = self._nn.kneighbors(n_neighbors=k)
        return indices.astype(np.int64), distances.astype(np.float64)

    def query(self, X_new, k):
        distances, indices = self._nn.kneighbors(X_new, n_neighbors=k)
        return indices.astype(np.int64), distances.astype(np.float64)


def get_knn_index(neighbors, metric="euclidean", metric_params=None, n_jobs=1, random_state=None):
    """Build the index that the ``neighbors`` parameter names (only "exact" and "auto" for now)."""
    if isinstance(neighbors, KNNIndex):
        return neighbors
    if neighbors in ("exact", "auto", "approx"):
        return Exact(metric=metric, metric_params=metric_params, n_jobs=n_jobs, random_state=random_state)
    raise ValueError(
        "The 'neighbors' parameter must be one of ['auto', 'exact'] in this version. "
        f"Got {neighbors!r} instead."
    )
