"""Approximate neighbours from other libraries: :class:`Voyager` (voyager) and
:class:`PyNNDescent` (pynndescent), both dependencies, and :class:`HNSW` (hnswlib) and
:class:`Annoy` (annoy) from the optional extra ``ann``. :class:`Voyager`'s neighbours, by
default, depend only on the data and ``random_state`` (not on ``n_jobs`` or the run).

Each library is imported when an index is built, never at import. :class:`ApproximateIndex`
holds what they share: the library's raw neighbours are searched in chunks of
:attr:`ApproximateIndex.CHUNK` rows, each point's own index is removed from its list, and
for euclidean / sqeuclidean / cosine / correlation / manhattan (without ``metric_params``)
the distances of the neighbours found are recomputed in float64 from the coordinates. The
outputs follow :class:`~turbotsne.neighbors.base.KNNIndex`, compact (int32 / float32) from
:data:`~turbotsne.neighbors.base.COMPACT_KNN_FROM_ENTRIES` entries on. A new library is a
subclass that implements ``build`` and ``query`` with :meth:`ApproximateIndex._chunked`,
decorated with :func:`~turbotsne.neighbors.base.register_index`.
"""
from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.sparse as sp

from .._config import effective_n_jobs, thread_limit
from .base import (ALIASES, ANN_HINT, KNNIndex, canonical, check_data, check_k, drop_self, is_numba_function,
                   keyword_names, knn_dtypes, knn_output, pynndescent_metrics, register_index, seed)
from .brute import prepare_blas, recompute
from .exact import Exact
from .graph import Level0Graph
from .kernels import sort_rows_inplace


class ApproximateIndex(KNNIndex):
    """Shared pieces of the approximate indexes: metric transforms, distance refinement,
    and the chunked search that bounds the memory of both."""

    #: metrics whose distances are recomputed in float64 from the coordinates
    _REFINE = frozenset({"euclidean", "sqeuclidean", "cosine", "correlation", "manhattan"})

    #: query rows searched, refined and sorted at a time: an index's own (n, k + 1) output
    #: (hnswlib: uint64 + float32) and the float64 refinement then take ~25 MB (k = 90) at
    #: any N instead of ~3 KB per point next to the (n, k) result
    CHUNK = 1 << 13

    def _refines(self, sparse):
        canon = canonical(self.metric)
        return (not callable(self.metric) and canon in self._REFINE and not self.metric_params
                and not (sparse and canon == "correlation"))

    def _chunked(self, search, Xq, k, exclude_self):
        """``(indices, distances)`` of every row of ``Xq``: ``search(start, stop)`` returns the
        raw neighbours of rows ``start:stop`` (``k + 1`` of them with ``exclude_self``, the
        point itself among them), then each chunk loses self and is refined and sorted
        straight into one ``(n, k)`` output (int64 / float64, or int32 / float32 from
        ``COMPACT_KNN_FROM_ENTRIES`` entries on: :func:`knn_dtypes`)."""
        canon = canonical(self.metric)
        sparse = sp.issparse(Xq) or sp.issparse(self._ref)
        refine = self._refines(sparse)
        Xr = self._ref
        zr = None
        if refine:
            if not sparse:
                Xq, Xr = np.asarray(Xq, dtype=np.float64), np.asarray(Xr, dtype=np.float64)
            if canon in ("cosine", "correlation"):  # unit rows, prepared once for all chunks
                Xr, _, zr, _ = prepare_blas(Xr, canon)
        n = Xq.shape[0]
        index_type, distance_type = knn_dtypes(n, Xr.shape[0], k)
        room = distance_type == np.float32  # compact outputs leave room for P (knn_dtypes)
        out_i = knn_output(n, k, index_type, room)
        out_d = knn_output(n, k, distance_type, room)
        for s in range(0, n, self.CHUNK):
            e = min(n, s + self.CHUNK)
            ind, dist = search(s, e)
            if exclude_self:
                ind, dist = drop_self(ind, dist, k, offset=s)
            ind = np.ascontiguousarray(ind, dtype=np.int64)
            ind, dist = self._fill_missing(ind, dist, Xq, s, exclude_self)
            if refine:
                if canon in ("cosine", "correlation"):
                    Pq, _, zq, _ = prepare_blas(Xq[s:e], canon)
                    dist = recompute(canon, Pq, Xr, ind, zq, zr, self.n_jobs)
                else:
                    dist = recompute(canon, Xq[s:e], Xr, ind, n_jobs=self.n_jobs)
            out_i[s:e] = ind
            out_d[s:e] = dist
            sort_rows_inplace(out_i[s:e], out_d[s:e])
        return out_i, out_d

    def _fill_missing(self, ind, dist, Xq, start, exclude_self):
        """Rows of a chunk where the library found fewer neighbours than asked (pynndescent
        marks them -1) get their exact neighbours instead, so that no invalid index reaches P."""
        n_ref = self._ref.shape[0]
        rows = np.flatnonzero(((ind < 0) | (ind >= n_ref)).any(axis=1))
        if rows.size == 0:
            return ind, dist
        k = ind.shape[1]
        exact = Exact(self.metric, self.metric_params, self.n_jobs)
        if not exact.supports(self.metric, sp.issparse(self._ref)):
            raise ValueError(f"{self.name} found fewer than {k} neighbours for {rows.size} point(s) and the "
                             f"metric {self.metric!r} has no exact fallback; use a larger index (e.g. more "
                             "trees / candidates) or neighbors='exact'.")
        found_i, found_d = exact.fit(self._ref).query(Xq[start + rows], min(n_ref, k + 1))
        ind, dist = ind.copy(), np.array(dist, dtype=np.float64)
        for r, row_i, row_d in zip(rows, found_i, found_d):
            keep = row_i != start + r if exclude_self else np.ones(row_i.shape[0], dtype=bool)
            ind[r], dist[r] = row_i[keep][:k], row_d[keep][:k]
        return ind, dist


