"""Quality of an embedding: trustworthiness, kNN preservation, KL divergence, a report.

Everything here works at 70,000+ points without an ``N x N`` matrix: neighbour lists come
from :class:`turbotsne.neighbors.Exact` (blocked brute force) or, in embeddings of 1-3
dimensions, a KD-tree; the ranks that trustworthiness needs are counted one block of rows of
input-space distances at a time.

:func:`trustworthiness` is scikit-learn's ``sklearn.manifold.trustworthiness`` (Venna &
Kaski 2001), the same number, in blocks; :func:`knn_preservation` the mean fraction of each
point's ``k`` input-space neighbours that are among its ``k`` embedding neighbours;
:func:`kl_divergence` KL(P || Q) of an embedding for given affinities, exact or through the
Barnes-Hut / FFT gradient backends; :func:`quality_report` all of the above (and a kNN
classifier accuracy when labels are given) in one dict, optionally on a random subsample.
"""
from __future__ import annotations

import numbers

import numba
import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state

from .neighbors import Exact

__all__ = ["trustworthiness", "knn_preservation", "kl_divergence", "knn_accuracy", "quality_report"]

#: ``kl_divergence(method="auto")`` uses the exact O(N^2) sum up to this many points.
AUTO_EXACT_KL_MAX_N = 5000


def _as_2d(A, name):
    A = np.asarray(A, dtype=np.float64)
    if A.ndim == 1:
        A = A[:, None]
    if A.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array; got shape {A.shape}.")
    if not np.all(np.isfinite(A)):
        raise ValueError(f"Input {name} contains NaN or infinity.")
    return np.ascontiguousarray(A)


def _check_pair(X, Y, metric="euclidean"):
    X = X.tocsr() if sp.issparse(X) else _as_2d(X, "X")
    Y = _as_2d(Y, "embedding")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and the embedding have different numbers of samples: {X.shape[0]} and {Y.shape[0]}.")
    return X, Y


def _check_k(k, n, name):
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f"{name} must be a positive int; got {k!r}.")
    if k >= n:
        raise ValueError(f"{name} ({k}) must be smaller than the number of samples ({n}).")
    return int(k)


def _embedding_knn(Y, k, n_jobs):
    """Exact euclidean neighbours in the embedding, each point excluded from its own list.

    Embeddings of 1-3 dimensions go through scikit-learn's KD-tree (what
    ``sklearn.manifold.trustworthiness`` uses too), far faster in so few
    dimensions than the blocked brute force of :class:`~turbotsne.neighbors.Exact`
    (docs/design/metrics.md), which serves higher dimensions.
    """
    if Y.shape[1] <= 3:
        from sklearn.neighbors import NearestNeighbors

        from ._config import effective_n_jobs

        nn = NearestNeighbors(n_neighbors=k, algorithm="kd_tree", n_jobs=effective_n_jobs(n_jobs)).fit(Y)
        return nn.kneighbors(return_distance=False)
    return Exact("euclidean", n_jobs=n_jobs).build(Y, k)[0]


@numba.njit(parallel=True, cache=True)
def _closer_counts(D, row_offset, thresholds, out):
    """``out[r, m]`` = #{j != i : D[r, j] < thresholds[r, m]} for row ``i = row_offset + r``.

    ``thresholds`` is sorted ascending per row. Few thresholds: one
    vectorised counting pass over the row per threshold; many: one pass with
    a binary search per entry (O(n log k)).
    """
    b, n = D.shape
    k = thresholds.shape[1]
    for r in numba.prange(b):
        i = row_offset + r
        if k <= 32:
            for m in range(k):
                t = thresholds[r, m]
                c = 0
                for j in range(n):
                    c += D[r, j] < t
                if 0 <= i < n and D[r, i] < t:
                    c -= 1
                out[r, m] = c
            continue
        hist = np.zeros(k + 1, dtype=np.int64)
        t_max = thresholds[r, k - 1]
        for j in range(n):
            x = D[r, j]
            if x >= t_max or j == i:  # most points: farther than every threshold
                continue
            lo, hi = 0, k
            while lo < hi:  # number of thresholds <= x
                mid = (lo + hi) // 2
                if thresholds[r, mid] <= x:
                    lo = mid + 1
                else:
                    hi = mid
            hist[lo] += 1
        c = 0
        for m in range(k):
            c += hist[m]
            out[r, m] = c


