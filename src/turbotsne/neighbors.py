"""Nearest-neighbour indexes: ``KNNIndex.build(X, k)`` and ``.query(X_new, k)``.

Both return ``(indices, distances)`` as ``(n, k)`` arrays (int64, float64; the
approximate indexes int32, float32 from ``COMPACT_KNN_FROM_ENTRIES`` = 2^24 entries on),
sorted by distance (ties by index); ``build`` excludes each point itself from
its own list *by index*, so duplicated rows still find each other. Distances
are the metric's own (euclidean is not squared).

Indexes
-------
``Exact``
    Dense euclidean / sqeuclidean / cosine / correlation (and sparse
    euclidean / sqeuclidean / cosine): blocked brute force on BLAS -- squared
    norms plus ``X @ Y.T`` per block of at most ~64 MB, ``np.argpartition``
    per block, blocks spread over ``n_jobs`` threads -- then the distances of
    the selected candidates are recomputed from the coordinates (no
    cancellation error) and sorted. Every other scikit-learn metric (and a
    plain Python callable) goes through ``sklearn.neighbors.NearestNeighbors(
    algorithm="brute")``; metrics only pynndescent knows (``hellinger``,
    ``spearmanr``, ``wasserstein``, ... or a numba-jitted callable) through a
    parallel numba brute-force kernel over pynndescent's distance function.
``PyNNDescent``
    pynndescent's ``NNDescent`` (a runtime dependency): every pynndescent
    metric, numba-jitted callables, sparse CSR input.
``Annoy``
    Spotify's annoy (extra ``ann``): euclidean, sqeuclidean, manhattan,
    cosine, correlation (rows centred, then angular); dense input only.
``HNSW``
    hnswlib (extra ``ann``): euclidean, sqeuclidean, cosine, correlation;
    dense input only. hnswlib's "l2" space returns squared distances; like
    every approximate index here, the distances of the neighbours found are
    recomputed in float64 for the metrics above.
``Precomputed``
    ``metric="precomputed"``: a dense square distance matrix or a sparse CSR
    kNN distance graph (each row's stored entries are that point's neighbour
    distances). Used whatever ``neighbors`` says.

``"auto"`` and ``"approx"``
---------------------------
The seed contract: ``"approx"`` uses annoy for dense input when annoy supports
the metric, else pynndescent; ``"auto"`` uses exact neighbours for N < 1000 and
``"approx"`` above. Issue 4 refines this to "the fastest *installed* index that
supports the metric and the input". Measured with ``bench/bench_knn.py`` (2
threads on a shared 2-core machine, k = 90, euclidean, random_state 0,
recall@90 against exact neighbours of 2,000 random points; openTSNE 1.0.4's
default ``nearest_neighbors.Annoy`` with 50 trees as the baseline)::

    python bench/bench_knn.py --data ../shared/data/mnist70k.npz --n 70000 --pca 50 --n-jobs 2 \
        --indexes hnsw hnsw:ef_construction=200 annoy pynndescent auto

    MNIST 70,000 x 50 (PCA)     build s   recall@90   time / openTSNE
    openTSNE Annoy (50 trees)     24.1     0.9899       1.00
    hnsw (M 16, ef_constr 100)     7.4     0.9988       0.31  (search breadth 2k; with the
                                                               current ef_construction 64 and
                                                               breadth k + 30, on a quiet
                                                               machine: 4.72 s, 0.9951, 0.23)
    hnsw (ef_construction 200)    15.0     0.9994       0.62
    annoy (50 trees)              31.0     0.9899       1.29
    pynndescent                   19.3     0.9998       0.80  (+23.0 s numba compilation,
                                                               paid in every new process)
    exact, 2,000 queries only      1.9     1
    MNIST 20,000 x 784 (raw)
    openTSNE Annoy                10.3     0.9634       1.00
    hnsw                           5.6     0.9984       0.54
    annoy                          7.7     0.9634       0.75

hnsw is fastest and most accurate wherever it supports the metric; next comes
annoy (pynndescent's build is shorter, but its compilation is not cached on
disk, so a fresh process pays ~42 s in all against annoy's 31 s). Single
runs on this shared machine vary by up to ~30 % (annoy, with openTSNE's
trees and identical recall, was 1.29x openTSNE's time on PCA-50 but 0.75x on
raw pixels). Hence the order of preference for dense input, ``APPROX_ORDER``
below: the first *installed* index that supports the metric (hnsw for
euclidean / sqeuclidean / cosine / correlation, annoy for manhattan,
pynndescent for the rest and for ``metric_params``). Sparse input always goes
to pynndescent, and a metric no approximate index supports (a plain Python
callable, say) falls back to ``Exact``. ``"auto"`` keeps the seed's exact
neighbours below N = 1000 (exact costs ~1.9 s per 2,000 queries against
70,000 points, so it does not pay beyond a few thousand points).
"""
from __future__ import annotations

import abc
import functools
import importlib.util
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from ._config import effective_n_jobs, thread_limit

logger = logging.getLogger(__name__)

__all__ = [
    "KNNIndex", "Exact", "PyNNDescent", "Annoy", "HNSW", "Precomputed", "AutoIndex",
    "get_knn_index", "NEIGHBORS_METHODS", "APPROX_ORDER",
]

#: the values of the ``neighbors`` parameter.
NEIGHBORS_METHODS = ("auto", "approx", "exact", "annoy", "pynndescent", "hnsw")

#: approximate indexes for dense input, fastest first (see the module docstring).
APPROX_ORDER = ("hnsw", "annoy", "pynndescent")

#: the largest N for which "auto" picks exact neighbours.
AUTO_EXACT_MAX_N = 1000

#: memory budget of one brute-force distance block (bytes).
BLOCK_BYTES = 64 * 2**20

#: from this many kNN entries (rows x k) on, the approximate indexes return int32 indices (while
#: the reference has fewer than 2^31 points) and float32 distances instead of int64 / float64:
#: 8 instead of 16 bytes per entry, 0.72 instead of 1.44 KB per point at k = 90 (1M points: 0.7 GB
#: less next to the index). 2^24 entries are ~186,000 points at k = 90; below that the outputs stay
#: in full precision (the distances are the refined float64 ones rounded to float32 above it).
COMPACT_KNN_FROM_ENTRIES = 2 ** 24