class DenseIndex(ApproximateIndex):
    """An index over dense float32 coordinates with the metrics in ``_METRICS`` (name -> the
    library's own name); correlation is cosine on row-centred data."""

    _METRICS = {}

    @classmethod
    def supports(cls, metric, sparse=False):
        return not sparse and not callable(metric) and canonical(metric) in cls._METRICS

    @classmethod
    def valid_metrics(cls, sparse=False):
        if sparse:
            return frozenset()
        return frozenset(cls._METRICS) | {m for m, c in ALIASES.items() if c in cls._METRICS}

    def _transform(self, X):
        X = np.asarray(X, dtype=np.float32)
        if canonical(self.metric) == "correlation":
            X = X - X.mean(axis=1, keepdims=True)
        return X

    def _start_build(self, X, k):
        """The checks every build starts with; returns ``(library module, X, k, X as the library takes it)``."""
        library = self.require()
        self._check_metric(sp.issparse(X))
        X = check_data(X, accept_sparse=False)
        if self.metric_params:
            raise ValueError(f"The {self.name!r} index takes no metric_params; use neighbors='exact' or "
                             "'pynndescent'.")
        self._check_metric(False)
        k = check_k(k, X.shape[0], build=True)
        self.n_samples_fit_, self.n_features_in_ = X.shape
        return library, X, k, self._transform(X)


