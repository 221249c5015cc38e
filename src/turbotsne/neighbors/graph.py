"""The neighbours of a graph's own points, searched on the bottom layer of an HNSW graph.

:class:`Level0Graph` reads the bottom layer (each point's links) of a voyager index built
with the euclidean space, checks it against the data it was built from, and searches it
with :func:`~turbotsne.neighbors.kernels.graph_search_rows` (on ``n_jobs`` threads): a beam search of breadth ``ef``
that starts at the query point itself, so no descent through the upper layers is needed.
The result of each query depends only on the graph and the query, never on the thread
count or on which other points are searched with it. Points are renumbered in
breadth-first order of the graph and queries run in that order, so that the points one
search reads are close in memory and shared with the next search.

voyager's serialised index is hnswlib's layout after voyager's own header; where the bytes
found are not that layout (another voyager version, another storage type),
:meth:`Level0Graph.from_voyager` returns None and the caller searches with voyager.
"""
from __future__ import annotations

import io
import struct

import numpy as np

from .._config import effective_n_jobs, in_row_ranges
from .kernels import graph_search_rows

#: bytes at the start of voyager's serialised index searched for hnswlib's header
_HEADER_WITHIN = 1 << 16
#: hnswlib's header: six size_t fields (level-0 offset, capacity, count, bytes per point,
#: label offset, data offset), two 32-bit ints (top level, entry point), then maxM, maxM0, M,
#: mult (a double) and ef_construction
_HEADER = struct.Struct("<6QiI3QdQ")


