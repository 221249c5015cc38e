"""The nearest-neighbour index interface and the pieces every index shares.

:class:`KNNIndex`: ``build(X, k)`` and ``query(X_new, k)`` return ``(indices, distances)``,
``(n, k)`` arrays sorted by distance (ties by index), int64 / float64 (the approximate
indexes: int32 / float32 from :data:`COMPACT_KNN_FROM_ENTRIES` entries on,
:func:`knn_dtypes`); ``build`` leaves each point out of its own list *by index*, so
duplicated rows still find each other. Distances are the metric's own (euclidean is not
squared). Bad input raises ``ValueError``; a missing optional package ``ImportError``
with the command that installs it.

An index class selectable by name is decorated with :func:`register_index`; it names
the module it needs in ``requires`` (checked with :meth:`KNNIndex.available`, imported with
:meth:`KNNIndex.require`). The input checks, output buffers and row operations here are
public for the index modules of this package and of :mod:`turbotsne.gpu`.
"""
from __future__ import annotations

import abc
import importlib.util

import numpy as np
import scipy.sparse as sp

from .kernels import drop_self_into, sort_rows_inplace

#: from this many kNN entries (rows x k) on, the approximate indexes return int32 indices (while
#: the reference has fewer than 2^31 points) and float32 distances instead of int64 / float64:
#: 8 instead of 16 bytes per entry, 0.72 instead of 1.44 KB per point at k = 90 (1M points: 0.7 GB
#: less next to the index). 2^24 entries are ~186,000 points at k = 90; below that the outputs stay
#: in full precision (the distances are the refined float64 ones rounded to float32 above it).
COMPACT_KNN_FROM_ENTRIES = 2 ** 24

#: how to install the optional approximate indexes
ANN_HINT = "pip install 'turbotsne[ann]'"

#: canonical names of metric aliases
ALIASES = {
    "l2": "euclidean",
    "l1": "manhattan",
    "cityblock": "manhattan",
    "taxicab": "manhattan",
}

#: the index classes that the ``neighbors`` parameter names, by name, in the order error
#: messages list them (filled by :func:`register_index` when the package is imported).
INDEXES = {}


def register_index(cls):
    """Class decorator: make ``cls`` selectable as ``neighbors=cls.name``."""
    INDEXES[cls.name] = cls
    return cls


def canonical(metric):
    """The canonical name of a metric alias (``"l2"`` -> ``"euclidean"``); anything else as is."""
    return ALIASES.get(metric, metric) if isinstance(metric, str) else metric


def is_numba_function(metric):
    """Whether ``metric`` is a numba-jitted function."""
    try:
        from numba.core.registry import CPUDispatcher
    except ImportError:  # pragma: no cover
        return False
    return isinstance(metric, CPUDispatcher)


def installed(module):
    """Whether ``module`` can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def import_or_hint(module, what, hint):
    """Import ``module`` or raise an ImportError that says ``neighbors=what`` needs it and ``hint``."""
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(
            f"neighbors={what!r} needs the {module!r} package, which is not installed: {hint}"
        ) from exc


def seed(random_state):
    """An int32 seed drawn from ``random_state`` (int, RandomState, Generator or None)."""
    from sklearn.utils import check_random_state

    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(np.iinfo(np.int32).max))
    return int(check_random_state(random_state).randint(np.iinfo(np.int32).max))


def sklearn_metrics(sparse):
    """The metrics of scikit-learn's brute-force neighbours on (sparse) input."""
    from sklearn.neighbors import VALID_METRICS, VALID_METRICS_SPARSE

    table = VALID_METRICS_SPARSE if sparse else VALID_METRICS
    return frozenset(m for m in table["brute"] if m != "precomputed")


def pynndescent_metrics(sparse):
    """pynndescent's named metrics on (sparse) input; empty when it is not installed."""
    if not installed("pynndescent"):
        return frozenset()
    if sparse:
        from pynndescent.sparse import sparse_named_distances as table
    else:
        from pynndescent.distances import named_distances as table
    return frozenset(table)


# --------------------------------------------------------------------------- #
# Input checks
# --------------------------------------------------------------------------- #
def check_finite_array(X, **kw):
    """scikit-learn's ``check_array`` rejecting NaN and inf (under either spelling of the flag)."""
    from sklearn.utils import check_array

    try:
        return check_array(X, ensure_all_finite=True, **kw)
    except TypeError:  # scikit-learn < 1.6 calls it force_all_finite
        return check_array(X, force_all_finite=True, **kw)


def check_data(X, *, accept_sparse, dtype=np.float64, name="X"):
    """``X`` as a finite 2-D array of ``dtype`` (CSR if sparse and ``accept_sparse``)."""
    if sp.issparse(X) and not accept_sparse:
        raise ValueError(f"{name} is sparse but this index needs dense input.")
    return check_finite_array(X, accept_sparse="csr" if accept_sparse else False, dtype=dtype, input_name=name)


def check_k(k, n_ref, *, build):
    """``k`` as an int, checked against the ``n_ref`` reference points (less the point itself
    when ``build``)."""
    n_avail = n_ref - 1 if build else n_ref
    if not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1:
        raise ValueError(f"The number of neighbours k must be a positive integer. Got {k!r} instead.")
    if k > n_avail:
        raise ValueError(
            f"Asked for k={k} neighbours but only {n_avail} other points are available "
            f"({n_ref} reference points); lower k (or the perplexity) below {n_avail + 1}."
        )
    return int(k)