@register_index
class PyNNDescent(ApproximateIndex):
    """pynndescent's NN-descent graph (every pynndescent metric, sparse input).

    ``epsilon`` is the search slack of ``query`` (pynndescent's default is 0.1;
    0.2 here, see docs/design/neighbors.md). Other keyword arguments (``leaf_size``,
    ``pruning_degree_multiplier``, ...) go to ``pynndescent.NNDescent`` as they are.
    """

    #: the ``pynndescent.NNDescent`` arguments the index sets itself
    _OWN = frozenset({"data", "metric", "metric_kwds", "n_neighbors", "random_state", "n_jobs"})

    name = "pynndescent"
    requires = "pynndescent"
    install_hint = "pip install pynndescent"
    _sparse_ok = True

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 n_trees=None, n_iters=None, max_candidates=None, epsilon=0.2, **nndescent_kwargs):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.epsilon = epsilon
        self.n_trees = n_trees
        self.n_iters = n_iters
        self.max_candidates = max_candidates
        self.nndescent_kwargs = nndescent_kwargs

    @classmethod
    def extra_params(cls):
        from pynndescent import NNDescent

        library = keyword_names(NNDescent.__init__, cls._OWN | {"self"})
        return None if library is None else frozenset({"n_trees", "n_iters", "max_candidates", "epsilon"}) | library

    def _random_state(self):
        """What ``pynndescent.NNDescent`` gets as ``random_state``: a RandomState seeded from
        ``random_state``."""
        return np.random.RandomState(seed(self.random_state))

    @classmethod
    def valid_metrics(cls, sparse=False):
        return pynndescent_metrics(sparse) | (set(ALIASES) - {"cityblock"} if not sparse else set())

    @classmethod
    def supports(cls, metric, sparse=False):
        if callable(metric):
            return is_numba_function(metric) and not sparse
        return metric in cls.valid_metrics(sparse) or canonical(metric) in pynndescent_metrics(sparse)

    def _pynn_metric(self, sparse):
        if callable(self.metric) or self.metric in pynndescent_metrics(sparse):
            return self.metric
        return canonical(self.metric)

    def build(self, X, k):
        self.require()
        from pynndescent import NNDescent

        sparse = sp.issparse(X)
        self._check_metric(sparse)
        X = check_data(X, accept_sparse=True)
        k = check_k(k, X.shape[0], build=True)
        self.n_samples_fit_, self.n_features_in_ = X.shape
        n = X.shape[0]
        n_jobs = effective_n_jobs(self.n_jobs)
        own = self._OWN & set(self.nndescent_kwargs)
        if own:
            raise TypeError(f"The 'pynndescent' nearest-neighbour index sets {sorted(own)} of pynndescent.NNDescent "
                            "itself (from the data, k, metric, metric_params, n_jobs and random_state).")
        options = dict(low_memory=True, compressed=False, verbose=False,
                       n_trees=self.n_trees if self.n_trees is not None else min(64, 5 + int(round(n ** 0.5 / 20.0))),
                       n_iters=self.n_iters if self.n_iters is not None else max(5, int(round(np.log2(n)))),
                       max_candidates=self.max_candidates if self.max_candidates is not None else 60)
        options.update(self.nndescent_kwargs)
        with thread_limit(n_jobs):
            self._index = NNDescent(
                X.astype(np.float32), metric=self._pynn_metric(sparse), metric_kwds=self.metric_params,
                n_neighbors=min(n, k + 1), random_state=self._random_state(), n_jobs=n_jobs, **options)
            indices, distances = self._index.neighbor_graph
        self._ref = X
        return self._chunked(lambda s, e: (indices[s:e], distances[s:e]), X, k, exclude_self=True)

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = check_k(k, self.n_samples_fit_, build=False)
        def search(s, e):
            with thread_limit(self.n_jobs):
                return self._index.query(X_new[s:e].astype(np.float32), k=k, epsilon=self.epsilon)

        return self._chunked(search, X_new, k, exclude_self=False)


@register_index
class Annoy(DenseIndex):
    """Spotify's annoy random-projection forest (extra ``ann``).

    ``n_trees`` defaults to 50 (openTSNE's and FIt-SNE's choice) and
    ``search_k`` to annoy's default of ``n_trees * (k + 1)``.
    """

    name = "annoy"
    requires = "annoy"
    install_hint = ANN_HINT
    accepts_metric_params = False
    _METRICS = {"euclidean": "euclidean", "sqeuclidean": "euclidean", "manhattan": "manhattan",
                "cosine": "angular", "correlation": "angular"}

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 n_trees=50, search_k=-1):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.n_trees = n_trees
        self.search_k = search_k

    def build(self, X, k):
        annoy, X, k, Xt = self._start_build(X, k)
        self._index = annoy.AnnoyIndex(X.shape[1], self._METRICS[canonical(self.metric)])
        self._index.set_seed(seed(self.random_state))
        for i in range(Xt.shape[0]):
            self._index.add_item(i, Xt[i])
        n_jobs = effective_n_jobs(self.n_jobs)
        self._index.build(n_trees=self.n_trees, n_jobs=n_jobs)
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
        k = check_k(k, self.n_samples_fit_, build=False)
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
            annoy = self.require()
            self._index = annoy.AnnoyIndex(self.n_features_in_, self._METRICS[canonical(self.metric)])
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


@register_index
class HNSW(DenseIndex):
    """hnswlib's hierarchical navigable small-world graph (extra ``ann``).

    ``M`` and ``ef_construction`` are hnswlib's (defaults 12 and 64, below hnswlib's own
    16 and 100-200: faster graphs at a recall within 0.001, see docs/design/neighbors.md);
    the search breadth is ``ef`` (default ``k + EF_MARGIN``, at least 50).
    """

    #: default search breadth beyond k
    EF_MARGIN = 30

    name = "hnsw"
    requires = "hnswlib"
    install_hint = ANN_HINT
    accepts_metric_params = False
    _METRICS = {"euclidean": "l2", "sqeuclidean": "l2", "cosine": "cosine", "correlation": "cosine"}

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 M=12, ef_construction=64, ef=None):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef


    def _set_ef(self, k):
        self._index.set_ef(max(self.ef or 0, min(max(k + self.EF_MARGIN, 50), self._index.get_current_count())))

    def build(self, X, k):
        hnswlib, X, k, Xt = self._start_build(X, k)
        n_jobs = effective_n_jobs(self.n_jobs)
        self._index = hnswlib.Index(space=self._METRICS[canonical(self.metric)], dim=X.shape[1])
        self._index.init_index(max_elements=X.shape[0], M=self.M, ef_construction=self.ef_construction,
                               random_seed=seed(self.random_state))
        self._index.add_items(Xt, num_threads=n_jobs)
        self._set_ef(k + 1)
        self._ref = X
        return self._chunked(lambda s, e: self._index.knn_query(Xt[s:e], k=k + 1, num_threads=n_jobs),
                             X, k, exclude_self=True)

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = check_k(k, self.n_samples_fit_, build=False)
        self._set_ef(k)
        n_jobs = effective_n_jobs(self.n_jobs)
        return self._chunked(lambda s, e: self._index.knn_query(self._transform(X_new[s:e]), k=k,
                                                                num_threads=n_jobs),
                             X_new, k, exclude_self=False)


