"""Attractive forces over a sparse P (CSR), shared by every CPU backend.

Row ``i`` of the output is written only by the thread that owns row ``i``, so
there is no race and no dependence on the thread count: with P symmetric the
attraction on point ``i`` is a sum over row ``i`` of P alone. The same kernel
serves new points attracted by a fixed reference (``R`` the reference, P of
shape ``(n_new, n_ref)``); for a plain embedding ``R`` is ``Y`` itself.

The KL divergence's ``sum p log w`` term is a separate pass
(:func:`attractive_log_terms`), run only on the iterations that report KL: the
force kernel is then the same code on every iteration, so (with fastmath's
reassociation) the trajectory does not depend on when KL was evaluated.

The approximate methods (whose repulsion errs by ~1e-3) use the single-precision kernel
(:func:`attractive_forces_single`, vectorised); the exact method the float64 one. The
measurements behind the kernels' choices: docs/design/attraction.md.
"""
import numba
import numpy as np

from .._config import FASTMATH, in_row_ranges

#: the float64 kernel's flags: FASTMATH without reassociation, which keeps LLVM from
#: vectorising the row loop into gathers of R[j] (slower than the scalar loop on some CPUs).
FORCE_FASTMATH = FASTMATH - {"reassoc"}
#: positions in P and neighbour ids as unsigned integers in the row loops: numba then emits no
#: negative-index wraparound for ``indices[jj]``, ``data[jj]`` and ``R[j]`` (CSR positions and
#: ids are never negative)
_U = numba.uint64


@numba.njit(cache=True, inline="always")
def _row_span(indptr, i):
    """Row ``i``'s entries as unsigned ``(start, pairs, stop)``: ``start .. pairs - 1`` two at
    a time, ``pairs .. stop - 1`` (one entry or none) alone."""
    start = _U(indptr[i])
    stop = _U(indptr[i + 1])
    return start, start + (stop - start) // _U(2) * _U(2), stop


@numba.njit(fastmath=FORCE_FASTMATH, cache=True, inline="always")
def _pair_2d(x0, x1, R, j, p, inv_dof):
    t0 = x0 - R[j, 0]
    t1 = x1 - R[j, 1]
    c = p / (1.0 + (t0 * t0 + t1 * t1) * inv_dof)
    return c * t0, c * t1


@numba.njit(fastmath=FORCE_FASTMATH, cache=True, inline="always")
def _row_2d(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out):
    # the hot case (2-D): scalar accumulators, no branch in the loop; two interleaved sums
    # (even and odd entries of the row, added at the end: a fixed order, so still independent
    # of the threads) halve the dependency chain of the additions
    x0 = Y[i, 0]
    x1 = Y[i, 1]
    a0 = 0.0
    a1 = 0.0
    b0 = 0.0
    b1 = 0.0
    start, pairs, stop = _row_span(indptr, i)
    for jj in range(start, pairs, _U(2)):
        f0, f1 = _pair_2d(x0, x1, R, _U(indices[jj]), data[jj], inv_dof)
        g0, g1 = _pair_2d(x0, x1, R, _U(indices[jj + _U(1)]), data[jj + _U(1)], inv_dof)
        a0 += f0
        a1 += f1
        b0 += g0
        b1 += g1
    if pairs < stop:
        f0, f1 = _pair_2d(x0, x1, R, _U(indices[pairs]), data[pairs], inv_dof)
        a0 += f0
        a1 += f1
    out[i, 0] = exaggeration * (a0 + b0)
    out[i, 1] = exaggeration * (a1 + b1)


@numba.njit(fastmath=FORCE_FASTMATH, cache=True, inline="always")
def _pair_3d(x0, x1, x2, R, j, p, inv_dof):
    t0 = x0 - R[j, 0]
    t1 = x1 - R[j, 1]
    t2 = x2 - R[j, 2]
    c = p / (1.0 + (t0 * t0 + t1 * t1 + t2 * t2) * inv_dof)
    return c * t0, c * t1, c * t2


