"""Numba kernels of the nearest-neighbour indexes.

Each kernel takes contiguous arrays and writes into arrays the caller allocated. The distance
kernels and the graph search are serial over a range of rows and release the GIL: callers split
the rows over a thread pool (:func:`~turbotsne._config.in_row_ranges`), so results do not
depend on the thread count and no parallel region has to compile (~0.5-1 s each on the first
run); the passes that only move a row's entries (once per graph) run on one thread. Kernels compile
on first use and are cached on disk, except the ones :func:`brute_force_kernel` specialises
on a distance function (numba does not cache a kernel that calls a function it was handed).
"""
from __future__ import annotations

import functools

import numba
import numpy as np


@numba.njit(cache=True)
def drop_self_into(ind, dist, out_i, out_d, offset):
    """Copy row ``i`` of ``(ind, dist)`` into ``(out_i, out_d)`` without the entry whose index is
    ``i + offset`` (or, where there is none, without the last entry), keeping the first
    ``out_i.shape[1]`` of the others."""
    n, m = ind.shape
    k = out_i.shape[1]
    for i in range(n):
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


@numba.njit(cache=True)
def sort_rows_inplace(ind, dist):
    """Sort each row of ``(ind, dist)`` in place by (distance, index)."""
    # insertion sort per row: rows come nearly sorted from the indexes
    n, m = ind.shape
    for i in range(n):
        for j in range(1, m):
            d, x = dist[i, j], ind[i, j]
            t = j - 1
            while t >= 0 and (dist[i, t] > d or (dist[i, t] == d and ind[i, t] > x)):
                dist[i, t + 1] = dist[i, t]
                ind[i, t + 1] = ind[i, t]
                t -= 1
            dist[i, t + 1] = d
            ind[i, t + 1] = x


@numba.njit(nogil=True, cache=True)
def pair_sq_distances(Xq, Xr, cand, out, lo, hi):
    """``out[i, j] = |Xq[i] - Xr[cand[i, j]]|^2`` for the rows ``lo <= i < hi``."""
    m = cand.shape[1]
    d = Xq.shape[1]
    for i in range(lo, hi):
        for j in range(m):
            c = cand[i, j]
            s = 0.0
            for t in range(d):
                diff = Xq[i, t] - Xr[c, t]
                s += diff * diff
            out[i, j] = s


@numba.njit(nogil=True, cache=True)
def pair_l1_distances(Xq, Xr, cand, out, lo, hi):
    """``out[i, j] = sum |Xq[i] - Xr[cand[i, j]]|`` for the rows ``lo <= i < hi``."""
    m = cand.shape[1]
    d = Xq.shape[1]
    for i in range(lo, hi):
        for j in range(m):
            c = cand[i, j]
            s = 0.0
            for t in range(d):
                s += abs(Xq[i, t] - Xr[c, t])
            out[i, j] = s


@functools.lru_cache(maxsize=None)
def brute_force_kernel(dist):
    """The kernel ``block(Xq, Xr, out, args)`` that writes ``out[i, j] = dist(Xq[i], Xr[j], *args)``
    for a numba distance function ``dist`` (one compiled kernel per function, kept)."""

    @numba.njit(parallel=True)
    def block(Xq, Xr, out, args):
        for i in numba.prange(Xq.shape[0]):
            for j in range(Xr.shape[0]):
                out[i, j] = dist(Xq[i], Xr[j], *args)

    return block


@numba.njit(cache=True)
def _heap_push(keys, ids, size, key, item):
    """Add ``(key, item)`` to the min-heap ``keys[:size]`` (``ids`` alongside)."""
    p = size
    while p > 0:
        up = (p - 1) >> 1
        if keys[up] <= key:
            break
        keys[p] = keys[up]
        ids[p] = ids[up]
        p = up
    keys[p] = key
    ids[p] = item


@numba.njit(cache=True)
def _heap_drop_top(keys, ids, size):
    """Remove the top of the min-heap ``keys[:size]``; ``size - 1`` entries remain."""
    size -= 1
    key, item = keys[size], ids[size]
    p = 0
    while True:
        c = 2 * p + 1
        if c >= size:
            break
        if c + 1 < size and keys[c + 1] < keys[c]:
            c += 1
        if keys[c] >= key:
            break
        keys[p] = keys[c]
        ids[p] = ids[c]
        p = c
    keys[p] = key
    ids[p] = item


@numba.njit(nogil=True, cache=True, fastmath={"reassoc", "nsz"}, error_model="numpy")
def graph_search_rows(X, count, links, queries, ef, out_i, out_d, start, stop, visited, cand_d, cand_i, best_d,
                      best_i):
    """Beam search of breadth ``ef`` from each point ``q = queries[r]``, ``start <= r < stop``,
    of the graph whose point ``i`` links to ``links[i, :count[i]]``: row ``r`` of
    ``(out_i, out_d)`` gets the ``out_i.shape[1]`` nearest points found (the point itself
    first) and their squared euclidean distances, nearest first; -1 and inf fill a row that
    reached too few points. Work buffers from the caller (an allocation in a kernel compiles
    numba's ``np.empty`` on the first run): ``visited`` (n int32, zeros: query ``r`` marks the
    points it has seen with ``r + 1``, so one buffer serves one range of queries once), the
    candidates ``cand_d`` / ``cand_i`` (n entries: a min-heap on distance) and the ``ef``
    nearest found ``best_d`` / ``best_i`` (``ef + 1`` entries: a min-heap on -distance).

    hnswlib's search on its bottom layer: candidates are expanded nearest first while one is
    nearer than the ``ef``-th nearest found. Each query is searched on its own (its result
    depends on nothing else), so callers split the rows over threads at will: the kernel
    releases the GIL, and is serial because a parallel region costs more to compile (~1 s)
    than the few calls per fit gain from numba's threads. Float32 distances, summed in the
    order the compiler vectorises (``reassoc``): the same on every run of one build.
    """
    d = X.shape[1]
    m = out_i.shape[1]
    for r in range(start, stop):
        q = queries[r]
        mark = r + 1
        visited[q] = mark
        cand_d[0], cand_i[0], n_cand = 0.0, q, 1
        best_d[0], best_i[0], n_best = 0.0, q, 1
        while n_cand > 0:
            c = cand_i[0]
            if cand_d[0] > -best_d[0] and n_best == ef:
                break
            _heap_drop_top(cand_d, cand_i, n_cand)
            n_cand -= 1
            for t in range(count[c]):
                v = links[c, t]
                if visited[v] == mark:
                    continue
                visited[v] = mark
                s = np.float32(0.0)
                for j in range(d):
                    diff = X[q, j] - X[v, j]
                    s += diff * diff
                if n_best < ef or s < -best_d[0]:
                    _heap_push(cand_d, cand_i, n_cand, s, v)
                    n_cand += 1
                    _heap_push(best_d, best_i, n_best, -s, v)
                    n_best += 1
                    if n_best > ef:
                        _heap_drop_top(best_d, best_i, n_best)
                        n_best -= 1
        for j in range(n_best, m):
            out_i[r, j] = -1
            out_d[r, j] = np.inf
        while n_best > 0:  # the farthest first, into place from the back
            n_best -= 1
            if n_best < m:
                out_i[r, n_best] = best_i[0]
                out_d[r, n_best] = -best_d[0]
            _heap_drop_top(best_d, best_i, n_best + 1)
