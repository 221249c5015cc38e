"""Affinities: the symmetric joint probabilities P of the input space.

Every affinity object exposes ``P``, a symmetric CSR matrix that sums to 1
(or, for scikit-learn's exact method, a dense ndarray), and the neighbour index
it was built with, for placing new points later (:meth:`Affinities.to_new`).

Gaussian kernels act on *squared* metric distances for every metric (the
Euclidean case is scikit-learn's and openTSNE's convention; for other metrics
squaring keeps the kernel a Gaussian in that metric's distance). The precision
per point follows scikit-learn's and openTSNE's stopping rule
(:mod:`turbotsne.affinity_kernels`). The classes validate their parameters,
build the neighbour index and hand the arithmetic to the engine
(:mod:`turbotsne.engine`): the numba kernels, or torch on a device.
"""
from __future__ import annotations

import inspect
import logging
import warnings

import numpy as np
import scipy.sparse as sp

from ._validation import check_bool, check_data, check_metric, check_n_jobs, check_neighbors, check_scalar, check_verbose
from .affinity_kernels import (conditional_probabilities, joint_probabilities_dense,  # noqa: F401  (public here too)
                               joint_probabilities_nn, symmetrize)
from .engine import NUMBA, resolve_engine
from .neighbors import NEIGHBORS_METHODS, Exact, KNNIndex, get_knn_index

log = logging.getLogger(__name__)


def check_perplexity(perplexity, n_samples):
    """Reduce a perplexity too large for ``n_samples`` (with a warning), as openTSNE does."""
    if n_samples - 1 < 3 * perplexity:
        new = max((n_samples - 1) / 3, 1e-3)
        warnings.warn(
            f"Perplexity value {perplexity:g} is too high for {n_samples} samples; "
            f"using perplexity {new:.2f} instead.",
            stacklevel=3,
        )
        return new
    return perplexity


def _check_finite_positive(value, name, owner):
    return check_scalar(value, name, owner, float, low=0.0)


def _check_perplexity_value(perplexity, owner):
    """A positive, finite perplexity (``inf`` would ask for infinitely many neighbours)."""
    return check_scalar(perplexity, "perplexity", owner, float, low=0.0)


def _check_perplexities(perplexities, owner):
    try:
        values = np.atleast_1d(np.asarray(perplexities, dtype=np.float64))
    except (TypeError, ValueError):
        values = None
    if values is None or values.ndim != 1 or values.size == 0 or not np.all(np.isfinite(values)) \
            or not np.all(values > 0):
        raise ValueError(f"The 'perplexities' parameter of {owner} must be a non-empty list of positive, finite "
                         f"floats. Got {perplexities!r} instead.")
    return values


#: the values of ``symmetrize``: True and "mean" are ``(P + P^T) / 2``, "max" the element-wise
#: maximum, False the conditionals as they are (each normalised to sum 1)
SYMMETRIZE = (True, False, "mean", "max")


def _with_knn_kwargs(method, knn_kwargs, metric, metric_params, n_jobs, random_state, owner):
    """``method``, or the index it names made with the extra arguments ``knn_kwargs``."""
    if not knn_kwargs:
        return method
    from .neighbors.base import INDEXES, make_index

    if not isinstance(knn_kwargs, dict):
        raise ValueError(f"The 'knn_kwargs' parameter of {owner} must be a dict or None. Got {knn_kwargs!r} "
                         "instead.")
    if isinstance(method, KNNIndex) or method not in INDEXES:
        raise ValueError(f"knn_kwargs needs the 'method' of {owner} to name one index ({sorted(INDEXES)}); "
                         f"got {method!r}.")
    return make_index(INDEXES[method], metric, metric_params, n_jobs, random_state, knn_kwargs)


