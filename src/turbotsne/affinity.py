"""Affinities: the symmetric joint probabilities P of the input space.

Every affinity object exposes ``P``, a symmetric CSR matrix that sums to 1
(or, for scikit-learn's exact method, a dense ndarray), and the neighbour index
it was built with, for placing new points later.

Gaussian kernels act on *squared* metric distances for every metric (the
Euclidean case is scikit-learn's and openTSNE's convention; for other metrics
squaring keeps the kernel a Gaussian in that metric's distance). Per point the
precision is found to the target perplexity with scikit-learn's and openTSNE's
stopping rule (entropy in nats within 1e-5 of ``log(perplexity)``, at most 100
steps), but by a safeguarded Newton iteration on ``log(beta)`` instead of their
bisection from ``beta = 1`` (see :func:`_perplexity_search`): the precisions
differ from theirs by at most the tolerance's worth (~1e-5 relative), in 6-9
steps instead of 30-40.
"""
from __future__ import annotations

import logging
import warnings

import numba
import numpy as np
import scipy.sparse as sp

from ._config import FASTMATH, thread_limit
from ._validation import check_bool, check_data, check_metric, check_n_jobs, check_neighbors, check_scalar, check_verbose
from .gpu import NUMBA, resolve_engine
from .neighbors import NEIGHBORS_METHODS, Exact, KNNIndex, get_knn_index

log = logging.getLogger(__name__)

_EPSILON_DBL = 1e-8
_PERPLEXITY_TOLERANCE = 1e-5
_MACHINE_EPSILON = np.finfo(np.double).eps