_ANN_HINT = "pip install 'turbotsne[ann]'"

# Canonical names for the aliases the tables below use.
_ALIASES = {
    "l2": "euclidean",
    "l1": "manhattan",
    "cityblock": "manhattan",
    "taxicab": "manhattan",
}

#: metrics of the blocked BLAS brute force (dense input).
_BLAS_METRICS = frozenset({"euclidean", "sqeuclidean", "cosine", "correlation"})
#: the same for sparse input (correlation would centre, i.e. densify, the rows).
_BLAS_METRICS_SPARSE = frozenset({"euclidean", "sqeuclidean", "cosine"})


def _canonical(metric):
    return _ALIASES.get(metric, metric) if isinstance(metric, str) else metric


def _is_numba_function(metric):
    try:
        from numba.core.registry import CPUDispatcher
    except ImportError:  # pragma: no cover
        return False
    return isinstance(metric, CPUDispatcher)


def _installed(module):
    return importlib.util.find_spec(module) is not None


def _seed(random_state):
    """An int32 seed drawn from ``random_state`` (int, RandomState, Generator or None)."""
    from sklearn.utils import check_random_state

    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


# --------------------------------------------------------------------------- #
# Input checks
# --------------------------------------------------------------------------- #
def _check_array(X, **kw):
    from sklearn.utils import check_array

    try:
        return check_array(X, ensure_all_finite=True, **kw)
    except TypeError:  # scikit-learn < 1.6 calls it force_all_finite
        return check_array(X, force_all_finite=True, **kw)


def _check_data(X, *, accept_sparse, dtype=np.float64, name="X"):
    if sp.issparse(X) and not accept_sparse:
        raise ValueError(f"{name} is sparse but this index needs dense input.")
    return _check_array(X, accept_sparse="csr" if accept_sparse else False, dtype=dtype, input_name=name)


def _check_k(k, n_ref, *, build):
    n_avail = n_ref - 1 if build else n_ref
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"The number of neighbours k must be a positive integer. Got {k!r} instead.")
    if k > n_avail:
        raise ValueError(
            f"Asked for k={k} neighbours but only {n_avail} other points are available "
            f"({n_ref} reference points); lower k (or the perplexity) below {n_avail + 1}."
        )
    return int(k)


def knn_dtypes(n_query, n_ref, k):
    """The ``(indices, distances)`` dtypes of an approximate index's ``(n_query, k)`` output:
    int64 / float64, or int32 / float32 from ``COMPACT_KNN_FROM_ENTRIES`` entries on (the
    compact arrays are then the fronts of buffers with room for P: :func:`_output`)."""
    if n_query * k < COMPACT_KNN_FROM_ENTRIES:
        return np.int64, np.float64
    return (np.int32 if n_ref < 2 ** 31 else np.int64), np.float32


def _output(n, k, dtype, room):
    """An ``(n, k)`` output array; with ``room`` the front of a flat buffer of ``2 n k`` entries,
    in which :func:`turbotsne.affinity.symmetrize` can build the symmetric P of the kNN graph
    (at most ``2 n k`` entries) in place. The rest of the buffer is not touched, so it is
    address space, not resident memory."""
    if not room:
        return np.empty((n, k), dtype=dtype)
    return np.empty(2 * n * k, dtype=dtype)[:n * k].reshape(n, k)


def _drop_self(indices, distances, k, offset=0):
    """Remove row i's own index (``offset + i``) from row i (by index, not the first column)
    and keep k.

    Rows where self did not come back lose their last (farthest) column instead
    (indexes return unique ids, so self appears at most once)."""
    n, m = indices.shape
    out_i = np.empty((n, min(k, m - 1)), dtype=np.int64)
    out_d = np.empty(out_i.shape, dtype=np.float64)
    _row_kernels()[0](np.ascontiguousarray(indices, dtype=np.int64),
                      np.ascontiguousarray(distances, dtype=np.float64), out_i, out_d, offset)
    return out_i, out_d


def _sort_rows(indices, distances):
    """Sort each row by (distance, index); returns new int64 / float64 arrays."""
    indices = np.array(indices, dtype=np.int64, order="C")
    distances = np.array(distances, dtype=np.float64, order="C")
    _row_kernels()[1](indices, distances)
    return indices, distances


@functools.lru_cache(maxsize=None)
def _row_kernels():
    import numba

    @numba.njit(parallel=True, cache=True)
    def drop_self(ind, dist, out_i, out_d, offset):
        n, m = ind.shape
        k = out_i.shape[1]
        for i in numba.prange(n):
            skip = m - 1  # no self in the row: drop the last column
            for j in range(m):
                if ind[i, j] == i + offset:
                    skip = j
                    break
            t = 0
            for j in range(m):
                if j != skip and t < k:
                    out_i[i, t] = ind[i, j]
                    out_d[i, t] = dist[i, j]
                    t += 1

    @numba.njit(parallel=True, cache=True)
    def sort_rows(ind, dist):
        # insertion sort per row by (distance, index): rows come nearly sorted from the indexes
        n, m = ind.shape
        for i in numba.prange(n):
            for j in range(1, m):
                d, x = dist[i, j], ind[i, j]
                t = j - 1
                while t >= 0 and (dist[i, t] > d or (dist[i, t] == d and ind[i, t] > x)):
                    dist[i, t + 1] = dist[i, t]
                    ind[i, t + 1] = ind[i, t]
                    t -= 1
                dist[i, t + 1] = d
                ind[i, t + 1] = x

    return drop_self, sort_rows


