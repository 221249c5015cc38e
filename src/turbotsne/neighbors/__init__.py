"""Nearest-neighbour indexes: ``KNNIndex.build(X, k)`` and ``.query(X_new, k)``.

The ``neighbors`` parameter names an index (:data:`NEIGHBORS_METHODS`) or passes a
:class:`KNNIndex` instance; :func:`get_knn_index` turns it into an index. Indexes:
:class:`Exact` (brute force), :class:`Precomputed` (``metric="precomputed"``, whatever
``neighbors`` says), the approximate :class:`Voyager` (a dependency) and :class:`PyNNDescent`,
and the optional :class:`HNSW` and :class:`Annoy` (extra ``ann``). ``"approx"`` picks, when the
data is seen, the first installed index of :data:`APPROX_ORDER` that supports the metric:
voyager, whose neighbours are the same for every ``n_jobs`` and run, whether or not the ``ann``
extra is installed; pynndescent for sparse input and the other metrics it has;
:class:`Exact` for the rest. ``"auto"`` is :class:`Exact` below
:data:`AUTO_EXACT_MAX_N` points and ``"approx"`` above. The output contract is
:class:`~turbotsne.neighbors.base.KNNIndex`'s; how the order and the threshold were measured:
docs/design/neighbors.md and BENCHMARKS.md.
"""
from __future__ import annotations

import logging

import scipy.sparse as sp

from .base import COMPACT_KNN_FROM_ENTRIES, INDEXES, KNNIndex, knn_dtypes, register_index, unsupported_message
from .brute import BLOCK_BYTES
# exact before approximate: the order of registration is the order in which error messages suggest indexes
from .exact import Exact, Precomputed
from .approximate import HNSW, Annoy, ApproximateIndex, PyNNDescent, Voyager

logger = logging.getLogger(__name__)

__all__ = [
    "KNNIndex", "Exact", "Voyager", "PyNNDescent", "Annoy", "HNSW", "Precomputed", "AutoIndex", "ApproximateIndex",
    "get_knn_index", "register_index", "knn_dtypes", "NEIGHBORS_METHODS", "APPROX_ORDER", "AUTO_EXACT_MAX_N",
    "COMPACT_KNN_FROM_ENTRIES", "BLOCK_BYTES",
]

#: the values of the ``neighbors`` parameter: "auto", "approx" and the registered indexes.
NEIGHBORS_METHODS = ("auto", "approx", "exact", "voyager", "annoy", "pynndescent", "hnsw")

#: the approximate indexes "approx" considers for dense input, in order: voyager (a dependency:
#: one-thread build, neighbours the same for every n_jobs and run), then hnswlib and annoy (the
#: ``ann`` extra: faster builds on n_jobs threads, but graphs that depend on the thread schedule;
#: reached only for metrics voyager lacks), pynndescent for what none of them supports
#: (docs/design/neighbors.md).
APPROX_ORDER = ("voyager", "hnsw", "annoy", "pynndescent")

#: the largest N for which "auto" picks exact neighbours.
AUTO_EXACT_MAX_N = 1000


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
        return any(c.supports(metric, sparse) for c in INDEXES.values())

    def choose(self, n_samples, sparse):
        """The name of the index used for ``n_samples`` (sparse) points."""
        if self.method == "auto" and n_samples < AUTO_EXACT_MAX_N and Exact.supports(self.metric, sparse):
            return "exact"
        order = ("pynndescent",) if sparse else APPROX_ORDER
        for name in order:
            cls = INDEXES[name]
            if not cls.available() or not cls.supports(self.metric, sparse):
                continue
            if self.metric_params and not cls.accepts_metric_params:
                continue
            return name
        if Exact.supports(self.metric, sparse):
            return "exact"
        raise ValueError(unsupported_message(self.method, self.metric, sparse))

    def build(self, X, k):
        sparse = sp.issparse(X)
        n = X.shape[0]
        name = self.choose(n, sparse)
        logger.info("neighbors=%r: using the %r index for %d points", self.method, name, n)
        self.index_ = INDEXES[name](self.metric, self.metric_params, self.n_jobs, self.random_state)
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
            raise ValueError(unsupported_message(method, metric, False))
        return index
    cls = INDEXES[method]
    if not cls.available():
        cls.require()  # ImportError with the install hint
    if not cls.supports(metric, False) and not cls.supports(metric, True):
        raise ValueError(unsupported_message(method, metric, False))
    return cls(metric, metric_params, n_jobs, random_state)