def _rows_to_csr(values, indices, n_cols):
    n, k = values.shape
    indptr = np.arange(0, n * k + 1, k, dtype=np.int64)
    P = sp.csr_matrix((values.ravel(), np.asarray(indices, dtype=np.int64).ravel(), indptr), shape=(n, n_cols))
    P.sum_duplicates()
    P.sort_indices()
    return P


class Affinities:
    """Base class of the input-space affinities.

    Subclasses set ``P`` (symmetric CSR that sums to 1, or a dense ndarray for
    :class:`PerplexityBasedDense`) and, where they can relate new points to the
    reference, implement :meth:`to_new`.
    """

    P = None
    #: where the conditional probabilities are computed (see :mod:`turbotsne.engine`)
    engine = NUMBA

    @property
    def n_samples(self):
        return self.P.shape[0]

    def transform_params(self, perplexity):
        """What ``TSNEEmbedding.transform(perplexity=...)`` passes to :meth:`to_new`: the
        perplexity for kernels that have one (a single scale for the multiscale kernels);
        kernels without one (fixed sigma, uniform) keep their own parameters. A subclass
        whose ``to_new`` takes ``perplexity`` gets it."""
        return {"perplexity": perplexity} if "perplexity" in inspect.signature(self.to_new).parameters else {}

    def to_new(self, data, k=None, return_distances=False, **kwargs):
        """Affinities of new points to the reference: a CSR ``(n_new, n_ref)`` with rows summing to 1.

        With ``return_distances``, also the ``(indices, distances)`` of the
        queried neighbours (used to place the new points).
        """
        raise NotImplementedError(
            f"{type(self).__name__} cannot relate new points to the reference data; "
            "use a neighbour-based affinity class (e.g. PerplexityBasedNN) to embed new points.")


