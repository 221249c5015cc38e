"""Slow, obviously correct NumPy references that the kernels are tested against.

Conventions (the whole library follows them):

* the low-dimensional kernel with ``dof`` = alpha is
  ``w_ij = (1 + |y_i - y_j|^2 / alpha) ** -alpha`` (Kobak et al. 2019; alpha = 1
  is the Cauchy kernel of standard t-SNE), ``Z = sum_{i != j} w_ij`` and
  ``q_ij = w_ij / Z``;
* the gradient is openTSNE's scaling of dKL/dy (a quarter of the true
  derivative, so that ``learning_rate = N / exaggeration`` is the right step):
  ``g_i = sum_j (exaggeration * p_ij - q_ij) * w_ij ** (1 / alpha) * (y_i - y_j)``;
* the unnormalised repulsion is ``r_i = sum_j w_ij ** ((alpha + 1) / alpha) * (y_i - y_j)``,
  so that the repulsive part of ``g_i`` is ``r_i / Z``;
* KL divergence is ``sum_ij p_ij log(p_ij / q_ij)`` of the un-exaggerated P.
"""
import numpy as np


def pairwise_sq(Y):
    Y = np.asarray(Y, dtype=np.float64)
    diff = Y[:, None, :] - Y[None, :, :]
    return diff, np.einsum("ijk,ijk->ij", diff, diff)


def kernel(d2, dof):
    return (1.0 + d2 / dof) ** (-dof)


def repulsion(Y, dof=1.0):
    """Return (r, Z): the unnormalised repulsive forces and the normaliser."""
    diff, d2 = pairwise_sq(Y)
    w = kernel(d2, dof)
    np.fill_diagonal(w, 0.0)
    Z = w.sum()
    r = np.einsum("ij,ijk->ik", w ** ((dof + 1.0) / dof), diff)
    return r, Z


def gradient(Y, P, dof=1.0, exaggeration=1.0):
    """Full gradient for a dense symmetric P (sum 1) in openTSNE's scaling."""
    P = np.asarray(P.toarray() if hasattr(P, "toarray") else P, dtype=np.float64)
    diff, d2 = pairwise_sq(Y)
    w = kernel(d2, dof)
    np.fill_diagonal(w, 0.0)
    Z = w.sum()
    q = w / Z
    coeff = (exaggeration * P - q) * w ** (1.0 / dof)
    np.fill_diagonal(coeff, 0.0)
    return np.einsum("ij,ijk->ik", coeff, diff)


def kl_divergence(Y, P, dof=1.0):
    """KL(P || Q) for a dense symmetric P that sums to 1."""
    P = np.asarray(P.toarray() if hasattr(P, "toarray") else P, dtype=np.float64)
    _, d2 = pairwise_sq(Y)
    w = kernel(d2, dof)
    np.fill_diagonal(w, 0.0)
    q = w / w.sum()
    mask = P > 0
    return float(np.sum(P[mask] * np.log(P[mask] / q[mask])))


def conditional_probabilities(sq_distances, perplexity, tol=1e-5, max_iter=100):
    """Row-wise Gaussian conditionals by bisection on the precision, in the way
    scikit-learn's ``_binary_search_perplexity`` does it (entropy in nats).

    ``sq_distances`` has one row per point over its candidate neighbours
    (the point itself excluded).
    """
    D = np.asarray(sq_distances, dtype=np.float64)
    n, k = D.shape
    P = np.zeros((n, k))
    target = np.log(perplexity)
    for i in range(n):
        beta, lo, hi = 1.0, -np.inf, np.inf
        for _ in range(max_iter):
            p = np.exp(-D[i] * beta)
            s = max(p.sum(), 1e-8)
            p = p / s
            H = np.log(s) + beta * np.sum(D[i] * p)
            if abs(H - target) <= tol:
                break
            if H > target:
                lo = beta
                beta = beta * 2.0 if hi == np.inf else (beta + hi) / 2.0
            else:
                hi = beta
                beta = beta / 2.0 if lo == -np.inf else (beta + lo) / 2.0
        P[i] = p
    return P


def reference_repulsion(Y, R, dof=1.0):
    """Return (r, z) of new points Y repelled by the fixed reference R: per-point
    ``r_i = sum_j w_ij^((dof+1)/dof) (y_i - r_j)`` and ``z_i = sum_j w_ij``."""
    Y = np.asarray(Y, dtype=np.float64)
    R = np.asarray(R, dtype=np.float64)
    diff = Y[:, None, :] - R[None, :, :]
    d2 = np.einsum("ijk,ijk->ij", diff, diff)
    w = kernel(d2, dof)
    return np.einsum("ij,ijk->ik", w ** ((dof + 1.0) / dof), diff), w.sum(axis=1)


def attraction(Y, R, P, dof=1.0, exaggeration=1.0):
    """``exaggeration * sum_j p_ij w_ij^(1/dof) (y_i - r_j)`` for a dense P (rows: Y, columns: R)."""
    diff = np.asarray(Y, dtype=np.float64)[:, None, :] - np.asarray(R, dtype=np.float64)[None, :, :]
    w = kernel(np.einsum("ijk,ijk->ij", diff, diff), dof) ** (1.0 / dof)
    return exaggeration * np.einsum("ij,ijk->ik", P * w, diff)


def kl_divergence_unnormalised(Y, P, dof=1.0):
    """``sum_{i != j} p_ij log(p_ij / q_ij)`` for a dense symmetric P of any positive sum.

    P is taken as given (not rescaled to sum 1); ``q_ij = w_ij / Z`` sums to 1. For
    ``s = sum P`` this is ``s * (KL(P / s || Q) + log s)``. Explicit loops over the pairs.
    """
    Y = np.asarray(Y, dtype=np.float64)
    P = np.asarray(P.toarray() if hasattr(P, "toarray") else P, dtype=np.float64)
    n = Y.shape[0]
    w = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i != j:
                w[i, j] = (1.0 + np.sum((Y[i] - Y[j]) ** 2) / dof) ** (-dof)
    Z = w.sum()
    kl = 0.0
    for i in range(n):
        for j in range(n):
            if i != j and P[i, j] > 0:
                kl += P[i, j] * np.log(P[i, j] / (w[i, j] / Z))
    return kl
