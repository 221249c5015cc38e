"""Numba kernels of the affinities: the perplexity search and the symmetrisation of kNN conditionals.

:func:`conditional_probabilities` finds, per row of squared distances, the Gaussian
precision whose entropy is within :data:`PERPLEXITY_TOLERANCE` nats of
``log(perplexity)`` (at most :data:`PERPLEXITY_MAX_ITER` steps; scikit-learn's and openTSNE's
stopping rule) by safeguarded Newton steps on ``log(beta)``, and returns the row-normalised
conditionals. :func:`symmetrize` turns kNN conditionals into ``(P + P^T) / sum`` as CSR, in
the kNN arrays' own memory when asked. The row kernels are serial ``nogil`` functions over a
range of rows that a thread pool runs (:func:`~turbotsne._config.in_row_ranges`); rows are
independent, so results do not depend on the thread count.
"""
from __future__ import annotations

import numba
import numpy as np
import scipy.sparse as sp

from ._config import FASTMATH, effective_n_jobs, in_row_ranges

_EPSILON_DBL = 1e-8
#: the perplexity search stops when the entropy is within this many nats of log(perplexity) ...
PERPLEXITY_TOLERANCE = 1e-5
#: ... or after this many steps (scikit-learn's and openTSNE's rule; the torch engine uses the same)
PERPLEXITY_MAX_ITER = 100
MACHINE_EPSILON = np.finfo(np.double).eps


@numba.njit(fastmath=FASTMATH, error_model="numpy", nogil=True, cache=True)
def _search_rows(sq_distances, skip_self, perplexity, tol, max_iter, out, betas, lo, hi, d, p):
    """Conditional probabilities ``p_{j|i}`` of rows ``lo .. hi - 1`` (``d``, ``p``: row buffers
    of ``k`` entries, one pair per thread, from the caller: an allocation in a kernel compiles
    numba's ``np.empty`` on the first run; two arrays, so that the compiler knows them apart).

    ``sq_distances`` is ``(n, k)``; when ``skip_self`` the matrix is square and
    its diagonal is left out (scikit-learn's dense exact path). ``betas[i]``
    receives the precision found for row ``i``. Each row is copied into a float64
    buffer before its search, so ``out`` may be ``sq_distances`` itself (in place), and
    float32 distances are searched in double precision. Rows are independent: callers split
    them over threads (:func:`~turbotsne._config.in_row_ranges`); numpy's error model (a
    division by zero gives inf or NaN, no exception), as numba compiled the parallel loop this
    replaces.

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
    k = sq_distances.shape[1]
    target = np.log(perplexity)
    for i in range(lo, hi):
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
        count = k - 1 if skip_self else k
        count = 1 if 1 > count else count  # max(count, 1)
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
                # the step clipped to [-5, 5], as min(max(step, -5), 5) selects (conditional
                # expressions: numba's min / max compile routines of their own)
                step = -diff / slope
                step = -5.0 if -5.0 > step else step
                step = 5.0 if 5.0 < step else step
                candidate = beta * np.exp(step)
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
    threads = effective_n_jobs(n_jobs)
    work_d, work_p = np.empty((threads, D.shape[1])), np.empty((threads, D.shape[1]))
    skip_self, perplexity = bool(skip_self), float(perplexity)
    in_row_ranges(lambda t, lo, hi: _search_rows(D, skip_self, perplexity, PERPLEXITY_TOLERANCE, PERPLEXITY_MAX_ITER,
                                                 out, betas, lo, hi, work_d[t], work_p[t]),
                  D.shape[0], threads)
    return (out, betas) if return_betas else out


def index_dtype(n, k):
    """Column indices of the symmetric P of an ``(n, k)`` kNN graph (at most ``2 n k`` entries)."""
    return np.int32 if 2 * n * k < 2 ** 31 - 1 else np.int64


def symmetrize(conditional, indices, n_samples=None, *, overwrite=False, n_jobs=1):
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
    copied into new buffers. A row may not list the same neighbour twice (no index does). The
    sorting and the pair sums run on ``n_jobs`` threads (the same P for any count).
    """
    n, k = conditional.shape
    n_samples = n if n_samples is None else n_samples
    if n_samples != n:
        raise ValueError(f"symmetrize needs a square kNN matrix; got {n} rows and n_samples={n_samples}.")
    index_type = index_dtype(n, k)
    cond = _with_room(conditional, np.float32 if conditional.dtype == np.float32 else np.float64, overwrite)
    ind = _with_room(indices, index_type, overwrite)
    del conditional, indices
    has_mirror = np.zeros((n, k), dtype=np.bool_)
    own = np.empty(n, dtype=np.int64)
    ind2, cond2 = ind[:n * k].reshape(n, k), cond[:n * k].reshape(n, k)
    _sort_rows(ind2, cond2, n_jobs)
    counts = np.empty(n, dtype=np.int64)  # (the kernels allocate nothing: see _compact_rows)
    in_row_ranges(lambda t, lo, hi: _sum_pair_rows(ind2, cond2, has_mirror, lo, hi), n, effective_n_jobs(n_jobs))
    _compact_rows(ind2, cond2, has_mirror, own, counts)
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    _place_rows(ind, cond, own, indptr, k)
    _scatter_unmatched(ind, cond, has_mirror, own, indptr, counts)  # counts' memory as its cursors
    del has_mirror, counts
    _merge_tails(ind, cond, own, indptr, np.empty(k, dtype=ind.dtype), np.empty(k, dtype=cond.dtype))
    nnz = int(indptr[-1])
    cond, ind = cond[:nnz], ind[:nnz]
    cond /= max(float(cond.sum(dtype=np.float64)), MACHINE_EPSILON)
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