class _NeighborAffinities(Affinities):
    """Shared machinery: a kNN index over the reference, queried again for new points.

    Subclasses define ``_conditional(sq_distances, **params)`` that maps the
    squared neighbour distances of each point to row-normalised conditional
    probabilities, and ``_k(n)``, the neighbours each point needs.
    """

    @staticmethod
    def _check_common(owner, data, method, metric, metric_params, n_jobs, knn_index, verbose, symmetrize=True):
        """Validate what every neighbour-based class takes; returns the checked data (None when
        ``knn_index`` carries its own data, openTSNE's ``Index(data, k)`` convention)."""
        check_neighbors(method, owner, NEIGHBORS_METHODS)
        check_metric(metric, metric_params, owner)
        check_n_jobs(n_jobs, owner)
        check_verbose(verbose, owner)
        if symmetrize not in SYMMETRIZE:
            raise ValueError(f"The 'symmetrize' parameter of {owner} must be one of {list(SYMMETRIZE)}. "
                             f"Got {symmetrize!r} instead.")
        if knn_index is not None and not isinstance(knn_index, KNNIndex):
            raise ValueError(f"The 'knn_index' parameter of {owner} must be a KNNIndex or None. "
                             f"Got {knn_index!r} instead.")
        bound = knn_index is not None and getattr(knn_index, "k", None) is not None
        if bound and data is not None:
            raise ValueError(f"{owner} takes either the data or a knn_index built on it (it holds its data), "
                             "not both.")
        if bound:
            return None
        if data is None:
            raise ValueError(f"{owner} needs the data or a knn_index; got neither.")
        return check_data(data, owner)

    @staticmethod
    def _n_samples_of(data, knn_index):
        if data is not None:
            return data.shape[0]
        bound = knn_index.data if getattr(knn_index, "data", None) is not None else knn_index.neighbors
        return bound.shape[0]

    def _build(self, data, method, metric, metric_params, n_jobs, random_state, knn_index, k, symmetrize=True):
        self.n_jobs = n_jobs
        self.symmetrize = symmetrize
        self.knn_index = knn_index if knn_index is not None else get_knn_index(
            method, metric=metric, metric_params=metric_params, n_jobs=n_jobs, random_state=random_state)
        if data is None:  # an index bound to its data: at most its k neighbours
            k = min(k, self.knn_index.k)
        # kept to recompute P at another perplexity (a reference: no copy)
        self._knn_data, self._knn_k = data, k
        log.info("Finding %d nearest neighbours of %d points", k, self._n_samples_of(data, self.knn_index))
        indices, distances = self.knn_index.build(data, k)
        log.info("Computing affinities")
        # the kNN arrays are dropped as soon as P no longer needs them (not kept on the object:
        # at k = 90 they took 1.4 KB per point for the whole optimisation); large compact ones
        # (int32 / float32) become P's storage: the squares, the conditionals and P are written
        # into them (P's values then float32)
        indices = self.engine.knn_indices(indices)
        in_place = distances.dtype == np.float32  # a compact output: it becomes P's storage
        sq = np.square(distances, out=distances if in_place else None)
        del distances
        cond = self._conditional(sq, **self._params())
        dtype = sq.dtype
        del sq
        self.P = self._joint(cond, indices, dtype)

    def _joint(self, cond, indices, dtype):
        """P from the conditionals: ``(P + P^T) / sum`` (``symmetrize`` True or "mean"), the
        element-wise maximum of P and P^T ("max"), or the conditionals themselves (False),
        each normalised to sum 1."""
        if self.symmetrize in (True, "mean"):
            return self.engine.symmetrize(cond, indices, dtype, self.n_jobs)
        cond = self.engine.to_numpy(cond)
        n = cond.shape[0]
        C = _rows_to_csr(np.asarray(cond, dtype=np.float64), self.engine.to_numpy(indices), n)
        if self.symmetrize == "max":
            C = C.maximum(C.T).tocsr()
        C.eliminate_zeros()
        C.sort_indices()
        C.data /= C.data.sum()
        return C

    def _check_new_perplexity(self, perplexity, owner):
        if perplexity > self._knn_k:
            raise RuntimeError(f"{owner}: perplexity {perplexity:g} is above the {self._knn_k} neighbours per "
                               f"point found at construction; make a new {type(self).__name__} instead.")
        if 3 * perplexity > self._knn_k:
            log.warning("Perplexity %g asks for %d neighbours; the kNN graph has %d, so the kernel is truncated "
                        "there.", perplexity, int(3 * perplexity), self._knn_k)

    def _rebuild(self, k_needed, owner):
        """Recompute P with the current parameters on the first ``k_needed`` neighbours (the
        index searches again: the kNN arrays are not kept)."""
        indices, distances = self.knn_index.build(self._knn_data, self._knn_k)
        indices = self.engine.knn_indices(np.ascontiguousarray(indices[:, :k_needed]))
        sq = np.square(np.asarray(distances[:, :k_needed], dtype=np.float64))
        self.P = self._joint(self._conditional(sq, **self._params()), indices, np.float64)

    def _params(self):
        return {}

    def _check_params(self, params, owner):
        return params

    def to_new(self, data, k=None, return_distances=False, **params):
        """Affinities of new points to the reference (rows sum to 1; not symmetrised).

        ``params`` override the class's kernel parameters (e.g. ``perplexity``);
        ``k`` neighbours are queried (default: as many as the kernel needs).
        """
        owner = f"{type(self).__name__}.to_new"
        unknown = set(params) - set(self._params())
        if unknown:
            raise TypeError(f"{owner} got unexpected parameters {sorted(unknown)}; "
                            f"allowed: {sorted(self._params())}.")
        params = {**self._params(), **{k_: v for k_, v in params.items() if v is not None}}
        params = self._check_params(params, owner)
        if k is not None:
            k = check_scalar(k, "k", owner, int, low=1, closed="left")
        n_ref = self.n_samples
        need = min(n_ref, self._k_for(params))
        k_query = need if k is None else max(need, min(int(k), n_ref))
        indices, distances = self.knn_index.query(data, k_query)
        cond = self.engine.to_numpy(self._conditional(np.square(distances[:, :need]), **params))
        P = _rows_to_csr(cond, indices[:, :need], n_ref)
        if return_distances:
            return P, indices, distances
        return P


