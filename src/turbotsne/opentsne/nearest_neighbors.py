"""openTSNE's ``nearest_neighbors`` module: turbotsne's indexes with openTSNE's calling convention.

openTSNE binds the data and ``k`` to an index when it is made and builds it with
no arguments: ``Annoy(data, k, metric=...).build() -> (indices, distances)``;
``.index`` is the underlying library index (None until built). Each class here
is turbotsne's index of that kind (``Sklearn`` is :class:`~turbotsne.neighbors.Exact`,
``NNDescent`` :class:`~turbotsne.neighbors.PyNNDescent`) taking that convention;
``build(X, k)`` and ``query(X_new, k)`` work as on turbotsne's indexes, and the
affinity classes accept these objects as ``knn_index`` (with ``data=None``).
"""
import numpy as np
import scipy.sparse as sp

from ..neighbors import HNSW as _HNSW
from ..neighbors import Annoy as _Annoy
from ..neighbors import Exact as _Exact
from ..neighbors import KNNIndex
from ..neighbors import Precomputed as _Precomputed
from ..neighbors import PyNNDescent as _PyNNDescent
from ..neighbors.base import check_index_kwargs

__all__ = ["KNNIndex", "Sklearn", "Annoy", "NNDescent", "HNSW", "PrecomputedDistanceMatrix",
           "PrecomputedNeighbors"]


class _ValidMetrics:
    """``Index.VALID_METRICS``: the named metrics the index supports on dense input."""

    def __get__(self, obj, cls):
        return sorted(cls.valid_metrics(False))


class _BoundData:
    """openTSNE's convention: ``Index(data, k, metric=..., ...)`` then ``build()``."""

    VALID_METRICS = _ValidMetrics()

    def __init__(self, data, k, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 verbose=False, knn_kwargs=None):
        index_class = type(self).__mro__[type(self).__mro__.index(_BoundData) + 1]
        super().__init__(metric, metric_params, n_jobs, random_state, **check_index_kwargs(index_class, knn_kwargs))
        self.check_metric(metric)
        self.data = data
        self.k = k
        self.verbose = verbose
        self.knn_kwargs = knn_kwargs

    def check_metric(self, metric):
        """Raise ``ValueError`` when this index cannot use ``metric``; return it otherwise."""
        if not self.supports(metric, sp.issparse(getattr(self, "data", None))):
            from ..neighbors.base import unsupported_message

            raise ValueError(unsupported_message(self.name, metric, False))
        return metric

    def build(self, X=None, k=None):
        """The ``k`` nearest neighbours of each point of the bound data (or of ``X``)."""
        if X is None:
            X = self.data
        if k is None:
            k = self.k
        return super().build(X, k)

    @property
    def index(self):
        """The underlying index (None until built)."""
        return getattr(self, "_index", None) if getattr(self, "n_samples_fit_", None) is not None else None


class Sklearn(_BoundData, _Exact):
    """Exact neighbours (turbotsne's :class:`~turbotsne.neighbors.Exact`).

    Cosine distances are reported as ``scipy.spatial.distance.cdist`` computes them (as
    openTSNE's class does), bit for bit; turbotsne's index finds the same neighbours with
    distances within a few units in the last place of those.
    """

    @property
    def index(self):
        return getattr(self, "_ref", None) if getattr(self, "n_samples_fit_", None) is not None else None

    def build(self, X=None, k=None):
        indices, distances = super().build(X, k)
        return indices, self._scipy_cosine(self.data if X is None else X, indices, distances)

    def query(self, X_new, k):
        indices, distances = super().query(X_new, k)
        return indices, self._scipy_cosine(X_new, indices, distances)

    def _scipy_cosine(self, Xq, indices, distances):
        if self.metric != "cosine" or sp.issparse(Xq) or sp.issparse(self._reference) or not indices.size:
            return distances
        from scipy.spatial.distance import cdist

        Xq, Xr = np.asarray(Xq, dtype=np.float64), np.asarray(self._reference, dtype=np.float64)
        return np.vstack([cdist(Xq[i:i + 1], Xr[row], metric="cosine") for i, row in enumerate(indices)])

    def fit(self, X):
        self._reference = X
        return super().fit(X)