class Level0Graph:
    """The bottom layer of an HNSW graph over the float32 rows ``X``: point ``i`` links to
    ``links[i, :count[i]]``. Kept renumbered in breadth-first order (``order[new] = old``), or
    with ``renumber=False`` as given (``order`` and ``rank`` None): no copy of ``X`` beside the
    caller's, for when memory comes first (the search is slower without the locality:
    ``bench/bench_graph_search.py``)."""

    def __init__(self, X, count, links, renumber=True):
        n = X.shape[0]
        self.n = n
        if not renumber:
            self.order = self.rank = None
            self.X = np.ascontiguousarray(X, dtype=np.float32)
            self.count = np.ascontiguousarray(count, dtype=np.int32)
            self.links = np.ascontiguousarray(links, dtype=np.int32)
            return
        rows = np.repeat(np.arange(n), count)
        cols = links[np.arange(links.shape[1]) < count[:, None]]
        self.order = _breadth_first_order(n, rows, cols)
        self.rank = np.empty(n, dtype=np.int64)
        self.rank[self.order] = np.arange(n)
        self.X = np.ascontiguousarray(X[self.order], dtype=np.float32)
        self.count = np.ascontiguousarray(count[self.order], dtype=np.int32)
        self.links = np.ascontiguousarray(self.rank[links[self.order]], dtype=np.int32)

    @classmethod
    def from_voyager(cls, index, Xt, M, unit=False, renumber=True):
        """The bottom layer of the voyager ``index`` built (float32 storage) from the rows of
        ``Xt`` in order, with ``M`` links per point on the upper layers; None when the
        serialised index is not laid out as expected or does not hold ``Xt``. ``unit``: the
        cosine space, which holds (and searches) the rows scaled to unit length; the graph
        then keeps those, and squared euclidean distances between them order the points as
        cosine distances do. ``renumber``: as for the constructor."""
        n, dim = Xt.shape
        m0 = 2 * M  # hnswlib's bottom layer holds twice as many links
        link_bytes = 4 + 4 * m0
        size = link_bytes + 4 * dim + 8
        buffer = io.BytesIO()
        index.save(buffer)
        raw = buffer.getbuffer()
        key = struct.pack("<4Q", n, size, link_bytes + 4 * dim, link_bytes)
        at = bytes(raw[:_HEADER_WITHIN]).find(key) - 16
        if at < 0 or at + _HEADER.size + n * size > len(raw):
            return None
        head = _HEADER.unpack_from(raw, at)
        if head[0] != 0 or head[8] != M or head[9] != m0:
            return None
        block = np.frombuffer(raw, dtype=np.uint8, count=n * size, offset=at + _HEADER.size).reshape(n, size)
        header = np.ascontiguousarray(block[:, :4]).view(np.uint16)  # (count, flags): flags mark deletions
        count = header[:, 0].astype(np.int32)
        links = np.ascontiguousarray(block[:, 4:link_bytes]).view(np.uint32)
        data = np.ascontiguousarray(block[:, link_bytes:link_bytes + 4 * dim]).view(np.float32)
        labels = np.ascontiguousarray(block[:, link_bytes + 4 * dim:]).view(np.uint64)[:, 0]
        used = np.arange(m0) < count[:, None]
        if (np.any(header[:, 1] != 0) or np.any(count > m0) or not np.array_equal(labels, np.arange(n))
                or np.any(links[used] >= n)):
            return None
        if unit:
            with np.errstate(divide="ignore", invalid="ignore"):
                expected = Xt / np.linalg.norm(Xt, axis=1, keepdims=True)
            if not np.allclose(data, expected, rtol=0.0, atol=1e-6):  # also false for a zero row
                return None
        elif not np.array_equal(data, Xt):
            return None
        links[~used] = 0
        del buffer, raw, block
        return cls(data if unit else Xt, count, links, renumber)

    def search(self, nodes, m, ef, n_jobs=1):
        """The ``m`` nearest points (their indices and squared euclidean distances, float32,
        nearest first, the point itself among them) of each point in ``nodes``, found by a
        beam search of breadth ``ef >= m``. A row whose point reaches fewer than ``m`` points
        through the links ends in -1 indices (infinite distances)."""
        nodes = np.asarray(nodes, dtype=np.int64)
        ranks = nodes if self.rank is None else self.rank[nodes]
        by_rank = np.argsort(ranks, kind="stable")
        queries = np.ascontiguousarray(ranks[by_rank], dtype=np.int32)
        found_i = np.empty((queries.shape[0], m), dtype=np.int32)
        found_d = np.empty((queries.shape[0], m), dtype=np.float32)
        threads = effective_n_jobs(n_jobs)
        n = self.n
        visited = np.zeros((threads, n), dtype=np.int32)
        cand_d, cand_i = np.empty((threads, n), dtype=np.float32), np.empty((threads, n), dtype=np.int32)
        best_d, best_i = np.empty((threads, ef + 1), dtype=np.float32), np.empty((threads, ef + 1), dtype=np.int32)
        in_row_ranges(lambda t, lo, hi: graph_search_rows(self.X, self.count, self.links, queries, ef, found_i,
                                                          found_d, lo, hi, visited[t], cand_d[t], cand_i[t],
                                                          best_d[t], best_i[t]),
                      queries.shape[0], threads)
        ind = np.empty((queries.shape[0], m), dtype=np.int64)
        dist = np.empty((queries.shape[0], m), dtype=np.float32)
        ind[by_rank] = found_i if self.order is None else np.where(found_i < 0, -1, self.order[np.maximum(found_i, 0)])
        dist[by_rank] = found_d
        return ind, dist


def _breadth_first_order(n, rows, cols):
    """The points in breadth-first order of the links ``rows -> cols`` from point 0, then any
    points not reached from it, in increasing order."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import breadth_first_order

    graph = sp.csr_matrix((np.ones(rows.shape[0], dtype=np.int8), (rows, cols)), shape=(n, n))
    reached = breadth_first_order(graph, 0, directed=True, return_predecessors=False).astype(np.int64)
    if reached.shape[0] == n:
        return reached
    seen = np.zeros(n, dtype=bool)
    seen[reached] = True
    return np.concatenate([reached, np.flatnonzero(~seen)])