class _PerplexityKernel:
    """The Gaussian kernel at a target perplexity, shared by the sparse and the dense class:
    ``3 * perplexity`` neighbours, conditionals by the engine's perplexity search."""

    def _params(self):
        return {"perplexity": self.effective_perplexity_}

    def transform_params(self, perplexity):
        return {"perplexity": perplexity}

    @staticmethod
    def _check_params(params, owner):
        return {"perplexity": _check_perplexity_value(params["perplexity"], owner)}

    @staticmethod
    def _k_for(params):
        return max(1, int(3 * params["perplexity"]))

    def _conditional(self, sq_distances, perplexity):
        return self.engine.conditional_probabilities(sq_distances, perplexity, self.n_jobs)


class PerplexityBasedNN(_PerplexityKernel, _NeighborAffinities):
    """Gaussian affinities on the ``k = min(N - 1, 3 * perplexity)`` nearest neighbours.

    Parameters follow openTSNE's ``PerplexityBasedNN``: ``perplexity``,
    ``method`` (the ``neighbors`` choice or a :class:`~turbotsne.neighbors.KNNIndex`),
    ``metric``, ``metric_params``, ``n_jobs``, ``random_state``,
    ``k_neighbors`` ("auto" = 3 * perplexity) and ``knn_index`` (reuse a built index).
    ``perplexity`` keeps the value given; ``effective_perplexity_`` is the one used
    (reduced, with a warning, when above ``(N - 1) / 3``). Keyword-only ``device`` /
    ``backend`` (see :mod:`turbotsne.engine`): on a torch engine the perplexity search
    and the symmetrisation run on that device (the neighbour index is still the one
    ``method`` names).
    """

    def __init__(self, data=None, perplexity=30, method="auto", metric="euclidean", metric_params=None,
                 n_jobs=1, random_state=None, k_neighbors="auto", knn_index=None, verbose=False, *,
                 symmetrize=True, knn_kwargs=None, device="cpu", backend="auto"):
        owner = type(self).__name__
        self.engine = resolve_engine(device, backend, owner)
        perplexity = _check_perplexity_value(perplexity, owner)
        k_neighbors = check_scalar(k_neighbors, "k_neighbors", owner, int, low=1, closed="left", options=("auto",))
        data = self._check_common(owner, data, method, metric, metric_params, n_jobs, knn_index, verbose,
                                  symmetrize)
        method = _with_knn_kwargs(method, knn_kwargs, metric, metric_params, n_jobs, random_state, owner)
        n = self._n_samples_of(data, knn_index)
        # the value given; the value used, reduced for small N, is effective_perplexity_
        self.perplexity = perplexity
        self.effective_perplexity_ = check_perplexity(perplexity, n)
        if k_neighbors == "auto":
            k = min(n - 1, int(3 * self.effective_perplexity_))
        else:
            k = min(n - 1, k_neighbors)
        self._build(data, method, metric, metric_params, n_jobs, random_state, knn_index, max(k, 1), symmetrize)

    def set_perplexity(self, new_perplexity):
        """Recompute P at ``new_perplexity`` with the neighbours found at construction.

        Raises ``RuntimeError`` when ``new_perplexity`` is above that number of
        neighbours; above a third of it, the kernel is truncated there (logged).
        """
        owner = f"{type(self).__name__}.set_perplexity"
        new_perplexity = _check_perplexity_value(new_perplexity, owner)
        if new_perplexity == self.effective_perplexity_:
            return
        self._check_new_perplexity(new_perplexity, owner)
        self.perplexity = self.effective_perplexity_ = new_perplexity
        self._rebuild(min(self._knn_k, max(1, int(3 * new_perplexity))), owner)