@numba.njit(parallel=True, cache=True)
def _has_ties(D, row_offset, thresholds, out):
    """``out[r]`` = whether some ``thresholds[r, m]`` (sorted) is the distance of two or more
    points ``j != i`` in row ``i = row_offset + r`` (their ranks then depend on the sort order)."""
    b, n = D.shape
    k = thresholds.shape[1]
    for r in numba.prange(b):
        i = row_offset + r
        seen = np.zeros(k, dtype=np.int64)
        t_max = thresholds[r, k - 1]
        tied = False
        for j in range(n):
            x = D[r, j]
            if x > t_max or j == i:
                continue
            lo, hi = 0, k
            while lo < hi:  # the first threshold >= x
                mid = (lo + hi) // 2
                if thresholds[r, mid] < x:
                    lo = mid + 1
                else:
                    hi = mid
            if lo < k and thresholds[r, lo] == x:
                seen[lo] += 1
                if seen[lo] > 1:
                    tied = True
                    break
        out[r] = tied


def _sorted_ranks(row, i, columns):
    """1-based positions of ``columns`` in ``np.argsort`` of ``row`` with ``row[i] = inf``: the
    ranks scikit-learn's ``trustworthiness`` reads, ties in its sort order included."""
    row = row.copy()
    row[i] = np.inf
    position = np.empty(row.shape[0], dtype=np.int64)
    position[np.argsort(row)] = np.arange(1, row.shape[0] + 1)
    return position[columns]


def trustworthiness(X, Y, n_neighbors=10, metric="euclidean", *, n_jobs=1, working_memory=64):
    """How far the embedding's neighbourhoods can be trusted (Venna & Kaski 2001).

    The same value as ``sklearn.manifold.trustworthiness(X, Y, n_neighbors=...,
    metric=...)``::

        T(k) = 1 - 2 / (n k (2n - 3k - 1)) * sum_i sum_{j in N_i^k} max(0, r(i, j) - k)

    where ``N_i^k`` are the ``k`` nearest neighbours of ``i`` in the
    embedding and ``r(i, j)`` is the rank of ``j`` among the input-space
    neighbours of ``i``. scikit-learn builds the full ``N x N`` distance and
    rank matrices; here the ranks are counted from one block of input-space
    distance rows at a time (``O(N * block)`` memory, ``O(N^2)`` time), so it
    runs at 70,000+ points. Where input distances tie exactly (integer data),
    the rows concerned are ranked by ``np.argsort`` as scikit-learn ranks them,
    so the value is scikit-learn's, ties included.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)
        The input data, or a square distance matrix with ``metric="precomputed"``.
    Y : array-like of shape (n_samples, n_components)
        The embedding (anything ``np.asarray`` understands, e.g. a
        ``TSNEEmbedding``).
    n_neighbors : int, default=10
        ``k``; must be below ``n_samples / 2``.
    metric : str or callable, default="euclidean"
        Input-space metric, any that ``sklearn.metrics.pairwise_distances``
        accepts, or "precomputed".
    n_jobs : int, default=1
        Threads for the embedding's neighbours and the rank counting.
    working_memory : int, default=64
        Megabytes of input-space distances held at a time.

    Returns
    -------
    float
        In [0, 1]; 1 means every embedding neighbour is also an input-space
        neighbour.

    Examples
    --------
    >>> from sklearn.datasets import load_digits
    >>> from turbotsne.metrics import trustworthiness
    >>> X, _ = load_digits(return_X_y=True)
    >>> round(trustworthiness(X, X[:, :2], n_neighbors=5), 3)  # doctest: +SKIP
    0.69
    """
    from sklearn.metrics import pairwise_distances_chunked

    from ._config import thread_limit

    X, Y = _check_pair(X, Y, metric)
    n = Y.shape[0]
    k = _check_k(n_neighbors, n, "n_neighbors")
    if k >= n / 2:
        raise ValueError(f"n_neighbors ({k}) should be less than n_samples / 2 ({n / 2}).")
    emb_nn = _embedding_knn(Y, k, n_jobs)
    penalty = 0
    start = 0
    if metric == "precomputed":
        X = X.toarray() if sp.issparse(X) else X
        if X.shape != (n, n):
            raise ValueError(f"With metric='precomputed', X must be a square distance matrix; got {X.shape}.")
        rows = max(1, int(working_memory * 2**20 // (8 * n)))
        chunks = (X[s:s + rows] for s in range(0, n, rows))
    else:
        chunks = pairwise_distances_chunked(X, metric=metric, working_memory=working_memory)
    with thread_limit(n_jobs):
        for D in chunks:
            D = np.ascontiguousarray(D, dtype=np.float64)
            b = D.shape[0]
            idx = emb_nn[start:start + b]
            thr = np.sort(np.take_along_axis(D, idx, axis=1), axis=1)
            counts = np.empty((b, k), dtype=np.int64)
            _closer_counts(D, start, thr, counts)
            ranks = counts + 1
            tied = np.empty(b, dtype=np.bool_)
            _has_ties(D, start, thr, tied)
            for r in np.flatnonzero(tied):
                ranks[r] = _sorted_ranks(D[r], start + r, idx[r])
            penalty += int(np.sum(np.maximum(ranks - k, 0)))
            start += b
    return float(1.0 - penalty * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))))