#: rows per block of the perplexity search and the symmetrisation's merge (each block has its own
#: row buffers; the blocks, not the threads, partition the rows, so the result does not depend on
#: the thread count)
_ROW_BLOCK = 256


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _perplexity_search(sq_distances, skip_self, perplexity, tol, max_iter, out, betas):
    """Conditional probabilities ``p_{j|i}`` row by row (each thread owns blocks of rows).

    ``sq_distances`` is ``(n, k)``; when ``skip_self`` the matrix is square and
    its diagonal is left out (scikit-learn's dense exact path). ``betas[i]``
    receives the precision found for row ``i``. Each row is copied into a float64
    buffer before its search, so ``out`` may be ``sq_distances`` itself (in place), and
    float32 distances are searched in double precision.

    The entropy ``H`` falls with ``beta``, and ``dH / dlog(beta) = -Var_p(beta d)``
    (``d`` the shifted squared distances, ``p`` the row's probabilities), so each step
    takes a Newton step in ``log(beta)`` (at most a factor e^5) from a start at
    ``1 / mean(d)``, the scale of the row. Safeguards: the steps keep a bracket
    ``[beta_min, beta_max]`` of the root (from the sign of ``H - log(perplexity)``); a
    Newton step that leaves it, or follows a step that did not halve ``|H -
    log(perplexity)|``, is replaced by the geometric midpoint of the bracket (or a
    doubling / halving while it is open). On MNIST-70k's k = 90 rows at perplexity 30:
    6.6 steps on average, 9 at most, against 33.8 and 38 for bisection from
    ``beta = 1``; 0.11 instead of 0.87 s on 2 threads (ad hoc comparison).
    """
    n, k = sq_distances.shape
    target = np.log(perplexity)
    for block in numba.prange((n + _ROW_BLOCK - 1) // _ROW_BLOCK):
        d = np.empty(k)
        p = np.empty(k)
        for i in range(block * _ROW_BLOCK, min(n, (block + 1) * _ROW_BLOCK)):
            # Distances are shifted by the row's smallest one (self excluded): the
            # probabilities and the entropy are unchanged, but the largest kernel
            # value is exp(0) = 1, so the sum never underflows (a sum of 0 or a
            # subnormal sum gave 0/0 = NaN for tiny perplexities and huge scales).
            shift = np.inf
            for j in range(k):
                d[j] = sq_distances[i, j]
                if not (skip_self and j == i) and d[j] < shift:
                    shift = d[j]
            if shift == np.inf:
                shift = 0.0
            count = max(k - 1 if skip_self else k, 1)
            mean = 0.0  # of the shifted distances, summed in shares (no overflow even at d ~ 1e308)
            for j in range(k):
                d[j] -= shift
                if not (skip_self and j == i):
                    mean += d[j] / count
            beta = 1.0 / mean if mean > 0.0 else 1.0
            beta_min = 0.0
            beta_max = np.inf
            previous = np.inf
            for _ in range(max_iter):
                s = 0.0
                for j in range(k):
                    if skip_self and j == i:
                        p[j] = 0.0
                    else:
                        v = np.exp(-d[j] * beta)
                        p[j] = v
                        s += v
                if s == 0.0:
                    s = _EPSILON_DBL
                e1 = 0.0  # moments of beta * d under p: dimensionless, no overflow at any scale
                e2 = 0.0
                for j in range(k):
                    p[j] /= s
                    bd = d[j] * beta
                    e1 += bd * p[j]
                    e2 += bd * bd * p[j]
                entropy = np.log(s) + e1
                diff = entropy - target
                if np.abs(diff) <= tol:
                    break
                if diff > 0.0:
                    beta_min = beta
                else:
                    beta_max = beta
                slope = -(e2 - e1 * e1)  # dH / dlog(beta) = -Var_p(beta d)
                halved = np.abs(diff) < 0.5 * previous
                previous = np.abs(diff)
                candidate = -1.0
                if slope < 0.0 and halved:
                    candidate = beta * np.exp(min(max(-diff / slope, -5.0), 5.0))
                if beta_min < candidate < beta_max:
                    beta = candidate
                elif beta_max == np.inf:
                    beta *= 2.0
                elif beta_min == 0.0:
                    beta /= 2.0
                else:
                    beta = np.sqrt(beta_min) * np.sqrt(beta_max)  # (the product may overflow)
            for j in range(k):
                out[i, j] = p[j]
            betas[i] = beta


def conditional_probabilities(sq_distances, perplexity, *, skip_self=False, n_jobs=1, return_betas=False,
                              overwrite=False):
    """Row-normalised Gaussian conditionals of ``sq_distances`` at ``perplexity``
    (and, with ``return_betas``, the precision of each row).

    float32 distances give float32 conditionals (searched in double precision), anything
    else float64. With ``overwrite`` a C-contiguous float32 / float64 input receives the
    conditionals in place (no second ``(n, k)`` array)."""
    dtype = np.float32 if sq_distances.dtype == np.float32 else np.float64
    D = np.ascontiguousarray(sq_distances, dtype=dtype)
    out = D if overwrite else np.empty_like(D)
    betas = np.empty(D.shape[0])
    with thread_limit(n_jobs):
        _perplexity_search(D, bool(skip_self), float(perplexity), _PERPLEXITY_TOLERANCE, 100, out, betas)
    return (out, betas) if return_betas else out


def _index_dtype(n, k):
    """Column indices of the symmetric P of an ``(n, k)`` kNN graph (at most ``2 n k`` entries)."""
    return np.int32 if 2 * n * k < 2 ** 31 - 1 else np.int64


def symmetrize(conditional, indices, n_samples=None, *, overwrite=False):
    """``(P + P^T) / sum`` of a kNN conditional matrix, as CSR (sorted indices, no stored zeros).

    The same matrix, bit for bit, as SciPy's ``(P + P.T).tocsr()`` with ``sum_duplicates`` /
    ``sort_indices`` / ``eliminate_zeros`` (tested), built without a transpose inside two flat
    buffers of ``2 n k`` entries (P's most) whose front holds the kNN rows: numba kernels sort
    each row by column, find every pair's mirror by bisection in the other row and write the
    pair's sum into both of its entries, drop zero entries and count the pairs whose mirror is
    absent into their target rows; then the rows move to their output positions, the
    mirror-less pairs are scattered into the tails of their target rows, and each row's two
    sorted parts are merged in place. P's ``data`` / ``indices`` are the fronts of the buffers
    (the unused rest is never touched, so never resident; SciPy copies them out when they are
    under half the buffer, which takes zero conditionals: without them P has at least ``n k``
    entries). Beside them one byte per kNN entry
    is allocated (whether the pair has a mirror). float32 conditionals give a float32 P (its
    normalising sum taken in float64), anything else float64.

    With ``overwrite`` the input arrays may be reused and their contents are lost: when they
    are already such buffers' fronts (the approximate indexes' compact outputs are, see
    :func:`turbotsne.neighbors.knn_dtypes`) P is built in their memory, with no copy of the kNN
    graph beside it (1M points at k = 90: 0.7 GB less at the peak). Otherwise the rows are
    copied into new buffers. A row may not list the same neighbour twice (no index does).
    """
    n, k = conditional.shape
    n_samples = n if n_samples is None else n_samples
    if n_samples != n:
        raise ValueError(f"symmetrize needs a square kNN matrix; got {n} rows and n_samples={n_samples}.")
    index_type = _index_dtype(n, k)
    cond = _with_room(conditional, np.float32 if conditional.dtype == np.float32 else np.float64, overwrite)
    ind = _with_room(indices, index_type, overwrite)
    del conditional, indices
    has_mirror = np.zeros((n, k), dtype=np.bool_)
    own = np.empty(n, dtype=np.int64)
    counts = _sum_pairs(ind[:n * k].reshape(n, k), cond[:n * k].reshape(n, k), has_mirror, own)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    del counts
    _place_rows(ind, cond, own, indptr, k)
    _scatter_unmatched(ind, cond, has_mirror, own, indptr)
    del has_mirror
    _merge_tails(ind, cond, own, indptr, k)
    nnz = int(indptr[-1])
    cond, ind = cond[:nnz], ind[:nnz]
    cond /= max(float(cond.sum(dtype=np.float64)), _MACHINE_EPSILON)
    P = sp.csr_matrix((cond, ind, indptr.astype(index_type)), shape=(n, n))
    P.has_sorted_indices = True
    return P


def _with_room(a, dtype, overwrite):
    """A flat ``dtype`` buffer of ``2 n k`` entries whose front holds the ``(n, k)`` array ``a``
    row by row: ``a``'s own buffer when ``overwrite`` and ``a`` is such a front, else a new one
    (the part beyond ``n k`` left untouched)."""
    n, k = a.shape
    base = a.base
    if (overwrite and isinstance(a, np.ndarray) and a.dtype == dtype and a.flags.c_contiguous
            and isinstance(base, np.ndarray) and base.ndim == 1 and base.dtype == dtype
            and base.size >= 2 * n * k and base.flags.writeable and base.ctypes.data == a.ctypes.data):
        return base
    buf = np.empty(2 * n * k, dtype=dtype)
    buf[:n * k].reshape(n, k)[...] = a
    return buf


@numba.njit(cache=True, inline="always")
def _find(row, x):
    """Position of ``x`` in the sorted ``row``, or -1."""
    lo, hi = 0, row.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if row[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < row.shape[0] and row[lo] == x else -1


@numba.njit(parallel=True, cache=True)
def _sum_pairs(ind, cond, has_mirror, own):
    """In the ``(n, k)`` kNN arrays: sort each row by column, give both entries of every pair
    ``(i, j)`` / ``(j, i)`` their sum ``p_{j|i} + p_{i|j}`` (``has_mirror`` marks them; a
    self-pair is doubled), drop the zero entries (rows compacted to the front, ``own[i]``
    entries kept). Returns every output row's entries: its own plus the mirror-less pairs
    ``(j, i)`` that point at it."""
    n, k = ind.shape
    for i in numba.prange(n):
        order = np.argsort(ind[i])
        ci = ind[i][order]
        cv = cond[i][order]
        ind[i] = ci
        cond[i] = cv
    for i in numba.prange(n):
        # each pair is searched and summed once, from its lower row; the entry written in the
        # higher row belongs to this pair alone, and that row's thread does not read it (it
        # skips columns below its row), so no two threads touch the same element
        for t in range(k):
            j = ind[i, t]
            if j == i:
                has_mirror[i, t] = True
                cond[i, t] += cond[i, t]
            elif j > i:
                pos = _find(ind[j], i)
                if pos >= 0:
                    v = cond[i, t] + cond[j, pos]
                    cond[i, t] = v
                    cond[j, pos] = v
                    has_mirror[i, t] = True
                    has_mirror[j, pos] = True
    for i in numba.prange(n):
        c = 0
        for t in range(k):
            if cond[i, t] != 0.0:
                ind[i, c] = ind[i, t]
                cond[i, c] = cond[i, t]
                has_mirror[i, c] = has_mirror[i, t]
                c += 1
        own[i] = c
    counts = own.copy()
    for i in range(n):  # serial: rows receive from rows other threads would own
        for t in range(own[i]):
            if not has_mirror[i, t]:
                counts[ind[i, t]] += 1
    return counts


@numba.njit(cache=True)
def _place_rows(ind, cond, own, indptr, k):
    """Move row ``i``'s ``own[i]`` entries from ``k * i`` (the kNN layout, flattened) to
    ``indptr[i]``. Rows moving towards the front go first, in ascending order, then the rest
    in descending order: as ``own[i] <= k`` and ``own[i] <= indptr[i + 1] - indptr[i]``, no move
    overwrites entries still to be moved (serial; a copy of the kNN entries' bytes)."""
    n = own.shape[0]
    for i in range(n):
        src, dst = i * k, indptr[i]
        if dst < src:
            for t in range(own[i]):
                ind[dst + t] = ind[src + t]
                cond[dst + t] = cond[src + t]
    for i in range(n - 1, -1, -1):
        src, dst = i * k, indptr[i]
        if dst > src:
            for t in range(own[i] - 1, -1, -1):
                ind[dst + t] = ind[src + t]
                cond[dst + t] = cond[src + t]


@numba.njit(cache=True)
def _scatter_unmatched(ind, cond, has_mirror, own, indptr):
    """Each mirror-less pair ``(i, j)`` of row ``i``'s own entries as entry ``(j, i)`` behind
    row ``j``'s own entries (serial, ``i`` ascending: each row's tail comes out sorted)."""
    n = own.shape[0]
    cursor = indptr[:n] + own
    for i in range(n):
        for t in range(own[i]):
            if not has_mirror[i, t]:
                j = ind[indptr[i] + t]
                ind[cursor[j]] = i
                cond[cursor[j]] = cond[indptr[i] + t]
                cursor[j] += 1


@numba.njit(parallel=True, cache=True)
def _merge_tails(ind, cond, own, indptr, k):
    """Merge each row's two column-sorted parts (its own entries, then the tail of mirror-less
    pairs) in place: the own entries are copied into a block's buffer (at most ``k``), then
    merged from the front, where writing never overtakes the tail's next unread entry."""
    n = own.shape[0]
    for block in numba.prange((n + _ROW_BLOCK - 1) // _ROW_BLOCK):
        bi = np.empty(k, dtype=ind.dtype)
        bv = np.empty(k, dtype=cond.dtype)
        for i in range(block * _ROW_BLOCK, min(n, (block + 1) * _ROW_BLOCK)):
            lo, m, hi = indptr[i], own[i], indptr[i + 1]
            if m == hi - lo:
                continue  # no tail
            for t in range(m):
                bi[t] = ind[lo + t]
                bv[t] = cond[lo + t]
            w, a, b = lo, 0, lo + m
            while a < m:
                if b < hi and ind[b] < bi[a]:
                    ind[w] = ind[b]
                    cond[w] = cond[b]
                    b += 1
                else:
                    ind[w] = bi[a]
                    cond[w] = bv[a]
                    a += 1
                w += 1


def joint_probabilities_nn(indices, distances, perplexity, *, n_jobs=1):
    """Sparse symmetric P from kNN ``indices``/``distances`` (metric distances)."""
    cond = conditional_probabilities(np.square(distances), perplexity, n_jobs=n_jobs)
    return symmetrize(cond, np.asarray(indices, dtype=np.int64))


def joint_probabilities_dense(sq_distances, perplexity, *, n_jobs=1):
    """Dense symmetric P over all pairs (scikit-learn's exact method)."""
    cond = conditional_probabilities(sq_distances, perplexity, skip_self=True, n_jobs=n_jobs)
    P = cond + cond.T
    P /= max(P.sum(), _MACHINE_EPSILON)
    return P


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


def _check_positive(value, name, owner):
    return check_scalar(value, name, owner, float, low=0.0)


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
    #: where the conditional probabilities are computed (see :mod:`turbotsne.gpu`)
    engine = NUMBA

    @property
    def n_samples(self):
        return self.P.shape[0]

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
    def _check_common(owner, data, method, metric, metric_params, n_jobs, knn_index, verbose):
        """Validate what every neighbour-based class takes; returns the checked data."""
        check_neighbors(method, owner, NEIGHBORS_METHODS)
        check_metric(metric, metric_params, owner)
        check_n_jobs(n_jobs, owner)
        check_verbose(verbose, owner)
        if knn_index is not None and not isinstance(knn_index, KNNIndex):
            raise ValueError(f"The 'knn_index' parameter of {owner} must be a KNNIndex or None. "
                             f"Got {knn_index!r} instead.")
        return check_data(data, owner)

    def _build(self, data, method, metric, metric_params, n_jobs, random_state, knn_index, k):
        self.n_jobs = n_jobs
        self.knn_index = knn_index if knn_index is not None else get_knn_index(
            method, metric=metric, metric_params=metric_params, n_jobs=n_jobs, random_state=random_state)
        log.info("Finding %d nearest neighbours of %d points", k, data.shape[0])
        indices, distances = self.knn_index.build(data, k)
        log.info("Computing affinities")
        # the kNN arrays are dropped as soon as P no longer needs them (not kept on the object:
        # at k = 90 they took 1.4 KB per point for the whole optimisation); large compact ones
        # (int32 / float32) become P's storage: the squares, the conditionals and P are written
        # into them (P's values then float32)
        if not self.engine.is_torch:
            indices = indices.astype(_index_dtype(*indices.shape), copy=False)
        in_place = distances.dtype == np.float32  # a compact output: it becomes P's storage
        sq = np.square(distances, out=distances if in_place else None)
        del distances
        cond = self._conditional(sq, **self._params())
        if self.engine.is_torch:
            from .gpu import affinity as torch_affinity

            del sq
            self.P = torch_affinity.symmetrize(cond, indices)
        else:
            cond = np.asarray(cond, dtype=sq.dtype)
            del sq
            self.P = symmetrize(cond, indices, overwrite=True)

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
        cond = self._conditional(np.square(distances[:, :need]), **params)
        if not isinstance(cond, np.ndarray):  # a tensor from the torch engine
            cond = cond.cpu().numpy()
        P = _rows_to_csr(cond, indices[:, :need], n_ref)
        if return_distances:
            return P, indices, distances
        return P


class PerplexityBasedNN(_NeighborAffinities):
    """Gaussian affinities on the ``k = min(N - 1, 3 * perplexity)`` nearest neighbours.

    Parameters follow openTSNE's ``PerplexityBasedNN``: ``perplexity``,
    ``method`` (the ``neighbors`` choice or a :class:`~turbotsne.neighbors.KNNIndex`),
    ``metric``, ``metric_params``, ``n_jobs``, ``random_state``,
    ``k_neighbors`` ("auto" = 3 * perplexity) and ``knn_index`` (reuse a built index).
    Keyword-only ``device`` / ``backend`` (see :mod:`turbotsne.gpu`): on a torch
    engine the perplexity search and the symmetrisation run on that device
    (the neighbour index is still the one ``method`` names).
    """

    def __init__(self, data, perplexity=30, method="auto", metric="euclidean", metric_params=None,
                 n_jobs=1, random_state=None, k_neighbors="auto", knn_index=None, verbose=False, *,
                 device="cpu", backend="auto"):
        owner = type(self).__name__
        self.engine = resolve_engine(device, backend, owner)
        perplexity = _check_perplexity_value(perplexity, owner)
        k_neighbors = check_scalar(k_neighbors, "k_neighbors", owner, int, low=1, closed="left", options=("auto",))
        data = self._check_common(owner, data, method, metric, metric_params, n_jobs, knn_index, verbose)
        n = data.shape[0]
        self.perplexity = check_perplexity(perplexity, n)
        if k_neighbors == "auto":
            k = min(n - 1, int(3 * self.perplexity))
        else:
            k = min(n - 1, k_neighbors)
        self._build(data, method, metric, metric_params, n_jobs, random_state, knn_index, max(k, 1))

    def _params(self):
        return {"perplexity": self.perplexity}

    @staticmethod
    def _check_params(params, owner):
        return {"perplexity": _check_perplexity_value(params["perplexity"], owner)}

    @staticmethod
    def _k_for(params):
        return max(1, int(3 * params["perplexity"]))

    def _conditional(self, sq_distances, perplexity):
        if self.engine.is_torch:
            from .gpu import affinity as torch_affinity

            with thread_limit(self.n_jobs):
                return torch_affinity.conditional_probabilities(sq_distances, perplexity, self.engine.device)
        return conditional_probabilities(sq_distances, perplexity, n_jobs=self.n_jobs, overwrite=True)


class FixedSigmaNN(_NeighborAffinities):
    """Gaussian affinities with one bandwidth ``sigma`` for every point, on ``k`` neighbours:
    ``p_{j|i} ∝ exp(-d_ij^2 / (2 sigma^2))``."""

    def __init__(self, data, sigma, k=30, method="auto", metric="euclidean", metric_params=None,
                 n_jobs=1, random_state=None, knn_index=None, verbose=False):
        self.sigma = _check_finite_positive(sigma, "sigma", "FixedSigmaNN")
        self.k = check_scalar(k, "k", "FixedSigmaNN", int, low=1, closed="left")
        data = self._check_common("FixedSigmaNN", data, method, metric, metric_params, n_jobs, knn_index, verbose)
        k = min(data.shape[0] - 1, self.k)
        self._build(data, method, metric, metric_params, n_jobs, random_state, knn_index, max(k, 1))

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

    def __init__(self, data, k_neighbors=30, method="auto", metric="euclidean", metric_params=None,
                 n_jobs=1, random_state=None, knn_index=None, verbose=False):
        self.k_neighbors = check_scalar(k_neighbors, "k_neighbors", "Uniform", int, low=1, closed="left")
        data = self._check_common("Uniform", data, method, metric, metric_params, n_jobs, knn_index, verbose)
        k = min(data.shape[0] - 1, self.k_neighbors)
        self._build(data, method, metric, metric_params, n_jobs, random_state, knn_index, max(k, 1))

    def _k_for(self, params):
        return self.k_neighbors

    def _conditional(self, sq_distances):
        return np.full(sq_distances.shape, 1.0 / sq_distances.shape[1])


class MultiscaleMixture(_NeighborAffinities):
    """Gaussian-mixture kernel (Lee et al. 2015): per point, one precision per perplexity
    (each found by the perplexity search), ``p_{j|i} ∝ sum_h exp(-beta_h d_ij^2)``, on
    ``3 * max(perplexities)`` neighbours."""

    def __init__(self, data, perplexities, method="auto", metric="euclidean", metric_params=None,
                 n_jobs=1, random_state=None, knn_index=None, verbose=False):
        owner = type(self).__name__
        perplexities = _check_perplexities(perplexities, owner)
        data = self._check_common(owner, data, method, metric, metric_params, n_jobs, knn_index, verbose)
        n = data.shape[0]
        self.perplexities = [check_perplexity(float(p), n) for p in perplexities]
        k = min(n - 1, int(3 * max(self.perplexities)))
        self._build(data, method, metric, metric_params, n_jobs, random_state, knn_index, max(k, 1))

    def _params(self):
        return {"perplexities": self.perplexities}

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


class PerplexityBasedDense(Affinities):
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
        from sklearn.metrics import pairwise_distances

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
        self.perplexity = check_perplexity(perplexity, n)
        self.n_jobs = n_jobs
        self.metric, self.metric_params = metric, metric_params
        # pairwise_distances is not split over jobs: its chunking would make P depend on n_jobs.
        torch_metric = self.engine.is_torch and metric in ("euclidean", "sqeuclidean", "cosine") \
            and not metric_params and not sp.issparse(data)
        if torch_metric:
            from .gpu import affinity as torch_affinity

            with thread_limit(n_jobs):
                D = torch_affinity.squared_distances(data, metric, self.engine.device)
        elif metric == "precomputed":
            D = np.asarray(data, dtype=np.float64) ** 2
        elif metric == "euclidean":
            D = pairwise_distances(data, metric="euclidean", squared=True)
        else:
            D = pairwise_distances(data, metric=metric, **(metric_params or {})) ** 2
        if self.engine.is_torch:
            from .gpu import affinity as torch_affinity

            with thread_limit(n_jobs):
                self.P = torch_affinity.joint_probabilities_dense(D, self.perplexity, self.engine.device)
        else:
            self.P = joint_probabilities_dense(D, self.perplexity, n_jobs=n_jobs)
        self.knn_index = None if metric == "precomputed" else Exact(
            metric=metric, metric_params=metric_params, n_jobs=n_jobs).fit(data)

    def to_new(self, data, k=None, return_distances=False, perplexity=None):
        if self.knn_index is None:
            raise ValueError("New points cannot be related to a reference given as precomputed distances.")
        perplexity = self.perplexity if perplexity is None else perplexity
        return PerplexityBasedNN.to_new(self, data, k=k, return_distances=return_distances,
                                        perplexity=perplexity)

    _k_for = staticmethod(PerplexityBasedNN._k_for)
    _check_params = staticmethod(PerplexityBasedNN._check_params)

    def _params(self):
        return {"perplexity": self.perplexity}

    _conditional = PerplexityBasedNN._conditional


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
