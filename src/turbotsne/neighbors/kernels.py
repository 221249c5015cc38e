"""Numba kernels of the nearest-neighbour indexes.

Each kernel takes contiguous arrays and writes into arrays the caller allocated; the
distance kernels run in parallel over rows that one thread owns, so their result does not
depend on the thread count, and the passes that only move a row's entries (once per graph)
run serially: cheaper on one thread than a parallel region is to compile. Kernels compile
on first use and are cached on disk, except the ones :func:`brute_force_kernel` specialises
on a distance function (numba does not cache a kernel that calls a function it was handed).
"""
from __future__ import annotations

import functools

import numba


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


@numba.njit(parallel=True, cache=True)
def pair_sq_distances(Xq, Xr, cand, out):
    """``out[i, j] = |Xq[i] - Xr[cand[i, j]]|^2``."""
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
def pair_l1_distances(Xq, Xr, cand, out):
    """``out[i, j] = sum |Xq[i] - Xr[cand[i, j]]|``."""
    n, m = cand.shape
    d = Xq.shape[1]
    for i in numba.prange(n):
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