class FixedSigmaNN(_NeighborAffinities):
    """Gaussian affinities with one bandwidth ``sigma`` for every point, on ``k`` neighbours:
    ``p_{j|i} ∝ exp(-d_ij^2 / (2 sigma^2))``."""

    def __init__(self, data=None, sigma=None, k=30, method="auto", metric="euclidean", metric_params=None,
                 n_jobs=1, random_state=None, knn_index=None, verbose=False, *, symmetrize=True, knn_kwargs=None):
        self.sigma = _check_finite_positive(sigma, "sigma", "FixedSigmaNN")
        self.k = check_scalar(k, "k", "FixedSigmaNN", int, low=1, closed="left")
        data = self._check_common("FixedSigmaNN", data, method, metric, metric_params, n_jobs, knn_index, verbose,
                                  symmetrize)
        method = _with_knn_kwargs(method, knn_kwargs, metric, metric_params, n_jobs, random_state, "FixedSigmaNN")
        k = min(self._n_samples_of(data, knn_index) - 1, self.k)
        self._build(data, method, metric, metric_params, n_jobs, random_state, knn_index, max(k, 1), symmetrize)

    def _params(self):
        return {"sigma": self.sigma}

    @staticmethod
    def _check_params(params, owner):
        return {"sigma": _check_finite_positive(params["sigma"], "sigma", owner)}

    def _k_for(self, params):
        return self.k

    def _conditional(self, sq_distances, sigma):
        W = np.exp(-(sq_distances - sq_distances[:, :1]) / (2.0 * sigma ** 2))  # shift: no underflow to 0/0
        return W / W.sum(axis=1, keepdims=True)


class Uniform(_NeighborAffinities):
    """Uniform affinities: ``p_{j|i} = 1 / k`` over the ``k_neighbors`` nearest neighbours."""

    def __init__(self, data=None, k_neighbors=30, method="auto", metric="euclidean", metric_params=None,
                 n_jobs=1, random_state=None, knn_index=None, verbose=False, *, symmetrize=True, knn_kwargs=None):
        self.k_neighbors = check_scalar(k_neighbors, "k_neighbors", "Uniform", int, low=1, closed="left")
        data = self._check_common("Uniform", data, method, metric, metric_params, n_jobs, knn_index, verbose,
                                  symmetrize)
        method = _with_knn_kwargs(method, knn_kwargs, metric, metric_params, n_jobs, random_state, "Uniform")
        k = min(self._n_samples_of(data, knn_index) - 1, self.k_neighbors)
        self._build(data, method, metric, metric_params, n_jobs, random_state, knn_index, max(k, 1), symmetrize)

    def _k_for(self, params):
        return self.k_neighbors

    def _conditional(self, sq_distances):
        return np.full(sq_distances.shape, 1.0 / sq_distances.shape[1])


