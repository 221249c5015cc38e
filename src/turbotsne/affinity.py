"""Affinities: the symmetric joint probabilities P of the input space.

Every affinity object exposes ``P``, a symmetric CSR matrix that sums to 1
(or, for scikit-learn's exact method, a dense ndarray), and the neighbour index
it was built with, for placing new points later.

Gaussian kernels act on *squared* metric distances for every metric (the
Euclidean case is scikit-learn's and openTSNE's convention; for other metrics
squaring keeps the kernel a Gaussian in that metric's distance). Per point the
precision is found by bisection to the target perplexity, entropy in nats,
tolerance 1e-5 and at most 100 steps, exactly as scikit-learn's
``_binary_search_perplexity`` does.
"""
from __future__ import annotations

import logging
import warnings

import numba
import numpy as np
import scipy.sparse as sp

from ._config import FASTMATH, thread_limit
from .neighbors import get_knn_index

log = logging.getLogger(__name__)

_EPSILON_DBL = 1e-8
_PERPLEXITY_TOLERANCE = 1e-5
_MACHINE_EPSILON = np.finfo(np.double).eps


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _perplexity_bisection(sq_distances, skip_self, perplexity, tol, max_iter, out):
    """Conditional probabilities ``p_{j|i}`` row by row (each thread owns rows).

    ``sq_distances`` is ``(n, k)``; when ``skip_self`` the matrix is square and
    its diagonal is left out (scikit-learn's dense exact path).
    """
    n, k = sq_distances.shape
    target = np.log(perplexity)
    for i in numba.prange(n):
        beta = 1.0
        beta_min = -np.inf
        beta_max = np.inf
        for _ in range(max_iter):
            s = 0.0
            for j in range(k):
                if skip_self and j == i:
                    out[i, j] = 0.0
                else:
                    v = np.exp(-sq_distances[i, j] * beta)
                    out[i, j] = v
                    s += v
            if s == 0.0:
                s = _EPSILON_DBL
            sd = 0.0
            for j in range(k):
                out[i, j] /= s
                sd += sq_distances[i, j] * out[i, j]
            entropy = np.log(s) + beta * sd
            diff = entropy - target
            if np.abs(diff) <= tol:
                break
            if diff > 0.0:
                beta_min = beta
                if beta_max == np.inf:
                    beta *= 2.0
                else:
                    beta = (beta + beta_max) / 2.0
            else:
                beta_max = beta
                if beta_min == -np.inf:
                    beta /= 2.0
                else:
                    beta = (beta + beta_min) / 2.0


def conditional_probabilities(sq_distances, perplexity, *, skip_self=False, n_jobs=1):
    """Row-normalised Gaussian conditionals of ``sq_distances`` at ``perplexity``."""
    D = np.ascontiguousarray(sq_distances, dtype=np.float64)
    out = np.empty_like(D)
    with thread_limit(n_jobs):
        _perplexity_bisection(D, bool(skip_self), float(perplexity), _PERPLEXITY_TOLERANCE, 100, out)
    return out


def symmetrize(conditional, indices, n_samples=None):
    """``(P + P^T) / sum`` of a kNN conditional matrix, as CSR (sorted indices)."""
    n, k = conditional.shape
    n_samples = n if n_samples is None else n_samples
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    P = sp.csr_matrix((conditional.ravel(), indices.ravel(), indptr), shape=(n, n_samples))
    P = (P + P.T).tocsr()
    P.sum_duplicates()
    P.sort_indices()
    P.eliminate_zeros()
    P.data /= max(P.data.sum(), _MACHINE_EPSILON)
    return P


def joint_probabilities_nn(indices, distances, perplexity, *, n_jobs=1):
    """Sparse symmetric P from kNN ``indices``/``distances`` (metric distances)."""
    cond = conditional_probabilities(np.square(distances), perplexity, n_jobs=n_jobs)
    return symmetrize(cond, np.asarray(indices, dtype=np.int64))


def joint_probabilities_dense(sq_distances, perplexity, *, n_jobs=1):
    """Dense symmetric P over all pairs (scikit-learn's exact method)."""
    cond = conditional_probabilities(sq_distances, perplexity, skip_self=True, n_jobs=n_jobs)
    P = cond + cond.T
    P /= max(P.sum(), _MACHINE_EPSILON)
    return P


def check_perplexity(perplexity, n_samples):
    """Reduce a perplexity too large for ``n_samples`` (with a warning), as openTSNE does."""
    if n_samples - 1 < 3 * perplexity:
        new = (n_samples - 1) / 3
        warnings.warn(
            f"Perplexity value {perplexity} is too high for {n_samples} samples; "
            f"using perplexity {new:.2f} instead.",
            stacklevel=3,
        )
        return new
    return perplexity


class Affinities:
    """Base class: holds ``P`` and knows how to relate new points to the reference."""

    P = None

    def to_new(self, X_new, **kwargs):  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} cannot relate new points to the reference.")


class PerplexityBasedNN(Affinities):
    """Gaussian affinities on the ``k = min(N - 1, 3 * perplexity)`` nearest neighbours.

    Parameters follow openTSNE's ``PerplexityBasedNN``.
    """

    def __init__(self, data, perplexity=30, method="auto", metric="euclidean", metric_params=None,
                 n_jobs=1, random_state=None, k_neighbors="auto", knn_index=None, verbose=False):
        n = data.shape[0]
        self.perplexity = check_perplexity(perplexity, n)
        k = min(n - 1, int(3 * self.perplexity)) if k_neighbors == "auto" else int(k_neighbors)
        self.n_jobs = n_jobs
        self.knn_index = knn_index if knn_index is not None else get_knn_index(
            method, metric=metric, metric_params=metric_params, n_jobs=n_jobs, random_state=random_state)
        log.info("Finding %d nearest neighbours of %d points", k, n)
        self.indices, self.distances = self.knn_index.build(data, k)
        log.info("Computing perplexity-based affinities")
        self.P = joint_probabilities_nn(self.indices, self.distances, self.perplexity, n_jobs=n_jobs)


class PerplexityBasedDense(Affinities):
    """Gaussian affinities over all pairs (dense P): scikit-learn's exact method.

    ``O(N^2)`` memory; used by ``negative_gradient_method="exact"``.
    """

    def __init__(self, data, perplexity=30, metric="euclidean", metric_params=None, n_jobs=1):
        from sklearn.metrics import pairwise_distances

        # pairwise_distances is not split over jobs: its chunking would make P depend on n_jobs.

        n = data.shape[0]
        self.perplexity = check_perplexity(perplexity, n)
        self.n_jobs = n_jobs
        if metric == "precomputed":
            D = np.asarray(data, dtype=np.float64) ** 2
        elif metric == "euclidean":
            D = pairwise_distances(data, metric="euclidean", squared=True)
        else:
            D = pairwise_distances(data, metric=metric, **(metric_params or {})) ** 2
        self.P = joint_probabilities_dense(D, self.perplexity, n_jobs=n_jobs)