def duplicate_groups(Xt):
    """Groups of identical rows of the float32 array ``Xt``: None when all rows differ, else
    ``(first, group, ptr, members)``: the first row of each group (groups numbered in order of
    first occurrence), the group of each row, and the rows of group g, increasing, at
    ``members[ptr[g]:ptr[g + 1]]``."""
    n = Xt.shape[0]
    words = np.ascontiguousarray(Xt).view(np.uint32)
    h = np.zeros(n, dtype=np.uint64)  # a 64-bit FNV-style hash of each row's bytes: a cheap test first
    for j in range(words.shape[1]):
        h *= np.uint64(0x100000001B3)
        h ^= words[:, j]
    h.sort()
    if n < 2 or not np.any(h[1:] == h[:-1]):
        return None
    rows = words.view(np.dtype((np.void, 4 * words.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    if first.size == n:  # only a hash collision
        return None
    rank = np.empty(first.size, dtype=np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(first.size)
    group = rank[inverse.ravel()]
    members = np.argsort(group, kind="stable")
    ptr = np.concatenate(([0], np.cumsum(np.bincount(group, minlength=first.size))))
    return np.sort(first), group, ptr, members


def expand_groups(ind, dist, ptr, members, m):
    """The first ``m`` rows of the groups that each row of ``ind`` lists, in that order (the rows
    of a group in increasing order), with their group's distance."""
    ind = np.asarray(ind, dtype=np.int64)
    r, kk = ind.shape
    sizes = np.diff(ptr)[ind]
    end = np.minimum(np.cumsum(sizes, axis=1), m)  # group j fills the positions end[j - 1] .. end[j] - 1
    base = np.arange(r)[:, None]
    j = np.searchsorted((end + base * (m + 1)).ravel(), (np.arange(m) + base * (m + 1)).ravel(), side="right")
    j = j.reshape(r, m) - base * kk
    before = np.where(j > 0, np.take_along_axis(end, np.maximum(j - 1, 0), axis=1), 0)
    rows = members[ptr[np.take_along_axis(ind, j, axis=1)] + np.arange(m) - before]
    return rows, np.take_along_axis(np.asarray(dist), j, axis=1)


@register_index
class Voyager(DenseIndex):
    """Spotify's voyager hierarchical navigable small-world graph (a dependency: binary wheels
    for Linux, macOS and Windows).

    ``M`` 12 as in :class:`HNSW`, ``ef_construction`` 40 (the one-thread build's time at a recall
    still above openTSNE's Annoy: docs/design/neighbors.md); the search breadth is ``ef``
    (default ``k + EF_MARGIN``, at least 50). With ``deterministic=True`` (the default) the
    graph is built on one thread, so that its links, and hence the neighbours found, depend
    only on the data and ``random_state``, not on ``n_jobs`` or thread scheduling; the search
    runs on ``n_jobs`` threads either way. For the neighbours of the graph's own points (``build``),
    turbotsne searches the graph's bottom layer itself, from each point
    (:class:`~turbotsne.neighbors.graph.Level0Graph`: vectorised distances, no descent from the top);
    ``query`` uses voyager's search. ``deterministic=False`` builds on ``n_jobs`` threads
    (faster with several cores, not reproducible; the threads number the graph's points, so
    voyager searches it). Identical rows enter the graph once (a graph
    whose links all join copies of one point cannot be searched from outside): a search then
    finds groups of identical rows, each standing for all its rows.
    """

    #: default search breadth beyond k
    EF_MARGIN = 30

    name = "voyager"
    requires = "voyager"
    install_hint = "pip install voyager"
    accepts_metric_params = False
    _METRICS = {"euclidean": "Euclidean", "sqeuclidean": "Euclidean", "cosine": "Cosine",
                "correlation": "Cosine"}

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 M=12, ef_construction=40, ef=None, deterministic=True):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.M = M
        self.ef_construction = ef_construction
        self.ef = ef
        self.deterministic = deterministic

    def _make_graph(self, Xt, n_jobs):
        voyager = self.require()
        Xt = np.ascontiguousarray(Xt, dtype=np.float32)  # voyager reads rows as if C-ordered
        index = voyager.Index(getattr(voyager.Space, self._METRICS[canonical(self.metric)]), Xt.shape[1],
                              M=self.M, ef_construction=self.ef_construction,
                              random_seed=seed(self.random_state), max_elements=Xt.shape[0])
        index.add_items(Xt, num_threads=1 if self.deterministic else n_jobs)
        return index

    def _breadth(self, k, n_graph):
        """The search breadth for ``k`` neighbours in a graph of ``n_graph`` points."""
        return max(self.ef or 0, min(max(k + self.EF_MARGIN, 50), n_graph))

    def _search(self, Xq, k, n_jobs):
        """The ``k`` nearest reference rows of each row of ``Xq`` (raw: voyager's ids and distances)."""
        Xq = np.ascontiguousarray(Xq, dtype=np.float32)
        n_graph = self._index.num_elements
        ef = self._breadth(k, n_graph)
        if self._groups is None:
            return self._index.query(Xq, k, num_threads=n_jobs, query_ef=ef)
        ptr, members = self._groups
        ind, dist = self._index.query(Xq, min(k, n_graph), num_threads=n_jobs, query_ef=ef)
        return expand_groups(ind, dist, ptr, members, k)

    def _search_own(self, graph, Xg, nodes, k, n_jobs):
        """:meth:`_search` for rows that are the graph's own points ``nodes`` (rows of ``Xg``,
        the graph's data): a search of the bottom layer from each point itself
        (:class:`~turbotsne.neighbors.graph.Level0Graph`); a point that reaches too few others
        through the links (rare) is searched by voyager instead."""
        n_graph = Xg.shape[0]
        m, ef = min(k, n_graph), self._breadth(k, n_graph)
        ind, dist = graph.search(nodes, m, ef, n_jobs)
        short = np.flatnonzero(ind[:, -1] < 0)
        if short.size:
            ind[short], dist[short] = self._index.query(Xg[nodes[short]], m, num_threads=n_jobs, query_ef=ef)
        if self._groups is None:
            return ind, dist
        ptr, members = self._groups
        return expand_groups(ind, dist, ptr, members, k)

    def build(self, X, k):
        _, X, k, Xt = self._start_build(X, k)
        n_jobs = effective_n_jobs(self.n_jobs)
        groups = duplicate_groups(Xt)
        if groups is None:
            self._groups = None
            Xg, node = Xt, np.arange(Xt.shape[0])
        else:
            first, node, ptr, members = groups
            self._groups = (ptr, members)
            Xg = np.ascontiguousarray(Xt[first])
        self._index = self._make_graph(Xg, n_jobs)
        self._ref = X
        unit = self._METRICS[canonical(self.metric)] == "Cosine"
        compact = knn_dtypes(X.shape[0], X.shape[0], k)[1] == np.float32  # memory first: no renumbered copy
        graph = Level0Graph.from_voyager(self._index, Xg, self.M, unit=unit, renumber=not compact)
        if graph is None:  # a layout this version does not read, or a zero row for cosine: voyager searches
            return self._chunked(lambda s, e: self._search(Xt[s:e], k + 1, n_jobs), X, k, exclude_self=True)
        return self._chunked(lambda s, e: self._search_own(graph, Xg, node[s:e], k + 1, n_jobs), X, k,
                             exclude_self=True)

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = check_k(k, self.n_samples_fit_, build=False)
        n_jobs = effective_n_jobs(self.n_jobs)
        return self._chunked(lambda s, e: self._search(self._transform(X_new[s:e]), k, n_jobs),
                             X_new, k, exclude_self=False)

    # voyager indexes live in C++ memory and do not pickle: serialise through an in-memory file
    def __getstate__(self):
        state = dict(self.__dict__)
        index = state.pop("_index", None)
        if index is not None:
            buffer = io.BytesIO()
            index.save(buffer)
            state["_index_bytes"] = buffer.getvalue()
        return state

    def __setstate__(self, state):
        data = state.pop("_index_bytes", None)
        self.__dict__.update(state)
        if data is not None:
            self._index = self.require().Index.load(io.BytesIO(data))