class MultiscaleMixture(_NeighborAffinities):
    """Gaussian-mixture kernel (Lee et al. 2015): per point, one precision per perplexity
    (each found by the perplexity search), ``p_{j|i} ∝ sum_h exp(-beta_h d_ij^2)``, on
    ``3 * max(perplexities)`` neighbours. ``perplexities`` keeps the value given (a number or a
    list); ``effective_perplexities_`` the values used (too large ones reduced, each once)."""

    def __init__(self, data=None, perplexities=None, method="auto", metric="euclidean", metric_params=None,
                 n_jobs=1, random_state=None, knn_index=None, verbose=False, *, symmetrize=True, knn_kwargs=None):
        owner = type(self).__name__
        perplexities_given = perplexities
        perplexities = _check_perplexities(perplexities, owner)
        data = self._check_common(owner, data, method, metric, metric_params, n_jobs, knn_index, verbose,
                                  symmetrize)
        method = _with_knn_kwargs(method, knn_kwargs, metric, metric_params, n_jobs, random_state, owner)
        n = self._n_samples_of(data, knn_index)
        self.perplexities = perplexities_given
        # the values used: those too large for N reduced (with a warning), each once
        effective = [check_perplexity(float(p), n) for p in perplexities]
        self.effective_perplexities_ = [p for i, p in enumerate(effective) if p not in effective[:i]]
        k = min(n - 1, int(3 * max(self.effective_perplexities_)))
        self._build(data, method, metric, metric_params, n_jobs, random_state, knn_index, max(k, 1), symmetrize)

    def set_perplexities(self, new_perplexities):
        """Recompute P at ``new_perplexities`` with the neighbours found at construction.

        Raises ``RuntimeError`` when they need more neighbours (``3 * max``) than were found.
        """
        owner = f"{type(self).__name__}.set_perplexities"
        new = [float(p) for p in _check_perplexities(new_perplexities, owner)]
        if new == list(self.effective_perplexities_):
            return
        k_needed = max(1, int(3 * max(new)))
        if k_needed > self._knn_k:
            raise RuntimeError(f"{owner}: perplexity {max(new):g} needs {k_needed} neighbours per point but "
                               f"{self._knn_k} were found at construction; make a new {type(self).__name__} "
                               "instead.")
        self.perplexities = self.effective_perplexities_ = new
        self._rebuild(k_needed, owner)

    def _params(self):
        return {"perplexities": self.effective_perplexities_}

    def transform_params(self, perplexity):
        return {"perplexities": list(perplexity) if isinstance(perplexity, (list, tuple, np.ndarray))
                else [perplexity]}

    @staticmethod
    def _check_params(params, owner):
        return {"perplexities": [float(p) for p in _check_perplexities(params["perplexities"], owner)]}

    @staticmethod
    def _k_for(params):
        return max(1, int(3 * max(params["perplexities"])))

    def _conditional(self, sq_distances, perplexities):
        # log sum_h exp(-beta_h d^2) per entry (log-sum-exp: no underflow), then row-normalised
        logs = np.stack([-conditional_probabilities(sq_distances, p, n_jobs=self.n_jobs, return_betas=True)[1][:, None]
                         * sq_distances for p in perplexities])
        top = logs.max(axis=0)
        log_mix = top + np.log(np.exp(logs - top).sum(axis=0))
        mix = np.exp(log_mix - log_mix.max(axis=1, keepdims=True))
        return mix / mix.sum(axis=1, keepdims=True)


class Multiscale(MultiscaleMixture):
    """Multiscale affinities (openTSNE's ``Multiscale``): the average of the single-scale
    normalised conditionals, one per perplexity."""

    def _conditional(self, sq_distances, perplexities):
        conds = [conditional_probabilities(sq_distances, p, n_jobs=self.n_jobs) for p in perplexities]
        return sum(conds) / len(conds)


#: the most points the dense exact method accepts: its P is N x N float64 (20,000 points: 3.2 GB, and the
#: exact gradient costs O(N^2) per iteration). Raise it (or pass ``allow_large=True`` to
#: :class:`PerplexityBasedDense`) to go beyond; ``negative_gradient_method="bh"``/``"fft"`` need O(N k) memory.
EXACT_MAX_SAMPLES = 20_000


def check_exact_size(n_samples, owner, allow_large=False):
    """Refuse the dense exact method above :data:`EXACT_MAX_SAMPLES` points unless ``allow_large``."""
    if n_samples > EXACT_MAX_SAMPLES and not allow_large:
        gb = n_samples ** 2 * 8 / 1e9
        raise ValueError(
            f"{owner}: negative_gradient_method='exact' stores a dense {n_samples} x {n_samples} affinity matrix "
            f"({gb:.1f} GB) and costs O(N^2) per iteration; it is limited to {EXACT_MAX_SAMPLES} samples. "
            f"Use negative_gradient_method='bh' or 'fft', or raise turbotsne.affinity.EXACT_MAX_SAMPLES "
            f"to allow it.")