class Annoy(_BoundData, _Annoy):
    """Annoy (turbotsne's :class:`~turbotsne.neighbors.Annoy`)."""


class NNDescent(_BoundData, _PyNNDescent):
    """pynndescent (turbotsne's :class:`~turbotsne.neighbors.PyNNDescent`); a plain Python
    metric function is compiled with numba first."""

    def __init__(self, data, k, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 verbose=False, knn_kwargs=None):
        super().__init__(data, k, _compiled(metric), metric_params, n_jobs, random_state, verbose, knn_kwargs)

    def check_metric(self, metric):
        """``metric``, a plain Python function compiled with numba; ``ValueError`` if unsupported."""
        return super().check_metric(_compiled(metric))

    def _random_state(self):
        """``random_state`` as given (pynndescent seeds itself from it, as in openTSNE)."""
        return self.random_state


def _compiled(metric):
    from ..neighbors.base import is_numba_function

    if callable(metric) and not is_numba_function(metric):
        import numba

        return numba.njit(fastmath=True)(metric)
    return metric


class HNSW(_BoundData, _HNSW):
    """hnswlib (turbotsne's :class:`~turbotsne.neighbors.HNSW`)."""


class PrecomputedDistanceMatrix(KNNIndex):
    """Neighbours read off a square distance matrix: ``PrecomputedDistanceMatrix(D, k).build()``.

    It runs turbotsne's :class:`~turbotsne.neighbors.Precomputed` index, and that index,
    which the affinity classes make for ``metric="precomputed"``, counts as one
    (``isinstance``; a registered virtual subclass).
    """

    name = "precomputed"
    _sparse_ok = True

    def __init__(self, distance_matrix, k):
        super().__init__("precomputed")
        self.data, self.k = distance_matrix, k
        self._precomputed = _Precomputed()

    @classmethod
    def supports(cls, metric, sparse=False):
        return metric == "precomputed"

    def build(self, X=None, k=None):
        """The ``k`` nearest neighbours of each point by the bound distances (or by ``X``)."""
        result = self._precomputed.build(self.data if X is None else X, self.k if k is None else k)
        self.n_samples_fit_ = self._precomputed.n_samples_fit_
        return result

    def query(self, X_new, k):
        """The ``k`` nearest reference points by ``X_new``, distances to the reference, ``(n_new, n)``."""
        return self._precomputed.query(X_new, k)


PrecomputedDistanceMatrix.register(_Precomputed)


class PrecomputedNeighbors(KNNIndex):
    """A kNN graph computed elsewhere: ``(neighbors, distances)``, both ``(n, k)``.

    New points cannot be queried.
    """

    name = "precomputed-neighbors"

    def __init__(self, neighbors, distances):
        super().__init__("precomputed")
        neighbors, distances = np.asarray(neighbors), np.asarray(distances, dtype=np.float64)
        if neighbors.ndim != 2 or neighbors.shape != distances.shape:
            raise ValueError(f"neighbors and distances must be 2-D arrays of one shape; got {neighbors.shape} "
                             f"and {distances.shape}.")
        self.neighbors, self.distances = neighbors.astype(np.int64), distances
        self.data, self.k = None, neighbors.shape[1]
        self.n_samples_fit_ = neighbors.shape[0]

    @classmethod
    def supports(cls, metric, sparse=False):
        return metric == "precomputed"

    def build(self, X=None, k=None):
        k = self.k if k is None else k
        if k > self.k:
            raise ValueError(f"The precomputed graph has {self.k} neighbours per point; {k} were asked for.")
        return self.neighbors[:, :k], self.distances[:, :k]

    def query(self, X_new, k):
        raise ValueError("New points cannot be queried against precomputed neighbours.")
