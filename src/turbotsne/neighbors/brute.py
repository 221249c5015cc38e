"""Blocked brute-force neighbour search: the machinery of the exact indexes and of the
distance refinement of the approximate ones.

Query rows go in blocks whose distance matrix holds at most :data:`BLOCK_BYTES`, spread
over ``n_jobs`` threads (one BLAS thread each); each block keeps its candidates by
``np.argpartition``. For euclidean / sqeuclidean / cosine / correlation the block is
``|x|^2 + |y|^2 - 2 X Y^T`` (or ``1 - X Y^T`` on unit rows) and the candidates' distances
are then recomputed from the coordinates in float64 (:func:`recompute`: no cancellation
error). Results are sorted by (distance, index) and do not depend on the thread count.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from .._config import effective_n_jobs, in_row_ranges, thread_limit
from .base import sort_rows
from .kernels import brute_force_kernel, pair_l1_distances, pair_sq_distances

#: memory budget of one brute-force distance block (bytes).
BLOCK_BYTES = 64 * 2**20


def prepare_blas(X, metric, shift=None):
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


def recompute(metric, Xq, Xr, cand, zq=None, zr=None, n_jobs=1):
    """Exact float64 distances from Xq[i] to Xr[cand[i, j]] (Xq/Xr as :func:`prepare_blas`
    returns them for cosine and correlation, with their zero-row masks ``zq``, ``zr``)."""
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
        Xq = np.ascontiguousarray(Xq, dtype=np.float64)
        Xr = np.ascontiguousarray(Xr, dtype=np.float64)
        kernel = pair_l1_distances if metric == "manhattan" else pair_sq_distances
        cand = np.ascontiguousarray(cand)
        in_row_ranges(lambda t, lo, hi: kernel(Xq, Xr, cand, out, lo, hi), n, effective_n_jobs(n_jobs))
    if metric == "euclidean":
        np.sqrt(out, out=out)
    elif metric in ("cosine", "correlation"):
        out *= 0.5  # 1 - cos = |a - b|^2 / 2 for unit vectors
        out[zq] = 1.0
        out[zr[cand]] = 1.0
        np.clip(out, 0.0, 2.0, out=out)
    return out


def blas_knn(query, ref, k, metric, n_jobs, exclude_self):
    """Exact kNN for the BLAS metrics; ``query``/``ref`` as :func:`prepare_blas` returns them."""
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
    dist = recompute(metric, Pq, Pr, cand, zq, zr, n_jobs)
    ind, dist = sort_rows(cand, dist)
    return ind[:, :k], dist[:, :k]


def dense_matrix_knn(D, k, exclude_self, n_jobs):
    """kNN from a dense (n_q, n_ref) distance matrix."""
    n_q, n_ref = D.shape
    n_avail = n_ref - 1 if exclude_self else n_ref
    m = min(n_avail, k)

    def block_fn(start, stop):
        return np.array(D[start:stop], dtype=np.float64)  # a copy: _select writes the diagonal

    cand = _blocked_search(n_q, n_ref, m, block_fn, n_jobs, exclude_self)
    dist = np.take_along_axis(D, cand, axis=1).astype(np.float64)
    return sort_rows(cand, dist)


def numba_knn(Xq, Xr, k, dist, args, n_jobs, exclude_self):
    """Exact kNN with a numba distance function ``dist(x, y, *args)`` (pynndescent metrics,
    jitted callables)."""
    kernel = brute_force_kernel(dist)
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
    return sort_rows(cand, dist_out)
