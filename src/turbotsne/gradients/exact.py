"""Exact O(N^2) gradient and KL divergence in any dimension and for any ``dof``.

This is the oracle every other backend is tested against. Every thread owns
whole rows: row ``i`` visits all ``j`` (no symmetric halving, so no writes into
rows of other threads), and per-row partial sums are reduced in a fixed order,
so the result does not depend on the number of threads.
"""
import numba
import numpy as np

from .._config import FASTMATH


def exact_repulsion(Y, dof, out, row_z):
    """Unnormalised repulsion ``r_i = sum_{j != i} w_ij^((dof+1)/dof) (y_i - y_j)``.

    Writes ``r`` into ``out`` and the per-row sums of ``w_ij`` into ``row_z``;
    returns ``Z = sum_{i != j} w_ij`` (summed in row order: thread-count independent).
    """
    _pairwise_repulsion(Y, Y, dof, out, row_z, True)
    return float(row_z.sum())


@numba.njit(fastmath=FASTMATH, cache=True, inline="always")
def _dense_row_2d_cauchy(P, Y, exaggeration, i, out, rep, row_z):
    # the hot case (2-D, dof = 1) with scalar accumulators and no branch in the loop, so
    # that it vectorises; the j == i term adds w_ii = 1 to z and nothing else
    x0 = Y[i, 0]
    x1 = Y[i, 1]
    a0 = 0.0
    a1 = 0.0
    r0 = 0.0
    r1 = 0.0
    z = 0.0
    for j in range(Y.shape[0]):
        t0 = x0 - Y[j, 0]
        t1 = x1 - Y[j, 1]
        w = 1.0 / (1.0 + t0 * t0 + t1 * t1)
        z += w
        a = P[i, j] * w
        r = w * w
        a0 += a * t0
        a1 += a * t1
        r0 += r * t0
        r1 += r * t1
    out[i, 0] = exaggeration * a0
    out[i, 1] = exaggeration * a1
    rep[i, 0] = r0
    rep[i, 1] = r1
    row_z[i] = z - 1.0


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def exact_dense_gradient(P, Y, dof, exaggeration, out, rep, row_z):
    """Fused attraction and repulsion for a dense, symmetric P (sum 1).

    Writes the full gradient into ``out`` (``rep`` is scratch of the same
    shape); ``row_z`` receives the per-row sums of ``w_ij``.
    Returns ``Z``.
    """
    n, d = Y.shape
    unit_dof = dof == 1.0
    for i in numba.prange(n):
        if d == 2 and unit_dof:
            _dense_row_2d_cauchy(P, Y, exaggeration, i, out, rep, row_z)
            continue
        for k in range(d):
            out[i, k] = 0.0
            rep[i, k] = 0.0
        z = -1.0  # the j == i term below adds w_ii = 1 (and no force): no branch, so the loop vectorises
        for j in range(n):
            d2 = 0.0
            for k in range(d):
                t = Y[i, k] - Y[j, k]
                d2 += t * t
            if unit_dof:
                w_inv = 1.0 / (1.0 + d2)
                w = w_inv
            else:
                base = 1.0 + d2 / dof
                w_inv = 1.0 / base
                w = base ** (-dof)
            z += w
            a = exaggeration * P[i, j] * w_inv
            r = w * w_inv
            for k in range(d):
                t = Y[i, k] - Y[j, k]
                out[i, k] += a * t
                rep[i, k] += r * t
        row_z[i] = z
    total = 0.0
    for i in range(n):
        total += row_z[i]
    inv = 1.0 / total
    for i in numba.prange(n):
        for k in range(d):
            out[i, k] -= rep[i, k] * inv
    return total


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def dense_log_terms(P, Y, dof, log_w):
    """Per row, ``log_w[i] = sum_j p_ij log w_ij`` for a dense P (KL iterations only)."""
    n, d = Y.shape
    for i in numba.prange(n):
        s = 0.0
        for j in range(n):
            if P[i, j] > 0.0:
                d2 = 0.0
                for k in range(d):
                    t = Y[i, k] - Y[j, k]
                    d2 += t * t
                s -= P[i, j] * dof * np.log1p(d2 / dof)
        log_w[i] = s


class ExactRepulsion:
    """Repulsion by visiting all pairs; a callable ``(Y, dof, out) -> Z``."""

    name = "exact"

    def __init__(self):
        self._row_z = None

    def __call__(self, Y, dof, out):
        n = Y.shape[0]
        if self._row_z is None or self._row_z.shape[0] != n:
            self._row_z = np.empty(n, dtype=np.float64)
        return exact_repulsion(Y, float(dof), out, self._row_z)


@numba.njit(fastmath=FASTMATH, cache=True, inline="always")
def _repulsion_row_2d_cauchy(Y, R, i, out, z, skip_self):
    # the hot case (2-D, dof = 1) with scalar accumulators and no branch in the loop
    x0 = Y[i, 0]
    x1 = Y[i, 1]
    r0 = 0.0
    r1 = 0.0
    zi = 0.0
    for j in range(R.shape[0]):
        t0 = x0 - R[j, 0]
        t1 = x1 - R[j, 1]
        w = 1.0 / (1.0 + t0 * t0 + t1 * t1)
        zi += w
        f = w * w
        r0 += f * t0
        r1 += f * t1
    out[i, 0] = r0
    out[i, 1] = r1
    z[i] = zi - 1.0 if skip_self else zi


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _pairwise_repulsion(Y, R, dof, out, z, skip_self):
    """Repulsion of the points ``Y`` by all points ``R``, one thread per row of ``Y``.

    Writes ``out[i] = sum_j w_ij^((dof+1)/dof) (y_i - r_j)`` and
    ``z[i] = sum_j w_ij``; with ``skip_self`` (``R`` is ``Y``) the pair ``j = i``
    is left out.
    """
    n, d = Y.shape
    m = R.shape[0]
    unit_dof = dof == 1.0
    for i in numba.prange(n):
        if d == 2 and unit_dof:
            _repulsion_row_2d_cauchy(Y, R, i, out, z, skip_self)
            continue
        for k in range(d):
            out[i, k] = 0.0
        # with skip_self the j == i term adds w_ii = 1 to z and nothing to the force: subtract it
        # instead of branching, so that the loop vectorises
        zi = -1.0 if skip_self else 0.0
        for j in range(m):
            d2 = 0.0
            for k in range(d):
                t = Y[i, k] - R[j, k]
                d2 += t * t
            if unit_dof:
                w = 1.0 / (1.0 + d2)
                f = w * w
            else:
                base = 1.0 + d2 / dof
                w = base ** (-dof)
                f = w / base
            zi += w
            for k in range(d):
                out[i, k] += f * (Y[i, k] - R[j, k])
        z[i] = zi


def exact_reference_repulsion(Y, R, dof, out, z):
    """Repulsion of new points ``Y`` by a fixed reference ``R`` (no self pairs): per point
    ``out[i] = sum_j w_ij^((dof+1)/dof) (y_i - r_j)`` and ``z[i] = sum_j w_ij``."""
    _pairwise_repulsion(Y, R, dof, out, z, False)


class ExactReferenceRepulsion:
    """Repulsion of new points by a fixed reference embedding, over all pairs.

    A callable ``(Y_new, dof, out, z) -> None``; see :func:`exact_reference_repulsion`.
    """

    name = "exact"

    def __init__(self, reference):
        self.reference = np.ascontiguousarray(reference, dtype=np.float64)

    def __call__(self, Y, dof, out, z):
        exact_reference_repulsion(Y, self.reference, float(dof), out, z)
