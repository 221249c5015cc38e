"""Exact neighbours: :class:`Exact` (brute force over the data) and :class:`Precomputed`
(neighbours read off given distances).

``Exact`` takes one of three paths, by metric: dense euclidean / sqeuclidean / cosine /
correlation and sparse euclidean / sqeuclidean / cosine go through the blocked BLAS brute
force of :mod:`turbotsne.neighbors.brute`; every other scikit-learn metric (and a plain
Python callable) through ``sklearn.neighbors.NearestNeighbors(algorithm="brute")``; metrics
only pynndescent knows (``hellinger``, ``spearmanr``, ... or a numba-jitted callable)
through a parallel numba brute-force kernel over that distance function.
``Precomputed`` serves ``metric="precomputed"``: a dense square distance matrix or a
sparse CSR kNN distance graph.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from .._config import effective_n_jobs
from .base import (ALIASES, KNNIndex, canonical, check_data, check_finite_array, check_k, is_numba_function,
                   pynndescent_metrics, register_index, sklearn_metrics, sort_rows)
from .brute import blas_knn, dense_matrix_knn, numba_knn, prepare_blas

#: metrics of the blocked BLAS brute force (dense input).
BLAS_METRICS = frozenset({"euclidean", "sqeuclidean", "cosine", "correlation"})
#: the same for sparse input (correlation would centre, i.e. densify, the rows).
BLAS_METRICS_SPARSE = frozenset({"euclidean", "sqeuclidean", "cosine"})


@register_index
class Exact(KNNIndex):
    """Exact neighbours by brute force (see the module docstring for the three paths).

    ``algorithm`` and ``leaf_size`` are scikit-learn's ``NearestNeighbors`` arguments: an
    ``algorithm`` other than ``"brute"`` (a ball or k-d tree) sends every metric through
    ``NearestNeighbors`` with these two.
    """

    name = "exact"
    _sparse_ok = True

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 algorithm="brute", leaf_size=30):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.algorithm = algorithm
        self.leaf_size = leaf_size

    @classmethod
    def valid_metrics(cls, sparse=False):
        if sparse:
            return BLAS_METRICS_SPARSE | sklearn_metrics(True) | {"l2", "l1", "taxicab"}
        return BLAS_METRICS | sklearn_metrics(False) | pynndescent_metrics(False) | set(ALIASES)

    @classmethod
    def supports(cls, metric, sparse=False):
        if callable(metric):
            return not sparse
        # the common metrics first: pynndescent's table is imported only for the rest (importing
        # pynndescent costs ~60 MB of RSS and a second, in every process)
        common = (BLAS_METRICS_SPARSE | {"l2", "l1", "taxicab"}) if sparse else (BLAS_METRICS | set(ALIASES))
        if metric in common or canonical(metric) in common:
            return True
        return metric in cls.valid_metrics(sparse) or canonical(metric) in cls.valid_metrics(sparse)

    def _path(self, sparse):
        metric = self.metric
        if self.algorithm != "brute":
            return "sklearn"
        if callable(metric):
            return "numba" if is_numba_function(metric) else "sklearn"
        canon = canonical(metric)
        blas = BLAS_METRICS_SPARSE if sparse else BLAS_METRICS
        if canon in blas and not self.metric_params:
            return "blas"
        if metric in sklearn_metrics(sparse) or canon in sklearn_metrics(sparse):
            return "sklearn"
        return "numba"

    def fit(self, X):
        """Index ``X`` without computing its own neighbour lists (for ``query`` only)."""
        X = check_data(X, accept_sparse=True)
        sparse = sp.issparse(X)
        self._check_metric(sparse)
        self.n_samples_fit_, self.n_features_in_ = X.shape
        self.path_ = self._path(sparse)
        canon = canonical(self.metric)
        if self.path_ == "blas":
            self._ref = prepare_blas(X, canon)
        elif self.path_ == "sklearn":
            from sklearn.neighbors import NearestNeighbors

            metric = self.metric if callable(self.metric) or self.metric in sklearn_metrics(sparse) else canon
            params = self._params
            p = params.pop("p", 2)  # scikit-learn wants minkowski's p as its own argument
            self._nn = NearestNeighbors(
                algorithm=self.algorithm, leaf_size=self.leaf_size, metric=metric, p=p,
                metric_params=params or None, n_jobs=effective_n_jobs(self.n_jobs),
            ).fit(X)
        else:
            self._ref = X
        return self

    def build(self, X, k):
        self.fit(X)
        k = check_k(k, self.n_samples_fit_, build=True)
        if self.path_ == "blas":
            return blas_knn(self._ref, self._ref, k, canonical(self.metric), self.n_jobs, True)
        if self.path_ == "sklearn":
            distances, indices = self._nn.kneighbors(n_neighbors=k)  # self excluded by index
            return sort_rows(indices, distances)
        return numba_knn(self._ref, self._ref, k, self._numba_dist(), tuple(self._params.values()),
                         self.n_jobs, True)

    def _numba_dist(self):
        if callable(self.metric):
            return self.metric
        from pynndescent.distances import named_distances

        return named_distances[self.metric]

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = check_k(k, self.n_samples_fit_, build=False)
        canon = canonical(self.metric)
        if self.path_ == "blas":
            return blas_knn(prepare_blas(X_new, canon, self._ref[3]), self._ref, k, canon, self.n_jobs, False)
        if self.path_ == "sklearn":
            distances, indices = self._nn.kneighbors(X_new, n_neighbors=k)
            return sort_rows(indices, distances)
        return numba_knn(X_new, self._ref, k, self._numba_dist(), tuple(self._params.values()),
                         self.n_jobs, False)


class Precomputed(KNNIndex):
    """Neighbours read off precomputed distances.

    ``build(D, k)``: ``D`` is a dense square ``(n, n)`` distance matrix
    (non-negative, zero diagonal) or a sparse CSR kNN graph whose row ``i``
    stores the distances from point ``i`` to its neighbours (at least ``k``
    of them besides ``i`` itself). ``query(D_new, k)``: distances from new
    points to the ``n`` reference points, ``(n_new, n)``, dense or CSR.
    """

    name = "precomputed"
    _sparse_ok = True

    def __init__(self, metric="precomputed", metric_params=None, n_jobs=1, random_state=None):
        super().__init__(metric, metric_params, n_jobs, random_state)

    @classmethod
    def supports(cls, metric, sparse=False):
        return metric == "precomputed"

    @staticmethod
    def _check_distances(D, name):
        D = check_finite_array(D, accept_sparse="csr", dtype=np.float64, input_name=name)
        values = D.data if sp.issparse(D) else D
        if values.size and values.min() < 0:
            raise ValueError(f"Precomputed distances in {name} must be non-negative; found {values.min():g}.")
        return D

    def build(self, X, k):
        D = self._check_distances(X, "X")
        n = D.shape[0]
        if D.shape[0] != D.shape[1]:
            raise ValueError(
                f"With metric='precomputed', X must be a square (n_samples, n_samples) distance "
                f"matrix or kNN graph; got shape {D.shape}."
            )
        k = check_k(k, n, build=True)
        self.n_samples_fit_ = self.n_features_in_ = n
        if sp.issparse(D):
            return _sparse_graph_knn(D, k, exclude_self=True)
        diag = np.abs(np.diagonal(D))
        tol = 1e-8 * max(1.0, float(np.max(D)) if D.size else 1.0)
        if diag.max() > tol:
            i = int(np.argmax(diag))
            raise ValueError(
                f"A precomputed distance matrix must have a zero diagonal; D[{i}, {i}] = {diag[i]:g}."
            )
        return dense_matrix_knn(D, k, True, self.n_jobs)

    def query(self, X_new, k):
        self._check_fitted()
        D = self._check_distances(X_new, "X_new")
        if D.shape[1] != self.n_samples_fit_:
            raise ValueError(
                f"With metric='precomputed', X_new must hold distances to the {self.n_samples_fit_} "
                f"reference points (shape (n_new, {self.n_samples_fit_})); got shape {D.shape}."
            )
        k = check_k(k, self.n_samples_fit_, build=False)
        if sp.issparse(D):
            return _sparse_graph_knn(D, k, exclude_self=False)
        return dense_matrix_knn(D, k, False, self.n_jobs)


def _sparse_graph_knn(G, k, exclude_self):
    """The k nearest stored entries of each row of a CSR distance graph."""
    G = sp.csr_matrix(G)
    n = G.shape[0]
    rows = np.repeat(np.arange(n), np.diff(G.indptr))
    cols = G.indices.astype(np.int64)
    vals = G.data
    if exclude_self:
        keep = cols != rows
        rows, cols, vals = rows[keep], cols[keep], vals[keep]
    counts = np.bincount(rows, minlength=n)
    if counts.min() < k:
        r = int(np.argmin(counts))
        raise ValueError(
            f"Row {r} of the precomputed sparse distance graph stores {counts[r]} neighbours"
            f"{' (besides itself)' if exclude_self else ''} but k={k} are needed; store at least "
            f"k neighbours per row or lower k (the perplexity)."
        )
    order = np.lexsort((cols, vals, rows))
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    take = order[starts[:, None] + np.arange(k)]
    return cols[take].astype(np.int64), vals[take].astype(np.float64)