@numba.njit(fastmath=FORCE_FASTMATH, cache=True, inline="always")
def _row_3d(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out):
    # 3-D, likewise (faster than the generic loop below, which accumulates into ``out``)
    x0 = Y[i, 0]
    x1 = Y[i, 1]
    x2 = Y[i, 2]
    a0 = 0.0
    a1 = 0.0
    a2 = 0.0
    b0 = 0.0
    b1 = 0.0
    b2 = 0.0
    start, pairs, stop = _row_span(indptr, i)
    for jj in range(start, pairs, _U(2)):
        f0, f1, f2 = _pair_3d(x0, x1, x2, R, _U(indices[jj]), data[jj], inv_dof)
        g0, g1, g2 = _pair_3d(x0, x1, x2, R, _U(indices[jj + _U(1)]), data[jj + _U(1)], inv_dof)
        a0 += f0
        a1 += f1
        a2 += f2
        b0 += g0
        b1 += g1
        b2 += g2
    if pairs < stop:
        f0, f1, f2 = _pair_3d(x0, x1, x2, R, _U(indices[pairs]), data[pairs], inv_dof)
        a0 += f0
        a1 += f1
        a2 += f2
    out[i, 0] = exaggeration * (a0 + b0)
    out[i, 1] = exaggeration * (a1 + b1)
    out[i, 2] = exaggeration * (a2 + b2)


@numba.njit(fastmath=FORCE_FASTMATH, cache=True, inline="always")
def _row_any(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out):
    # any dimension count, accumulating into ``out`` (float64 arithmetic, also over float32
    # ``data`` / ``R``: the single-precision kernel's 1-D rows come here)
    d = Y.shape[1]
    for k in range(d):
        out[i, k] = 0.0
    for jj in range(indptr[i], indptr[i + 1]):
        j = indices[jj]
        d2 = 0.0
        for k in range(d):
            t = Y[i, k] - R[j, k]
            d2 += t * t
        coeff = exaggeration * data[jj] / (1.0 + d2 * inv_dof)
        for k in range(d):
            out[i, k] += coeff * (Y[i, k] - R[j, k])


@numba.njit(parallel=True, fastmath=FORCE_FASTMATH, cache=True)
def _attractive_2d(indptr, indices, data, Y, R, dof, exaggeration, out):
    inv_dof = 1.0 / dof
    for i in numba.prange(Y.shape[0]):
        _row_2d(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out)


@numba.njit(parallel=True, fastmath=FORCE_FASTMATH, cache=True)
def _attractive_3d(indptr, indices, data, Y, R, dof, exaggeration, out):
    inv_dof = 1.0 / dof
    for i in numba.prange(Y.shape[0]):
        _row_3d(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out)


@numba.njit(parallel=True, fastmath=FORCE_FASTMATH, cache=True)
def _attractive_any(indptr, indices, data, Y, R, dof, exaggeration, out):
    inv_dof = 1.0 / dof
    for i in numba.prange(Y.shape[0]):
        _row_any(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out)


def attractive_forces(indptr, indices, data, Y, R, dof, exaggeration, out):
    """Write ``exaggeration * sum_j p_ij w_ij^(1/dof) (y_i - r_j)`` into ``out`` (one kernel per
    dimension count: a run compiles only the one it uses)."""
    d = Y.shape[1]
    kernel = _attractive_2d if d == 2 else _attractive_3d if d == 3 else _attractive_any
    kernel(indptr, indices, data, Y, R, dof, exaggeration, out)


_F32 = np.float32


@numba.njit(fastmath=FASTMATH, cache=True, inline="always")
def _row_2d_single(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out):
    x0 = _F32(Y[i, 0])
    x1 = _F32(Y[i, 1])
    a0 = _F32(0.0)
    a1 = _F32(0.0)
    for jj in range(_U(indptr[i]), _U(indptr[i + 1])):
        j = _U(indices[jj])
        t0 = x0 - R[j, 0]
        t1 = x1 - R[j, 1]
        c = data[jj] / (_F32(1.0) + (t0 * t0 + t1 * t1) * inv_dof)
        a0 += c * t0
        a1 += c * t1
    out[i, 0] = exaggeration * np.float64(a0)
    out[i, 1] = exaggeration * np.float64(a1)


