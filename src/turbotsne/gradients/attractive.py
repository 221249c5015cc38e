"""Attractive forces over a sparse, symmetric P (CSR), shared by every CPU backend.

Row ``i`` of the output is written only by the thread that owns row ``i``, so
there is no race and no dependence on the thread count: with P symmetric the
attraction on point ``i`` is a sum over row ``i`` of P alone.
"""
import numba
import numpy as np

from .._config import FASTMATH


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def attractive_forces(indptr, indices, data, Y, dof, exaggeration, out, log_w):
    """Write ``exaggeration * sum_j p_ij w_ij^(1/dof) (y_i - y_j)`` into ``out``.

    ``log_w`` (length n) receives, per row, ``sum_j p_ij log w_ij``; the KL
    divergence needs its sum. Returns nothing; the caller owns every array.
    """
    n, d = Y.shape
    unit_dof = dof == 1.0
    for i in numba.prange(n):
        for k in range(d):
            out[i, k] = 0.0
        row_log = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            d2 = 0.0
            for k in range(d):
                t = Y[i, k] - Y[j, k]
                d2 += t * t
            if unit_dof:
                w_inv = 1.0 / (1.0 + d2)  # w^(1/dof) with dof = 1
                row_log += data[jj] * np.log(w_inv)
            else:
                base = 1.0 + d2 / dof
                w_inv = 1.0 / base
                row_log -= data[jj] * dof * np.log(base)
            coeff = exaggeration * data[jj] * w_inv
            for k in range(d):
                out[i, k] += coeff * (Y[i, k] - Y[j, k])
        log_w[i] = row_log


@numba.njit(fastmath=FASTMATH, cache=True)
def entropy_term(data):
    """``sum p log p`` over the stored entries of P (constant per optimisation)."""
    s = 0.0
    for v in data:
        if v > 0.0:
            s += v * np.log(v)
    return s