def _overlap(A, B, block=65536):
    """Mean over rows of |A_i ∩ B_i| / k for two (n, k) index arrays (rows without repeats)."""
    n, k = A.shape
    total = 0
    for s in range(0, n, block):
        a, b = A[s:s + block], B[s:s + block]
        total += int((a[:, :, None] == b[:, None, :]).any(axis=2).sum())
    return total / (n * k)


def knn_preservation(X, Y, k=10, metric="euclidean", *, n_jobs=1):
    """Mean fraction of each point's ``k`` input-space neighbours kept among its ``k`` embedding neighbours.

    Both neighbour lists are exact (:class:`turbotsne.neighbors.Exact`, blocked
    brute force; each point excluded from its own list).

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)
        The input data (or distances with ``metric="precomputed"``).
    Y : array-like of shape (n_samples, n_components)
        The embedding.
    k : int, default=10
    metric : str or callable, default="euclidean"
        Input-space metric (any that ``Exact`` supports).
    n_jobs : int, default=1

    Returns
    -------
    float
        In [0, 1]; 1 when every point keeps all its ``k`` neighbours.
    """
    X, Y = _check_pair(X, Y, metric)
    k = _check_k(k, Y.shape[0], "k")
    if metric == "precomputed":
        from .neighbors import Precomputed

        ind_X = Precomputed(n_jobs=n_jobs).build(X, k)[0]
    else:
        ind_X = Exact(metric, n_jobs=n_jobs).build(X, k)[0]
    return _overlap(ind_X, _embedding_knn(Y, k, n_jobs))


def _affinity_matrix(P):
    P = getattr(P, "P", P)  # an Affinities object or a TSNEEmbedding
    if sp.issparse(P):
        P = sp.csr_matrix(P, dtype=np.float64)
        P.sort_indices()
        total = P.sum()
    else:
        P = np.ascontiguousarray(P, dtype=np.float64)
        if P.ndim != 2 or P.shape[0] != P.shape[1]:
            raise ValueError(f"P must be a square matrix; got shape {P.shape}.")
        total = P.sum()
    if not np.isfinite(total) or total <= 0:
        raise ValueError("P must have a positive, finite sum.")
    if abs(total - 1.0) > 1e-8:
        P = P / total
    return P