class PerplexityBasedDense(_PerplexityKernel, _NeighborAffinities):
    """Gaussian affinities over all pairs (dense P): scikit-learn's exact method.

    ``O(N^2)`` memory; used by ``negative_gradient_method="exact"``. Refuses
    more than :data:`EXACT_MAX_SAMPLES` points unless ``allow_large=True``.
    New points are related to the reference through an exact kNN index over
    the stored reference data (``3 * perplexity`` neighbours, as the sparse path).
    With ``metric="precomputed"``, ``data`` is a dense square distance matrix.
    On a torch engine (keyword-only ``device`` / ``backend``) the distances
    (euclidean, sqeuclidean, cosine) and the perplexity search run on that device.
    """

    def __init__(self, data, perplexity=30, metric="euclidean", metric_params=None, n_jobs=1, *,
                 allow_large=False, device="cpu", backend="auto"):
        owner = type(self).__name__
        self.engine = resolve_engine(device, backend, owner)
        perplexity = _check_perplexity_value(perplexity, owner)
        check_metric(metric, metric_params, owner)
        check_n_jobs(n_jobs, owner)
        check_bool(allow_large, "allow_large", owner)
        if metric == "precomputed" and sp.issparse(data):
            raise ValueError(f"{owner} needs a dense square distance matrix with metric='precomputed' (a sparse "
                             "kNN graph lacks the other pairs); use negative_gradient_method='bh' or 'fft'.")
        data = check_data(data, owner)
        n = data.shape[0]
        check_exact_size(n, owner, allow_large)
        if metric == "precomputed":
            if data.shape[0] != data.shape[1] or np.any(data < 0):
                raise ValueError(f"With metric='precomputed', {owner} needs a square matrix of non-negative "
                                 f"distances; got shape {data.shape}.")
        self.perplexity = perplexity
        self.effective_perplexity_ = check_perplexity(perplexity, n)
        self.n_jobs = n_jobs
        self.metric, self.metric_params = metric, metric_params
        self.P = self.engine.dense_joint_probabilities(data, metric, metric_params, self.effective_perplexity_,
                                                       n_jobs)
        self.knn_index = None if metric == "precomputed" else Exact(
            metric=metric, metric_params=metric_params, n_jobs=n_jobs).fit(data)

    def to_new(self, data, k=None, return_distances=False, perplexity=None):
        if self.knn_index is None:
            raise ValueError("New points cannot be related to a reference given as precomputed distances.")
        return super().to_new(data, k=k, return_distances=return_distances, perplexity=perplexity)


class PrecomputedAffinities(Affinities):
    """User-given affinities: a square, symmetric, non-negative (sparse) matrix.

    With ``normalize`` (default) it is scaled to sum 1. New points cannot be
    related to it.
    """

    def __init__(self, affinities, normalize=True):
        check_bool(normalize, "normalize", "PrecomputedAffinities")
        P = sp.csr_matrix(affinities, dtype=np.float64)
        if P.shape[0] != P.shape[1]:
            raise ValueError(f"The 'affinities' matrix must be square; got shape {P.shape}.")
        if P.nnz and (not np.all(np.isfinite(P.data)) or P.data.min() < 0):
            raise ValueError("The 'affinities' matrix must contain finite, non-negative values.")
        if abs(P - P.T).max() > 1e-8 * max(P.data.max() if P.nnz else 0.0, 1e-300):
            raise ValueError("The 'affinities' matrix must be symmetric; symmetrise it with (P + P.T) / 2.")
        P.setdiag(0)
        P.eliminate_zeros()
        P.sort_indices()
        if normalize:
            total = P.data.sum()
            if total <= 0:
                raise ValueError("The 'affinities' matrix has no positive off-diagonal entry.")
            P.data /= total
        self.P = P