@numba.njit(fastmath=FASTMATH, cache=True, inline="always")
def _row_3d_single(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out):
    x0 = _F32(Y[i, 0])
    x1 = _F32(Y[i, 1])
    x2 = _F32(Y[i, 2])
    a0 = _F32(0.0)
    a1 = _F32(0.0)
    a2 = _F32(0.0)
    for jj in range(_U(indptr[i]), _U(indptr[i + 1])):
        j = _U(indices[jj])
        t0 = x0 - R[j, 0]
        t1 = x1 - R[j, 1]
        t2 = x2 - R[j, 2]
        c = data[jj] / (_F32(1.0) + (t0 * t0 + t1 * t1 + t2 * t2) * inv_dof)
        a0 += c * t0
        a1 += c * t1
        a2 += c * t2
    out[i, 0] = exaggeration * np.float64(a0)
    out[i, 1] = exaggeration * np.float64(a1)
    out[i, 2] = exaggeration * np.float64(a2)


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _attractive_single_2d(indptr, indices, data, Y, R, dof, exaggeration, out):
    inv_dof = _F32(1.0 / dof)
    for i in numba.prange(Y.shape[0]):
        _row_2d_single(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out)


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _attractive_single_3d(indptr, indices, data, Y, R, dof, exaggeration, out):
    inv_dof = _F32(1.0 / dof)
    for i in numba.prange(Y.shape[0]):
        _row_3d_single(indptr, indices, data, Y, R, inv_dof, exaggeration, i, out)


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _attractive_single_any(indptr, indices, data, Y, R, dof, exaggeration, out):
    for i in numba.prange(Y.shape[0]):
        _row_any(indptr, indices, data, Y, R, 1.0 / dof, exaggeration, i, out)


def attractive_forces_single(indptr, indices, data, Y, R, dof, exaggeration, out):
    """:func:`attractive_forces` in single precision, for the approximate methods: ``data``
    (P's values) and ``R`` float32, the arithmetic float32 in 2-D and 3-D (other dimension
    counts, i.e. 1-D FFT embeddings, take the shared generic row loop, float64 arithmetic over
    the float32 inputs), ``out`` float64.

    Compiled *with* reassociation, so that LLVM vectorises the 2-D and 3-D row loops. The
    forces differ from the float64 kernel's by float32 rounding of the positions (relative
    to the largest force, a few 1e-5 on a finished embedding ~200 units wide), far below the FFT
    and Barnes-Hut repulsions' ~1e-3. The reduction order per row is fixed at compile time,
    so the result does not depend on the thread count.
    """
    d = Y.shape[1]
    kernel = _attractive_single_2d if d == 2 else _attractive_single_3d if d == 3 else _attractive_single_any
    kernel(indptr, indices, data, Y, R, dof, exaggeration, out)


def attractive_log_terms(indptr, indices, data, Y, R, dof, log_w):
    """Per row, ``log_w[i] = sum_j p_ij log w_ij`` (the KL divergence needs its sum), on the
    threads numba is set to use (the optimiser's ``thread_limit``): called once per KL
    evaluation, so a thread pool over a serial kernel, not a parallel region to compile."""
    in_row_ranges(lambda t, lo, hi: _log_term_rows(indptr, indices, data, Y, R, dof, log_w, lo, hi),
                  Y.shape[0], numba.get_num_threads())


@numba.njit(fastmath=FASTMATH, error_model="numpy", nogil=True, cache=True)
def _log_term_rows(indptr, indices, data, Y, R, dof, log_w, lo, hi):
    """:func:`attractive_log_terms` for the rows ``lo <= i < hi``."""
    d = Y.shape[1]
    for i in range(lo, hi):
        s = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            d2 = 0.0
            for k in range(d):
                t = Y[i, k] - R[j, k]
                d2 += t * t
            s -= data[jj] * dof * np.log1p(d2 / dof)
        log_w[i] = s


@numba.njit(fastmath=FASTMATH, cache=True)
def entropy_term(data):
    """``sum p log p`` over the stored entries of P (constant per optimisation)."""
    s = 0.0
    for x in data:
        v = np.float64(x)  # float32 P: the logarithm in double precision
        if v > 0.0:
            s += v * np.log(v)
    return s
