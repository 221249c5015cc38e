"""Attractive forces over a sparse P (CSR), shared by every CPU backend.

Row ``i`` of the output is written only by the thread that owns row ``i``, so
there is no race and no dependence on the thread count: with P symmetric the
attraction on point ``i`` is a sum over row ``i`` of P alone. The same kernel
serves new points attracted by a fixed reference (``R`` the reference, P of
shape ``(n_new, n_ref)``); for a plain embedding ``R`` is ``Y`` itself.
"""
import numba
import numpy as np

from .._config import FASTMATH


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def attractive_forces(indptr, indices, data, Y, R, dof, exaggeration, out, log_w, with_kl):
    """Write ``exaggeration * sum_j p_ij w_ij^(1/dof) (y_i - r_j)`` into ``out``.

    When ``with_kl``, ``log_w`` (length n) receives, per row,
    ``sum_j p_ij log w_ij`` (the KL divergence needs its sum; a log per
    entry, so only on KL iterations). Returns nothing; the caller owns every array.
    """
    n, d = Y.shape
    for i in numba.prange(n):
        for k in range(d):
            out[i, k] = 0.0
        row_log = 0.0
        for jj in range(indptr[i], indptr[i + 1]):
            j = indices[jj]
            d2 = 0.0
            for k in range(d):
                t = Y[i, k] - R[j, k]
                d2 += t * t
            w_inv = 1.0 / (1.0 + d2 / dof)  # w^(1/dof)
            if with_kl:
                row_log += data[jj] * dof * np.log(w_inv)
            coeff = exaggeration * data[jj] * w_inv
            for k in range(d):
                out[i, k] += coeff * (Y[i, k] - R[j, k])
        log_w[i] = row_log


@numba.njit(fastmath=FASTMATH, cache=True)
def entropy_term(data):
    """``sum p log p`` over the stored entries of P (constant per optimisation)."""
    s = 0.0
    for v in data:
        if v > 0.0:
            s += v * np.log(v)
    return s