# --------------------------------------------------------------------------- #
# Numba kernels (compiled lazily, cached)
# --------------------------------------------------------------------------- #
@functools.lru_cache(maxsize=None)
def _pair_kernels():
    import numba

    @numba.njit(parallel=True, cache=True)
    def pair_sq_dist(Xq, Xr, cand, out):
        """out[i, j] = |Xq[i] - Xr[cand[i, j]]|^2."""
        n, m = cand.shape
        d = Xq.shape[1]
        for i in numba.prange(n):
            for j in range(m):
                c = cand[i, j]
                s = 0.0
                for t in range(d):
                    diff = Xq[i, t] - Xr[c, t]
                    s += diff * diff
                out[i, j] = s

    @numba.njit(parallel=True, cache=True)
    def pair_l1_dist(Xq, Xr, cand, out):
        """out[i, j] = sum |Xq[i] - Xr[cand[i, j]]|."""
        n, m = cand.shape
        d = Xq.shape[1]
        for i in numba.prange(n):
            for j in range(m):
                c = cand[i, j]
                s = 0.0
                for t in range(d):
                    s += abs(Xq[i, t] - Xr[c, t])
                out[i, j] = s

    return pair_sq_dist, pair_l1_dist


@functools.lru_cache(maxsize=None)
def _numba_block_kernel(dist):
    """A parallel brute-force block kernel over a numba distance function."""
    import numba

    @numba.njit(parallel=True)
    def block(Xq, Xr, out, args):
        for i in numba.prange(Xq.shape[0]):
            for j in range(Xr.shape[0]):
                out[i, j] = dist(Xq[i], Xr[j], *args)

    return block


# --------------------------------------------------------------------------- #
# Blocked brute force
# --------------------------------------------------------------------------- #
def _prepare_blas(X, metric, shift=None):
    """Rows as the BLAS path uses them: ``(rows, squared norms, zero-row mask, shift)``.

    Euclidean: dense rows are shifted by ``shift`` (the reference mean, computed
    when None), which leaves distances unchanged but keeps the norms small, so
    that ``|x|^2 + |y|^2 - 2 x.y`` does not cancel catastrophically for data far
    from the origin. Cosine / correlation: rows scaled to unit length.
    """
    if metric in ("euclidean", "sqeuclidean"):
        if sp.issparse(X):
            sq = np.asarray(X.multiply(X).sum(axis=1)).ravel()
        else:
            if shift is None:
                shift = X.mean(axis=0)
            X = X - shift
            sq = np.einsum("ij,ij->i", X, X)
        return X, sq, None, shift
    if metric == "correlation":
        X = X - X.mean(axis=1, keepdims=True)
    if sp.issparse(X):
        norms = np.sqrt(np.asarray(X.multiply(X).sum(axis=1)).ravel())
    else:
        norms = np.sqrt(np.einsum("ij,ij->i", X, X))
    zero = norms == 0
    scale = np.where(zero, 0.0, 1.0 / np.where(zero, 1.0, norms))
    if sp.issparse(X):
        X = sp.csr_matrix(sp.diags(scale) @ X)
    else:
        X = X * scale[:, None]
    return X, None, zero, None


def _select(D, m, self_offset):
    """The m smallest entries of each row of the block D (self at column row+offset excluded)."""
    if self_offset is not None:
        rows = np.arange(D.shape[0])
        D[rows, rows + self_offset] = np.inf
    if m < D.shape[1]:
        return np.argpartition(D, m - 1, axis=1)[:, :m]
    return np.broadcast_to(np.arange(D.shape[1]), D.shape).copy()