# --------------------------------------------------------------------------- #
# Outputs
# --------------------------------------------------------------------------- #
def knn_dtypes(n_query, n_ref, k):
    """The ``(indices, distances)`` dtypes of an approximate index's ``(n_query, k)`` output:
    int64 / float64, or int32 / float32 from ``COMPACT_KNN_FROM_ENTRIES`` entries on (the
    compact arrays are then the fronts of buffers with room for P: :func:`knn_output`)."""
    if n_query * k < COMPACT_KNN_FROM_ENTRIES:
        return np.int64, np.float64
    return (np.int32 if n_ref < 2 ** 31 else np.int64), np.float32


def knn_output(n, k, dtype, room):
    """An ``(n, k)`` output array; with ``room`` the front of a flat buffer of ``2 n k`` entries,
    in which :func:`turbotsne.affinity.symmetrize` can build the symmetric P of the kNN graph
    (at most ``2 n k`` entries) in place. The rest of the buffer is not touched, so it is
    address space, not resident memory."""
    if not room:
        return np.empty((n, k), dtype=dtype)
    return np.empty(2 * n * k, dtype=dtype)[:n * k].reshape(n, k)


def drop_self(indices, distances, k, offset=0):
    """Remove row i's own index (``offset + i``) from row i (by index, not the first column)
    and keep k.

    Rows where self did not come back lose their last (farthest) column instead
    (indexes return unique ids, so self appears at most once)."""
    n, m = indices.shape
    out_i = np.empty((n, min(k, m - 1)), dtype=np.int64)
    out_d = np.empty(out_i.shape, dtype=np.float64)
    drop_self_into(np.ascontiguousarray(indices, dtype=np.int64),
                   np.ascontiguousarray(distances, dtype=np.float64), out_i, out_d, offset)
    return out_i, out_d


def sort_rows(indices, distances):
    """Sort each row by (distance, index); returns new int64 / float64 arrays."""
    indices = np.array(indices, dtype=np.int64, order="C")
    distances = np.array(distances, dtype=np.float64, order="C")
    sort_rows_inplace(indices, distances)
    return indices, distances


# --------------------------------------------------------------------------- #
# The interface
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

    #: human-readable name used in error messages (and the ``neighbors`` name of a registered index)
    name = "index"
    #: the module the index imports (None: nothing beyond turbotsne's dependencies) ...
    requires = None
    #: ... and the command that installs it
    install_hint = None
    #: whether the index accepts ``metric_params``
    accepts_metric_params = True

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

    @classmethod
    def extra_params(cls):
        """The names of the constructor arguments beyond the four of :class:`KNNIndex`
        (what ``knn_kwargs`` may set); None when any name is passed on to the library."""
        return keyword_names(cls.__init__, {"self", "metric", "metric_params", "n_jobs", "random_state"})

    @classmethod
    def available(cls):
        """Whether the module the index needs is installed."""
        return cls.requires is None or installed(cls.requires)

    @classmethod
    def require(cls):
        """Import and return the module the index needs (ImportError with ``install_hint``)."""
        return import_or_hint(cls.requires, cls.name, cls.install_hint)

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
            raise ValueError(unsupported_message(self.name, self.metric, sparse))

    def _check_fitted(self):
        if getattr(self, "n_samples_fit_", None) is None:
            from sklearn.exceptions import NotFittedError

            raise NotFittedError(f"This {type(self).__name__} index is not built yet; call build(X, k) first.")

    def _check_query(self, X_new):
        X_new = check_data(X_new, accept_sparse=self._sparse_ok, name="X_new")
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


def keyword_names(function, own):
    """The names of the keyword arguments of ``function`` less ``own``; None when it takes ``**kwargs``."""
    import inspect

    params = inspect.signature(function).parameters
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return None
    return frozenset(n for n, p in params.items() if p.kind is not p.VAR_POSITIONAL) - set(own)


def make_index(cls, metric="euclidean", metric_params=None, n_jobs=1, random_state=None, kwargs=None):
    """``cls(metric, metric_params, n_jobs, random_state, **kwargs)``: the index with the extra
    constructor arguments ``kwargs`` (``knn_kwargs``); ``TypeError`` naming the index and the
    arguments it takes when a key is not one of them."""
    return cls(metric, metric_params, n_jobs, random_state, **check_index_kwargs(cls, kwargs))


def check_index_kwargs(cls, kwargs):
    """``kwargs`` as a dict, checked against the extra constructor arguments of the index
    class ``cls``: ``TypeError`` naming the index and what it takes for an unknown key."""
    kwargs = dict(kwargs or {})
    if not kwargs:
        return kwargs
    takes = cls.extra_params()
    unknown = sorted(set(kwargs) - set(takes)) if takes is not None else []
    if unknown:
        raise TypeError(f"The {cls.name!r} nearest-neighbour index ({cls.__name__}) got unexpected knn_kwargs "
                        f"{unknown}; it takes {sorted(takes) or 'none'}.")
    return kwargs


def unsupported_message(name, metric, sparse):
    """The error message for index ``name`` asked for ``metric`` on (sparse) input: which
    registered indexes support it, and which metrics ``name`` supports."""
    kind = "sparse" if sparse else "dense"
    metric_name = getattr(metric, "__name__", repr(metric)) if callable(metric) else repr(metric)
    others = [n for n, c in INDEXES.items() if n != name and c.supports(metric, sparse)]
    msg = f"The {name!r} nearest-neighbour index does not support metric={metric_name} on {kind} input."
    if others:
        msg += f" Use neighbors={others[0]!r} (indexes that support it: {', '.join(others)})."
    else:
        msg += " No index supports it"
        msg += "; pass a dense array." if sparse else "."
    cls = INDEXES.get(name)
    if cls is not None:
        valid = sorted(cls.valid_metrics(sparse))
        if valid:
            msg += f" Metrics {name!r} supports on {kind} input: {', '.join(valid)}."
    return msg