def kl_divergence(P, Y, dof=1, method="auto", *, n_jobs=1, theta=0.5, n_interpolation_points=3,
                  min_num_intervals=50, ints_in_interval=1):
    """KL(P || Q) of an embedding ``Y`` for the affinities ``P``.

    ``Q`` is the t-SNE output distribution with the heavy-tailed kernel
    ``(1 + d^2 / dof)^(-dof)`` normalised over all pairs, as in the optimiser.

    Parameters
    ----------
    P : sparse matrix, ndarray, Affinities or TSNEEmbedding of shape (n_samples, n_samples)
        Joint input affinities (symmetric); normalised to sum 1 if they do not.
    Y : array-like of shape (n_samples, n_components)
        The embedding.
    dof : float, default=1
        Degrees of freedom of the kernel (1 is standard t-SNE).
    method : {"auto", "exact", "bh", "fft"}, default="auto"
        How the normaliser Z of Q is computed: "exact" sums all pairs
        (O(N^2) time, O(N) memory); "bh" (Barnes-Hut) and "fft" (interpolation)
        approximate it as in the optimiser. "auto" is exact up to
        ``AUTO_EXACT_KL_MAX_N`` points, then what the optimiser's "auto" picks.
    n_jobs : int, default=1
    theta, n_interpolation_points, min_num_intervals, ints_in_interval
        Accuracy settings of "bh" and "fft" (as in ``TSNE``).

    Returns
    -------
    float
    """
    from . import gradients
    from ._config import thread_limit
    from .engine import NUMBA

    P = _affinity_matrix(P)
    Y = _as_2d(Y, "embedding")
    n, d = Y.shape
    if P.shape[0] != n:
        raise ValueError(f"P is {P.shape[0]} x {P.shape[1]} but the embedding has {n} points.")
    method = gradients.canonical_method(method)
    if method == "auto":
        method = "exact" if n <= AUTO_EXACT_KL_MAX_N else NUMBA.auto_method(n, d)
    if isinstance(P, np.ndarray) and method != "exact":
        P = sp.csr_matrix(P)
    backend = gradients.make_backend(method, P, theta=theta, n_interpolation_points=n_interpolation_points,
                                     min_num_intervals=min_num_intervals, ints_in_interval=ints_in_interval,
                                     n_jobs=n_jobs, n_samples=n, n_components=d)
    out = np.empty_like(Y)
    with thread_limit(n_jobs):
        return float(backend.gradient(Y, P, float(dof), 1.0, out, True))


def knn_accuracy(Y, labels, k=10, *, n_jobs=1, neighbors=None):
    """Leave-one-out accuracy of a ``k``-nearest-neighbour majority vote in the embedding.

    Parameters
    ----------
    Y : array-like of shape (n_samples, n_components)
    labels : array-like of shape (n_samples,)
        Class labels (any hashable values numpy can sort).
    k : int, default=10
    n_jobs : int, default=1
    neighbors : ndarray of shape (n_samples, >= k), optional
        Precomputed embedding neighbours (each point excluded from its own list).

    Returns
    -------
    float
        Fraction of points whose label is the most frequent among their ``k``
        neighbours (ties go to the smallest label).
    """
    Y = _as_2d(Y, "embedding")
    labels = np.asarray(labels)
    if labels.shape != (Y.shape[0],):
        raise ValueError(f"labels must have shape ({Y.shape[0]},); got {labels.shape}.")
    k = _check_k(k, Y.shape[0], "k")
    nn = neighbors[:, :k] if neighbors is not None and neighbors.shape[1] >= k else _embedding_knn(Y, k, n_jobs)
    classes, codes = np.unique(labels, return_inverse=True)
    codes = codes.ravel()
    n = Y.shape[0]
    rows = np.repeat(np.arange(n), k)
    votes = sp.csr_matrix((np.ones(n * k), (rows, codes[nn].ravel())), shape=(n, len(classes)))
    predicted = np.asarray(votes.argmax(axis=1)).ravel()
    return float(np.mean(predicted == codes))