#: kNN rows of at most this many columns are sorted by insertion, longer ones by ``np.argsort``:
#: insertion allocates nothing and is the faster one up to about 200 columns (k = 3 * perplexity),
#: and it compiles in a tenth of the time (``np.argsort`` takes seconds on the first run)
_INSERTION_SORT_MAX = 150


@numba.njit(nogil=True, cache=True)
def _sort_rows_insertion(ind, cond, lo, hi):
    """Sort rows ``lo .. hi - 1`` of the ``(n, k)`` kNN arrays by column, in place (insertion sort)."""
    k = ind.shape[1]
    for i in range(lo, hi):
        for j in range(1, k):
            x = ind[i, j]
            v = cond[i, j]
            t = j - 1
            while t >= 0 and ind[i, t] > x:
                ind[i, t + 1] = ind[i, t]
                cond[i, t + 1] = cond[i, t]
                t -= 1
            ind[i, t + 1] = x
            cond[i, t + 1] = v


@numba.njit(nogil=True, cache=True)
def _sort_rows_argsort(ind, cond, lo, hi):
    """Sort rows ``lo .. hi - 1`` of the ``(n, k)`` kNN arrays by column, in place (``np.argsort``)."""
    k = ind.shape[1]
    for i in range(lo, hi):
        order = np.argsort(ind[i])
        ci = ind[i][order]
        cv = cond[i][order]
        for t in range(k):
            ind[i, t] = ci[t]
            cond[i, t] = cv[t]


def _sort_rows(ind, cond, n_jobs=1):
    """Sort each row of the ``(n, k)`` kNN arrays by column, in place (a row lists no column twice,
    so either kernel gives the same arrays), on ``n_jobs`` threads."""
    kernel = _sort_rows_insertion if ind.shape[1] <= _INSERTION_SORT_MAX else _sort_rows_argsort
    in_row_ranges(lambda t, lo, hi: kernel(ind, cond, lo, hi), ind.shape[0], effective_n_jobs(n_jobs))


@numba.njit(nogil=True, cache=True)
def _sum_pair_rows(ind, cond, has_mirror, lo, hi):
    """In the ``(n, k)`` kNN arrays, each row sorted by column: give both entries of every pair
    ``(i, j)`` / ``(j, i)`` with ``lo <= i < hi`` and ``i < j`` their sum ``p_{j|i} + p_{i|j}``
    (``has_mirror`` marks them; a self-pair is doubled). Each pair is searched and summed once,
    from its lower row; the entry written in the higher row belongs to this pair alone, and
    that row's own call does not read it (it skips columns below its row), so calls on
    disjoint row ranges may run at once and touch no element in common."""
    k = ind.shape[1]
    for i in range(lo, hi):
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


@numba.njit(cache=True)
def _compact_rows(ind, cond, has_mirror, own, counts):
    """Drop the zero entries of the kNN rows (rows compacted to the front, ``own[i]`` entries
    kept); ``counts[i]`` receives every output row's entries: its own plus the mirror-less pairs
    ``(j, i)`` that point at it. Serial: a memory-bound pass once per P, and rows receive counts
    from other rows. These kernels allocate nothing (an allocation in a kernel compiles numba's
    ``np.empty`` on the first run): the caller hands in every array."""
    n, k = ind.shape
    for i in range(n):
        c = 0
        for t in range(k):
            if cond[i, t] != 0.0:
                ind[i, c] = ind[i, t]
                cond[i, c] = cond[i, t]
                has_mirror[i, c] = has_mirror[i, t]
                c += 1
        own[i] = c
        counts[i] = c
    for i in range(n):
        for t in range(own[i]):
            if not has_mirror[i, t]:
                counts[ind[i, t]] += 1


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
def _scatter_unmatched(ind, cond, has_mirror, own, indptr, cursor):
    """Each mirror-less pair ``(i, j)`` of row ``i``'s own entries as entry ``(j, i)`` behind
    row ``j``'s own entries (serial, ``i`` ascending: each row's tail comes out sorted);
    ``cursor`` (``n`` int64, overwritten) holds each row's next free position."""
    n = own.shape[0]
    # indptr[:n] + own as a loop: an array expression would compile numba's broadcasting
    # machinery into this kernel (~0.2 s more on the first run)
    for i in range(n):
        cursor[i] = indptr[i] + own[i]
    for i in range(n):
        for t in range(own[i]):
            if not has_mirror[i, t]:
                j = ind[indptr[i] + t]
                ind[cursor[j]] = i
                cond[cursor[j]] = cond[indptr[i] + t]
                cursor[j] += 1


@numba.njit(cache=True)
def _merge_tails(ind, cond, own, indptr, bi, bv):
    """Merge each row's two column-sorted parts (its own entries, then the tail of mirror-less
    pairs) in place: the own entries are copied into the buffers ``bi`` / ``bv`` (``k`` entries
    of ``ind``'s / ``cond``'s dtype), then merged from the front, where writing never overtakes
    the tail's next unread entry (serial: a memory-bound pass once per P, cheaper to run on one
    thread than a parallel region is to compile)."""
    n = own.shape[0]
    for i in range(n):
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
    P /= max(P.sum(), MACHINE_EPSILON)
    return P