def _blocked_search(n_q, n_ref, m, block_fn, n_jobs, exclude_self):
    """Run ``block_fn(start, stop) -> D`` over row blocks; return the m candidates per row."""
    rows = max(1, min(n_q, BLOCK_BYTES // max(1, 8 * n_ref)))
    starts = list(range(0, n_q, rows))
    cand = np.empty((n_q, m), dtype=np.int64)

    def work(start):
        stop = min(start + rows, n_q)
        D = block_fn(start, stop)
        cand[start:stop] = _select(D, m, start if exclude_self else None)

    n_threads = min(effective_n_jobs(n_jobs), len(starts))
    from threadpoolctl import threadpool_limits

    if n_threads == 1:
        with threadpool_limits(limits=1, user_api="blas"):
            for s in starts:
                work(s)
    else:
        # numpy's BLAS calls and argpartition release the GIL: one BLAS thread per block
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_threads) as ex:
            list(ex.map(work, starts))
    return cand


def _recompute(metric, Xq, Xr, cand, zq=None, zr=None, n_jobs=1):
    """Exact float64 distances from Xq[i] to Xr[cand[i, j]] (Xq/Xr as `_prepare_blas` returns)."""
    n, m = cand.shape
    out = np.empty((n, m), dtype=np.float64)
    if sp.issparse(Xq) or sp.issparse(Xr):
        Xq, Xr = sp.csr_matrix(Xq), sp.csr_matrix(Xr)
        step = max(1, 2**20 // max(1, m))
        for s in range(0, n, step):
            e = min(s + step, n)
            rep = np.repeat(np.arange(s, e), m)
            diff = Xq[rep] - Xr[cand[s:e].ravel()]
            if metric == "manhattan":
                out[s:e] = np.asarray(abs(diff).sum(axis=1)).reshape(e - s, m)
            else:
                out[s:e] = np.asarray(diff.multiply(diff).sum(axis=1)).reshape(e - s, m)
    else:
        pair_sq, pair_l1 = _pair_kernels()
        Xq = np.ascontiguousarray(Xq, dtype=np.float64)
        Xr = np.ascontiguousarray(Xr, dtype=np.float64)
        with thread_limit(n_jobs):
            (pair_l1 if metric == "manhattan" else pair_sq)(Xq, Xr, np.ascontiguousarray(cand), out)
    if metric == "euclidean":
        np.sqrt(out, out=out)
    elif metric in ("cosine", "correlation"):
        out *= 0.5  # 1 - cos = |a - b|^2 / 2 for unit vectors
        out[zq] = 1.0
        out[zr[cand]] = 1.0
        np.clip(out, 0.0, 2.0, out=out)
    return out


def _blas_knn(query, ref, k, metric, n_jobs, exclude_self):
    """Exact kNN for the BLAS metrics; ``query``/``ref`` as `_prepare_blas` returns them."""
    Pq, sqq, zq, _ = query
    Pr, sqr, zr, _ = ref
    n_q, n_ref = Pq.shape[0], Pr.shape[0]
    n_avail = n_ref - 1 if exclude_self else n_ref
    m = min(n_avail, k + max(4, k // 8))  # a margin against near-ties in the BLAS distances
    PrT = Pr.T.tocsr() if sp.issparse(Pr) else Pr.T

    def block_fn(start, stop):
        G = Pq[start:stop] @ PrT
        G = G.toarray() if sp.issparse(G) else np.array(G)
        if metric in ("euclidean", "sqeuclidean"):
            G *= -2.0
            G += sqq[start:stop, None]
            G += sqr[None, :]
            return G
        np.subtract(1.0, G, out=G)
        return G

    cand = _blocked_search(n_q, n_ref, m, block_fn, n_jobs, exclude_self)
    dist = _recompute(metric, Pq, Pr, cand, zq, zr, n_jobs)
    ind, dist = _sort_rows(cand, dist)
    return ind[:, :k], dist[:, :k]


def _dense_matrix_knn(D, k, exclude_self, n_jobs):
    """kNN from a dense (n_q, n_ref) distance matrix."""
    n_q, n_ref = D.shape
    n_avail = n_ref - 1 if exclude_self else n_ref
    m = min(n_avail, k)

    def block_fn(start, stop):
        return np.array(D[start:stop], dtype=np.float64)  # a copy: _select writes the diagonal

    cand = _blocked_search(n_q, n_ref, m, block_fn, n_jobs, exclude_self)
    dist = np.take_along_axis(D, cand, axis=1).astype(np.float64)
    return _sort_rows(cand, dist)


def _numba_knn(Xq, Xr, k, dist, args, n_jobs, exclude_self):
    """Exact kNN with a numba distance function (pynndescent metrics, jitted callables)."""
    kernel = _numba_block_kernel(dist)
    Xq = np.ascontiguousarray(Xq, dtype=np.float64)
    Xr = np.ascontiguousarray(Xr, dtype=np.float64)
    n_q, n_ref = Xq.shape[0], Xr.shape[0]
    m = min(n_ref - 1 if exclude_self else n_ref, k)
    rows = max(1, min(n_q, BLOCK_BYTES // max(1, 8 * n_ref)))
    cand = np.empty((n_q, m), dtype=np.int64)
    dist_out = np.empty((n_q, m), dtype=np.float64)
    with thread_limit(n_jobs):
        for start in range(0, n_q, rows):
            stop = min(start + rows, n_q)
            D = np.empty((stop - start, n_ref), dtype=np.float64)
            kernel(Xq[start:stop], Xr, D, args)
            c = _select(D, m, start if exclude_self else None)
            cand[start:stop] = c
            rr = np.arange(stop - start)
            if exclude_self:
                D[rr, rr + start] = np.inf
            dist_out[start:stop] = np.take_along_axis(D, c, axis=1)
    return _sort_rows(cand, dist_out)


# --------------------------------------------------------------------------- #
# Metric tables
# --------------------------------------------------------------------------- #
def _sklearn_metrics(sparse):
    from sklearn.neighbors import VALID_METRICS, VALID_METRICS_SPARSE

    table = VALID_METRICS_SPARSE if sparse else VALID_METRICS
    return frozenset(m for m in table["brute"] if m != "precomputed")


def _pynndescent_metrics(sparse):
    if not _installed("pynndescent"):
        return frozenset()
    if sparse:
        from pynndescent.sparse import sparse_named_distances as table
    else:
        from pynndescent.distances import named_distances as table
    return frozenset(table)


# --------------------------------------------------------------------------- #
# Indexes
# --------------------------------------------------------------------------- #
class KNNIndex(abc.ABC):
    """A nearest-neighbour index over the reference data.

    Parameters
    ----------
    metric : str or callable
    metric_params : dict or None
        Extra keyword arguments of the metric (``p`` of minkowski, ...).
    n_jobs : int or None
        scikit-learn convention: ``None`` 1 thread, ``-1`` all cores.
    random_state : int, RandomState, Generator or None
    """

    #: human-readable name used in error messages
    name = "index"

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None):
        self.metric = metric
        self.metric_params = metric_params
        self.n_jobs = n_jobs
        self.random_state = random_state

    @classmethod
    def supports(cls, metric, sparse=False):
        """Whether this index handles ``metric`` on (sparse) input."""
        return False

    @classmethod
    def valid_metrics(cls, sparse=False):
        """The named metrics this index supports (callables aside)."""
        return frozenset()

    @abc.abstractmethod
    def build(self, X, k):
        """Index ``X`` and return the ``k`` nearest neighbours of each of its rows."""

    @abc.abstractmethod
    def query(self, X_new, k):
        """Return the ``k`` nearest reference points of each row of ``X_new``."""

    # helpers ----------------------------------------------------------------
    @property
    def _params(self):
        return dict(self.metric_params or {})

    def _check_metric(self, sparse):
        if not self.supports(self.metric, sparse):
            raise ValueError(_unsupported_message(self.name, self.metric, sparse))

    def _check_fitted(self):
        if getattr(self, "n_samples_fit_", None) is None:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"This {type(self).__name__} index is not built yet; call build(X, k) first.")

    def _check_query(self, X_new):
        X_new = _check_data(X_new, accept_sparse=self._sparse_ok, name="X_new")
        if X_new.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X_new has {X_new.shape[1]} features, but the index was built on "
                f"{self.n_features_in_} features."
            )
        return X_new

    _sparse_ok = False

    def __repr__(self):
        return (f"{type(self).__name__}(metric={self.metric!r}, metric_params={self.metric_params!r}, "
                f"n_jobs={self.n_jobs!r}, random_state={self.random_state!r})")


def _index_classes():
    return {"exact": Exact, "pynndescent": PyNNDescent, "annoy": Annoy, "hnsw": HNSW}


def _unsupported_message(name, metric, sparse):
    kind = "sparse" if sparse else "dense"
    metric_name = getattr(metric, "__name__", repr(metric)) if callable(metric) else repr(metric)
    others = [n for n, c in _index_classes().items() if n != name and c.supports(metric, sparse)]
    msg = f"The {name!r} nearest-neighbour index does not support metric={metric_name} on {kind} input."
    if others:
        msg += f" Use neighbors={others[0]!r} (indexes that support it: {', '.join(others)})."
    else:
        msg += " No index supports it"
        msg += "; pass a dense array." if sparse else "."
    cls = _index_classes().get(name)
    if cls is not None:
        valid = sorted(cls.valid_metrics(sparse))
        if valid:
            msg += f" Metrics {name!r} supports on {kind} input: {', '.join(valid)}."
    return msg


class Exact(KNNIndex):
    """Exact neighbours by brute force (see the module docstring for the three paths)."""

    name = "exact"
    _sparse_ok = True

    @classmethod
    def valid_metrics(cls, sparse=False):
        if sparse:
            return _BLAS_METRICS_SPARSE | _sklearn_metrics(True) | {"l2", "l1", "taxicab"}
        return _BLAS_METRICS | _sklearn_metrics(False) | _pynndescent_metrics(False) | set(_ALIASES)

    @classmethod
    def supports(cls, metric, sparse=False):
        if callable(metric):
            return not sparse
        # the common metrics first: pynndescent's table is imported only for the rest (importing
        # pynndescent costs ~60 MB of RSS and a second, in every process)
        common = (_BLAS_METRICS_SPARSE | {"l2", "l1", "taxicab"}) if sparse else (_BLAS_METRICS | set(_ALIASES))
        if metric in common or _canonical(metric) in common:
            return True
        return metric in cls.valid_metrics(sparse) or _canonical(metric) in cls.valid_metrics(sparse)

    def _path(self, sparse):
        metric = self.metric
        if callable(metric):
            return "numba" if _is_numba_function(metric) else "sklearn"
        canon = _canonical(metric)
        blas = _BLAS_METRICS_SPARSE if sparse else _BLAS_METRICS
        if canon in blas and not self.metric_params:
            return "blas"
        if metric in _sklearn_metrics(sparse) or canon in _sklearn_metrics(sparse):
            return "sklearn"
        return "numba"

    def fit(self, X):
        """Index ``X`` without computing its own neighbour lists (for ``query`` only)."""
        X = _check_data(X, accept_sparse=True)
        sparse = sp.issparse(X)
        self._check_metric(sparse)
        self.n_samples_fit_, self.n_features_in_ = X.shape
        self.path_ = self._path(sparse)
        canon = _canonical(self.metric)
        if self.path_ == "blas":
            self._ref = _prepare_blas(X, canon)
        elif self.path_ == "sklearn":
            from sklearn.neighbors import NearestNeighbors

            metric = self.metric if callable(self.metric) or self.metric in _sklearn_metrics(sparse) else canon
            params = self._params
            p = params.pop("p", 2)  # scikit-learn wants minkowski's p as its own argument
            self._nn = NearestNeighbors(
                algorithm="brute", metric=metric, p=p,
                metric_params=params or None, n_jobs=effective_n_jobs(self.n_jobs),
            ).fit(X)
        else:
            self._ref = X
        return self

    def build(self, X, k):
        self.fit(X)
        k = _check_k(k, self.n_samples_fit_, build=True)
        if self.path_ == "blas":
            return _blas_knn(self._ref, self._ref, k, _canonical(self.metric), self.n_jobs, True)
        if self.path_ == "sklearn":
            distances, indices = self._nn.kneighbors(n_neighbors=k)  # self excluded by index
            return _sort_rows(indices, distances)
        return _numba_knn(self._ref, self._ref, k, self._numba_dist(), tuple(self._params.values()),
                          self.n_jobs, True)

    def _numba_dist(self):
        if callable(self.metric):
            return self.metric
        from pynndescent.distances import named_distances

        return named_distances[self.metric]

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = _check_k(k, self.n_samples_fit_, build=False)
        canon = _canonical(self.metric)
        if self.path_ == "blas":
            return _blas_knn(_prepare_blas(X_new, canon, self._ref[3]), self._ref, k, canon, self.n_jobs, False)
        if self.path_ == "sklearn":
            distances, indices = self._nn.kneighbors(X_new, n_neighbors=k)
            return _sort_rows(indices, distances)
        return _numba_knn(X_new, self._ref, k, self._numba_dist(), tuple(self._params.values()),
                          self.n_jobs, False)


class _ApproxIndex(KNNIndex):
    """Shared pieces of the approximate indexes: metric transforms, distance refinement,
    and the chunked search that bounds the memory of both."""

    #: metrics whose distances are recomputed in float64 from the coordinates
    _REFINE = frozenset({"euclidean", "sqeuclidean", "cosine", "correlation", "manhattan"})

    #: query rows searched, refined and sorted at a time: an index's own (n, k + 1) output
    #: (hnswlib: uint64 + float32) and the float64 refinement then take ~25 MB (k = 90) at
    #: any N instead of ~3 KB per point next to the (n, k) result (issue 6, 1M points)
    CHUNK = 1 << 13

    def _refines(self, sparse):
        canon = _canonical(self.metric)
        return (not callable(self.metric) and canon in self._REFINE and not self.metric_params
                and not (sparse and canon == "correlation"))

    def _chunked(self, search, Xq, k, exclude_self):
        """``(indices, distances)`` of every row of ``Xq``: ``search(start, stop)`` returns the
        raw neighbours of rows ``start:stop`` (``k + 1`` of them with ``exclude_self``, the
        point itself among them), then each chunk loses self and is refined and sorted
        straight into one ``(n, k)`` output (int64 / float64, or int32 / float32 from
        ``COMPACT_KNN_FROM_ENTRIES`` entries on: :func:`knn_dtypes`)."""
        canon = _canonical(self.metric)
        sparse = sp.issparse(Xq) or sp.issparse(self._ref)
        refine = self._refines(sparse)
        Xr = self._ref
        zr = None
        if refine:
            if not sparse:
                Xq, Xr = np.asarray(Xq, dtype=np.float64), np.asarray(Xr, dtype=np.float64)
            if canon in ("cosine", "correlation"):  # unit rows, prepared once for all chunks
                Xr, _, zr, _ = _prepare_blas(Xr, canon)
        n = Xq.shape[0]
        index_type, distance_type = knn_dtypes(n, Xr.shape[0], k)
        room = distance_type == np.float32  # compact outputs leave room for P (knn_dtypes)
        out_i = _output(n, k, index_type, room)
        out_d = _output(n, k, distance_type, room)
        for s in range(0, n, self.CHUNK):
            e = min(n, s + self.CHUNK)
            ind, dist = search(s, e)
            if exclude_self:
                ind, dist = _drop_self(ind, dist, k, offset=s)
            ind = np.ascontiguousarray(ind, dtype=np.int64)
            if refine:
                if canon in ("cosine", "correlation"):
                    Pq, _, zq, _ = _prepare_blas(Xq[s:e], canon)
                    dist = _recompute(canon, Pq, Xr, ind, zq, zr, self.n_jobs)
                else:
                    dist = _recompute(canon, Xq[s:e], Xr, ind, n_jobs=self.n_jobs)
            out_i[s:e] = ind
            out_d[s:e] = dist
            _row_kernels()[1](out_i[s:e], out_d[s:e])
        return out_i, out_d


class PyNNDescent(_ApproxIndex):
    """pynndescent's NN-descent graph (every pynndescent metric, sparse input).

    ``epsilon`` is the search slack of ``query`` (pynndescent's default 0.1
    gave a recall of 0.87 on sparse 30-d test data, 0.2 gives 0.95).
    """

    name = "pynndescent"
    _sparse_ok = True

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 n_trees=None, n_iters=None, max_candidates=None, epsilon=0.2):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.epsilon = epsilon
        self.n_trees = n_trees
        self.n_iters = n_iters
        self.max_candidates = max_candidates

    @classmethod
    def valid_metrics(cls, sparse=False):
        return _pynndescent_metrics(sparse) | (set(_ALIASES) - {"cityblock"} if not sparse else set())

    @classmethod
    def supports(cls, metric, sparse=False):
        if callable(metric):
            return _is_numba_function(metric) and not sparse
        return metric in cls.valid_metrics(sparse) or _canonical(metric) in _pynndescent_metrics(sparse)

    def _pynn_metric(self, sparse):
        if callable(self.metric) or self.metric in _pynndescent_metrics(sparse):
            return self.metric
        return _canonical(self.metric)

    def build(self, X, k):
        _require("pynndescent", "pynndescent", runtime=True)
        from pynndescent import NNDescent

        sparse = sp.issparse(X)
        self._check_metric(sparse)
        X = _check_data(X, accept_sparse=True)
        k = _check_k(k, X.shape[0], build=True)
        self.n_samples_fit_, self.n_features_in_ = X.shape
        n = X.shape[0]
        n_jobs = effective_n_jobs(self.n_jobs)
        with thread_limit(n_jobs):
            self._index = NNDescent(
                X.astype(np.float32), metric=self._pynn_metric(sparse), metric_kwds=self.metric_params,
                n_neighbors=min(n, k + 1), random_state=np.random.RandomState(_seed(self.random_state)),
                n_jobs=n_jobs, low_memory=True, compressed=False, verbose=False,
                n_trees=self.n_trees if self.n_trees is not None else min(64, 5 + int(round(n ** 0.5 / 20.0))),
                n_iters=self.n_iters if self.n_iters is not None else max(5, int(round(np.log2(n)))),
                max_candidates=self.max_candidates if self.max_candidates is not None else 60,
            )
            indices, distances = self._index.neighbor_graph
        self._ref = X
        return self._chunked(lambda s, e: (indices[s:e], distances[s:e]), X, k, exclude_self=True)

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = _check_k(k, self.n_samples_fit_, build=False)
        def search(s, e):
            with thread_limit(self.n_jobs):
                return self._index.query(X_new[s:e].astype(np.float32), k=k, epsilon=self.epsilon)

        return self._chunked(search, X_new, k, exclude_self=False)


def _require(module, what, runtime=False):
    """Import ``module`` or raise an ImportError that says how to install it."""
    try:
        return __import__(module)
    except ImportError as exc:
        hint = "pip install pynndescent" if runtime else _ANN_HINT
        raise ImportError(
            f"neighbors={what!r} needs the {module!r} package, which is not installed: {hint}"
        ) from exc


class Annoy(_ApproxIndex):
    """Spotify's annoy random-projection forest (extra ``ann``).

    ``n_trees`` defaults to 50 (openTSNE's and FIt-SNE's choice) and
    ``search_k`` to annoy's default of ``n_trees * (k + 1)``.
    """

    name = "annoy"
    _METRICS = {"euclidean": "euclidean", "sqeuclidean": "euclidean", "manhattan": "manhattan",
                "cosine": "angular", "correlation": "angular"}

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 n_trees=50, search_k=-1):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.n_trees = n_trees
        self.search_k = search_k

    @classmethod
    def valid_metrics(cls, sparse=False):
        if sparse:
            return frozenset()
        return frozenset(cls._METRICS) | {m for m, c in _ALIASES.items() if c in cls._METRICS}

    @classmethod
    def supports(cls, metric, sparse=False):
        return not sparse and not callable(metric) and _canonical(metric) in cls._METRICS

    def _transform(self, X):
        X = np.asarray(X, dtype=np.float32)
        if _canonical(self.metric) == "correlation":
            X = X - X.mean(axis=1, keepdims=True)
        return X

    def build(self, X, k):
        annoy = _require("annoy", "annoy")
        self._check_metric(sp.issparse(X))
        X = _check_data(X, accept_sparse=False)
        if self.metric_params:
            raise ValueError("The 'annoy' index takes no metric_params; use neighbors='exact' or 'pynndescent'.")
        self._check_metric(False)
        k = _check_k(k, X.shape[0], build=True)
        self.n_samples_fit_, self.n_features_in_ = X.shape
        Xt = self._transform(X)
        self._index = annoy.AnnoyIndex(X.shape[1], self._METRICS[_canonical(self.metric)])
        self._index.set_seed(_seed(self.random_state))
        for i in range(Xt.shape[0]):
            self._index.add_item(i, Xt[i])
        n_jobs = effective_n_jobs(self.n_jobs)
        self._index.build(self.n_trees, n_jobs=n_jobs)
        self._ref = X

        def search(s, e):  # every annoy metric is refined: annoy's float32 distances are not fetched
            ind = self._search(lambda i: self._index.get_nns_by_item(s + i, k + 1, self.search_k),
                               e - s, k + 1, n_jobs)
            return ind, np.zeros(ind.shape)

        return self._chunked(search, X, k, exclude_self=True)

    @staticmethod
    def _search(fn, n, k, n_jobs):
        out = np.empty((n, k), dtype=np.int64)

        def chunk(bounds):
            s, e = bounds
            for i in range(s, e):
                row = fn(i)
                if len(row) < k:  # annoy may return fewer than asked on tiny forests
                    row = list(row) + [row[-1]] * (k - len(row))
                out[i] = row

        step = max(1, -(-n // (4 * n_jobs)))
        bounds = [(s, min(s + step, n)) for s in range(0, n, step)]
        if n_jobs == 1:
            for b in bounds:
                chunk(b)
        else:
            with ThreadPoolExecutor(n_jobs) as ex:  # annoy releases the GIL while searching
                list(ex.map(chunk, bounds))
        return out

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = _check_k(k, self.n_samples_fit_, build=False)
        n_jobs = effective_n_jobs(self.n_jobs)

        def search(s, e):
            Xt = self._transform(X_new[s:e])
            ind = self._search(lambda i: self._index.get_nns_by_vector(Xt[i], k, self.search_k),
                               e - s, k, n_jobs)
            return ind, np.zeros(ind.shape)

        return self._chunked(search, X_new, k, exclude_self=False)

    # annoy indexes live in C++ memory: serialise through an anonymous in-memory file
    def __getstate__(self):
        state = dict(self.__dict__)
        index = state.pop("_index", None)
        if index is not None:
            state["_index_bytes"] = _annoy_to_bytes(index)
        return state

    def __setstate__(self, state):
        data = state.pop("_index_bytes", None)
        self.__dict__.update(state)
        if data is not None:
            annoy = _require("annoy", "annoy")
            self._index = annoy.AnnoyIndex(self.n_features_in_, self._METRICS[_canonical(self.metric)])
            _annoy_from_bytes(self._index, data)


def _memfile(data=None):
    """A file descriptor and path of an anonymous in-memory file (Linux memfd), or a temp file."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("turbotsne-annoy")
        path = f"/proc/self/fd/{fd}"
    else:  # pragma: no cover - not Linux
        import tempfile

        fd, path = tempfile.mkstemp(suffix=".ann")
    if data is not None:
        os.write(fd, data)
    return fd, path


def _annoy_to_bytes(index):
    fd, path = _memfile()
    try:
        index.save(path)  # annoy then serves the index from this (memory) file
        return os.pread(fd, os.fstat(fd).st_size, 0)
    finally:
        os.close(fd)
        if not path.startswith("/proc/"):  # pragma: no cover
            os.unlink(path)


def _annoy_from_bytes(index, data):
    fd, path = _memfile(data)
    try:
        index.load(path)  # mmapped: the memory stays valid after closing the descriptor
    finally:
        os.close(fd)
        if not path.startswith("/proc/"):  # pragma: no cover
            os.unlink(path)


class HNSW(_ApproxIndex):
    """hnswlib's hierarchical navigable small-world graph (extra ``ann``).

    ``M`` and ``ef_construction`` are hnswlib's; the search breadth is
    ``ef`` (default ``k + EF_MARGIN``, at least 50): at k = 90 on MNIST-70k
    (PCA-50) that measured recall 0.9968 in 2.6 s of querying, against 0.9988
    in 3.6 s at ``2 k`` (openTSNE's Annoy: 0.9899; ``bench/bench_knn.py``).
    ``ef_construction=64`` (hnswlib's examples use 100-200): graph 2.4 -> 1.6 s
    at recall 0.9967 -> 0.9951 (ad hoc timing, same data). ``M=12`` (hnswlib's
    default is 16): the whole k = 90 graph of MNIST-70k in 5.0 instead of 5.4 s (means
    of two alternating runs each, 4.46 / 5.49 against 5.18 / 5.62 s) at recall 0.994
    instead of 0.995 (``python bench/bench_knn.py --data ../shared/data/mnist70k.npz
    --n 70000 --pca 50 --n-jobs 2 --no-opentsne --indexes hnsw:M=12 hnsw:M=16
    hnsw:M=12 hnsw:M=16``, AMD EPYC Zen 4); at 250k (the synthetic set of
    ``bench/common.py``) 19.2 instead of 20.4 s at recall 0.9964 against 0.9963 (one ad
    hoc run each); the index holds 8 fewer links per point.
    """

    #: default search breadth beyond k
    EF_MARGIN = 30

    name = "hnsw"
    _METRICS = {"euclidean": "l2", "sqeuclidean": "l2", "cosine": "cosine", "correlation": "cosine"}

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 M=12, ef_construction=64, ef=None):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef

    @classmethod
    def valid_metrics(cls, sparse=False):
        if sparse:
            return frozenset()
        return frozenset(cls._METRICS) | {"l2"}

    @classmethod
    def supports(cls, metric, sparse=False):
        return not sparse and not callable(metric) and _canonical(metric) in cls._METRICS

    def _transform(self, X):
        X = np.asarray(X, dtype=np.float32)
        if _canonical(self.metric) == "correlation":
            X = X - X.mean(axis=1, keepdims=True)
        return X

    def _set_ef(self, k):
        self._index.set_ef(max(self.ef or 0, min(max(k + self.EF_MARGIN, 50), self.n_samples_fit_)))

    def build(self, X, k):
        hnswlib = _require("hnswlib", "hnsw")
        self._check_metric(sp.issparse(X))
        X = _check_data(X, accept_sparse=False)
        if self.metric_params:
            raise ValueError("The 'hnsw' index takes no metric_params; use neighbors='exact' or 'pynndescent'.")
        self._check_metric(False)
        k = _check_k(k, X.shape[0], build=True)
        self.n_samples_fit_, self.n_features_in_ = X.shape
        n_jobs = effective_n_jobs(self.n_jobs)
        Xt = self._transform(X)
        self._index = hnswlib.Index(space=self._METRICS[_canonical(self.metric)], dim=X.shape[1])
        self._index.init_index(max_elements=X.shape[0], M=self.M, ef_construction=self.ef_construction,
                               random_seed=_seed(self.random_state))
        self._index.add_items(Xt, num_threads=n_jobs)
        self._set_ef(k + 1)
        self._ref = X
        return self._chunked(lambda s, e: self._index.knn_query(Xt[s:e], k=k + 1, num_threads=n_jobs),
                             X, k, exclude_self=True)

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = _check_k(k, self.n_samples_fit_, build=False)
        self._set_ef(k)
        n_jobs = effective_n_jobs(self.n_jobs)
        return self._chunked(lambda s, e: self._index.knn_query(self._transform(X_new[s:e]), k=k,
                                                                num_threads=n_jobs),
                             X_new, k, exclude_self=False)


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
        D = _check_array(D, accept_sparse="csr", dtype=np.float64, input_name=name)
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
        k = _check_k(k, n, build=True)
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
        return _dense_matrix_knn(D, k, True, self.n_jobs)

    def query(self, X_new, k):
        self._check_fitted()
        D = self._check_distances(X_new, "X_new")
        if D.shape[1] != self.n_samples_fit_:
            raise ValueError(
                f"With metric='precomputed', X_new must hold distances to the {self.n_samples_fit_} "
                f"reference points (shape (n_new, {self.n_samples_fit_})); got shape {D.shape}."
            )
        k = _check_k(k, self.n_samples_fit_, build=False)
        if sp.issparse(D):
            return _sparse_graph_knn(D, k, exclude_self=False)
        return _dense_matrix_knn(D, k, False, self.n_jobs)


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


class AutoIndex(KNNIndex):
    """``"auto"`` / ``"approx"``: pick a concrete index when the data is seen.

    ``approx``: the first installed index of ``APPROX_ORDER`` that supports the
    metric for dense input, pynndescent for sparse input, and ``Exact`` when no
    approximate index supports the metric. ``auto``: ``Exact`` when
    N < ``AUTO_EXACT_MAX_N``, otherwise as ``approx``. The chosen index is
    ``index_``.
    """

    def __init__(self, method="auto", metric="euclidean", metric_params=None, n_jobs=1, random_state=None):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.method = method

    @property
    def name(self):
        return self.method

    @classmethod
    def supports(cls, metric, sparse=False):
        return any(c.supports(metric, sparse) for c in _index_classes().values())

    def choose(self, n_samples, sparse):
        """The name of the index used for ``n_samples`` (sparse) points."""
        if self.method == "auto" and n_samples < AUTO_EXACT_MAX_N and Exact.supports(self.metric, sparse):
            return "exact"
        classes = _index_classes()
        order = ("pynndescent",) if sparse else APPROX_ORDER
        modules = {"pynndescent": "pynndescent", "annoy": "annoy", "hnsw": "hnswlib"}
        for name in order:
            cls = classes[name]
            if not _installed(modules[name]) or not cls.supports(self.metric, sparse):
                continue
            if self.metric_params and name in ("annoy", "hnsw"):
                continue
            return name
        if Exact.supports(self.metric, sparse):
            return "exact"
        raise ValueError(_unsupported_message(self.method, self.metric, sparse))

    def build(self, X, k):
        sparse = sp.issparse(X)
        n = X.shape[0]
        name = self.choose(n, sparse)
        logger.info("neighbors=%r: using the %r index for %d points", self.method, name, n)
        self.index_ = _index_classes()[name](self.metric, self.metric_params, self.n_jobs, self.random_state)
        result = self.index_.build(X, k)
        self.n_samples_fit_ = self.index_.n_samples_fit_
        return result

    def query(self, X_new, k):
        self._check_fitted()
        return self.index_.query(X_new, k)


def get_knn_index(neighbors, metric="euclidean", metric_params=None, n_jobs=1, random_state=None):
    """The index that the ``neighbors`` parameter names.

    ``neighbors`` is a ``KNNIndex`` instance (returned as is) or one of
    ``NEIGHBORS_METHODS``. With ``metric="precomputed"`` every method reads
    the neighbours off the given distances (``Precomputed``).
    """
    if isinstance(neighbors, KNNIndex):
        return neighbors
    if not isinstance(neighbors, str) or neighbors.lower() not in NEIGHBORS_METHODS:
        raise ValueError(
            f"The 'neighbors' parameter must be a KNNIndex or one of {list(NEIGHBORS_METHODS)}. "
            f"Got {neighbors!r} instead."
        )
    method = neighbors.lower()
    if isinstance(metric, str) and metric == "precomputed":
        return Precomputed(metric, metric_params, n_jobs, random_state)
    if not (callable(metric) or isinstance(metric, str)):
        raise ValueError(f"The 'metric' parameter must be a string or a callable. Got {metric!r} instead.")
    if method in ("auto", "approx"):
        index = AutoIndex(method, metric, metric_params, n_jobs, random_state)
        if not index.supports(metric, False) and not index.supports(metric, True):
            raise ValueError(_unsupported_message(method, metric, False))
        return index
    modules = {"annoy": ("annoy", False), "hnsw": ("hnswlib", False), "pynndescent": ("pynndescent", True)}
    if method in modules:
        module, runtime = modules[method]
        if not _installed(module):
            _require(module, method, runtime)
    cls = _index_classes()[method]
    if not cls.supports(metric, False) and not cls.supports(metric, True):
        raise ValueError(_unsupported_message(method, metric, False))
    return cls(metric, metric_params, n_jobs, random_state)