def quality_report(X, embedding, labels=None, *, n_neighbors=10, metric="euclidean", affinities=None,
                   dof=1, perplexity=30, subsample=None, random_state=None, n_jobs=1):
    """Every quality measure of an embedding in one dict.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)
        The input data.
    embedding : array-like of shape (n_samples, n_components)
        The embedding (an ndarray or a ``TSNEEmbedding``).
    labels : array-like of shape (n_samples,), optional
        Class labels; adds ``"knn_accuracy"``.
    n_neighbors : int, default=10
        ``k`` of trustworthiness, kNN preservation and the kNN classifier.
    metric : str, default="euclidean"
        Input-space metric.
    affinities : Affinities, sparse matrix or ndarray, optional
        P for the KL divergence, over all ``n_samples`` points. Defaults to
        the embedding's own affinities when it is a ``TSNEEmbedding``; else
        perplexity-based affinities of the (subsampled) data are computed.
    dof : float, default=1
        Kernel degrees of freedom for the KL divergence.
    perplexity : float, default=30
        Used when affinities have to be computed.
    subsample : int or float, optional
        Evaluate on a random subset of this many points (a float in (0, 1]:
        this fraction). The KL divergence uses the full data when
        ``affinities`` are given (or come with the embedding).
    random_state : int, RandomState or None
        Draws the subsample.
    n_jobs : int, default=1

    Returns
    -------
    dict
        ``n_samples`` (points evaluated), ``n_neighbors``, ``trustworthiness``,
        ``knn_preservation``, ``kl_divergence``, and ``knn_accuracy`` when
        labels are given.
    """
    P_given = affinities if affinities is not None else getattr(embedding, "affinities", None)
    X_full = X.tocsr() if sp.issparse(X) else np.asarray(X)
    Y_full = _as_2d(embedding, "embedding")
    n = Y_full.shape[0]
    if X_full.shape[0] != n:
        raise ValueError(f"X and the embedding have different numbers of samples: {X_full.shape[0]} and {n}.")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (n,):
            raise ValueError(f"labels must have shape ({n},); got {labels.shape}.")
    idx = None
    if subsample is not None:
        if isinstance(subsample, numbers.Integral) and not isinstance(subsample, bool):
            m = int(subsample)
        elif isinstance(subsample, numbers.Real) and 0 < subsample <= 1:
            m = int(round(subsample * n))
        else:
            raise ValueError(f"subsample must be a positive int or a float in (0, 1]; got {subsample!r}.")
        if m < 2:
            raise ValueError(f"subsample must keep at least 2 points; got {subsample!r}.")
        if m < n:
            idx = np.sort(check_random_state(random_state).choice(n, m, replace=False))
    Xs = X_full if idx is None else X_full[idx]
    Ys = Y_full if idx is None else Y_full[idx]
    m = Ys.shape[0]
    k = _check_k(n_neighbors, m, "n_neighbors")
    report = {"n_samples": int(m), "n_neighbors": k}
    report["trustworthiness"] = trustworthiness(Xs, Ys, k, metric, n_jobs=n_jobs)
    report["knn_preservation"] = knn_preservation(Xs, Ys, k, metric, n_jobs=n_jobs)
    if P_given is not None:
        report["kl_divergence"] = kl_divergence(P_given, Y_full, dof, n_jobs=n_jobs)
    else:
        import warnings

        from .affinity import PerplexityBasedNN, check_perplexity

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            perp = check_perplexity(perplexity, m)
        aff = PerplexityBasedNN(Xs, perp, method="exact", metric=metric, n_jobs=n_jobs)
        report["kl_divergence"] = kl_divergence(aff, Ys, dof, n_jobs=n_jobs)
    if labels is not None:
        ls = labels if idx is None else labels[idx]
        report["knn_accuracy"] = knn_accuracy(Ys, ls, k, n_jobs=n_jobs)
    return report
