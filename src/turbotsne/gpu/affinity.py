"""Perplexity affinities on a torch device.

The precision search is :func:`turbotsne.affinity_kernels.conditional_probabilities`'s: per row,
shift the squared distances by the row's smallest, start at ``beta = 1 / mean``,
take safeguarded Newton steps in ``log(beta)`` until the entropy is within 1e-5 nats
of ``log(perplexity)`` or 100 steps. Here it runs for all rows at once (one tensor
per step, converged rows frozen), in float64, so P equals the CPU path's to rounding.
Symmetrisation builds ``P + P^T`` as a sparse COO tensor
and coalesces it on the device; the result is handed back as the SciPy CSR
matrix the rest of the library holds (sorted indices, zeros dropped, sum 1).
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import scipy.sparse as sp
import torch

from ..affinity_kernels import PERPLEXITY_MAX_ITER, PERPLEXITY_TOLERANCE

_EPSILON_DBL = 1e-8
#: how often (steps) the search checks whether every row has converged (a device sync)
_CHECK_EVERY = 8


def conditional_probabilities(sq_distances, perplexity, device, *, skip_self=False, return_betas=False):
    """Row-normalised Gaussian conditionals of ``sq_distances`` ((n, k), or square with ``skip_self``).

    Returns a float64 tensor on ``device`` (and the precisions ``beta`` with ``return_betas``).
    """
    D = torch.as_tensor(sq_distances).to(device=device, dtype=torch.float64)
    n, k = D.shape
    valid = None
    if skip_self:
        valid = torch.ones_like(D, dtype=torch.bool)
        valid.fill_diagonal_(False)
        D = D.masked_fill(~valid, math.inf)
    shift = D.min(dim=1).values
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    D = D - shift[:, None]
    target = math.log(perplexity)
    masked = (lambda t: t) if valid is None else (lambda t: torch.where(valid, t, 0.0))
    mean = masked(D / max(k if valid is None else k - 1, 1)).sum(dim=1)  # in shares: no overflow
    beta = torch.where(mean > 0, 1.0 / torch.where(mean > 0, mean, 1.0), 1.0)
    lo = torch.zeros_like(beta)
    hi = torch.full_like(beta, math.inf)
    previous = torch.full_like(beta, math.inf)
    done = torch.zeros(n, dtype=torch.bool, device=D.device)
    for step in range(PERPLEXITY_MAX_ITER):
        P, s = _kernel(D, beta)
        bd = D * beta[:, None]  # moments of beta * d: dimensionless, as on the CPU
        e1 = masked(bd * P).sum(dim=1)
        e2 = masked(bd * bd * P).sum(dim=1)
        diff = torch.log(s) + e1 - target
        done |= torch.abs(diff) <= PERPLEXITY_TOLERANCE
        active = ~done
        lo = torch.where(active & (diff > 0), beta, lo)
        hi = torch.where(active & ~(diff > 0), beta, hi)
        slope = -(e2 - e1 * e1)
        newton = (slope < 0) & (torch.abs(diff) < 0.5 * previous)
        previous = torch.where(active, torch.abs(diff), previous)
        ratio = torch.clamp(-diff / torch.where(newton, slope, -1.0), -5.0, 5.0)
        candidate = torch.where(newton, beta * torch.exp(ratio), -1.0)
        fallback = torch.where(torch.isinf(hi), beta * 2.0,
                               torch.where(lo == 0, beta / 2.0, torch.sqrt(lo) * torch.sqrt(hi)))
        stepped = torch.where((candidate > lo) & (candidate < hi), candidate, fallback)
        beta = torch.where(active, stepped, beta)
        if step % _CHECK_EVERY == _CHECK_EVERY - 1 and bool(done.all()):
            break
    P, _ = _kernel(D, beta)
    return (P, beta) if return_betas else P


def _kernel(D, beta):
    P = torch.exp(-D * beta[:, None])
    s = P.sum(dim=1)
    s = torch.where(s == 0, torch.full_like(s, _EPSILON_DBL), s)
    return P / s[:, None], s


def symmetrize(conditional, indices, n_samples=None):
    """``(P + P^T) / sum`` of a kNN conditional matrix (tensors on one device) as SciPy CSR."""
    P = torch.as_tensor(conditional)
    idx = torch.as_tensor(indices).to(device=P.device, dtype=torch.int64)
    n, k = P.shape
    n_samples = n if n_samples is None else n_samples
    rows = torch.arange(n, device=P.device).repeat_interleave(k)
    cols = idx.reshape(-1)
    vals = P.reshape(-1)
    with warnings.catch_warnings():  # torch >= 2.11 warns even when check_invariants=False is explicit
        warnings.filterwarnings("ignore", message="Sparse invariant checks", category=UserWarning)
        coo = torch.sparse_coo_tensor(torch.stack([torch.cat([rows, cols]), torch.cat([cols, rows])]),
                                      torch.cat([vals, vals]), (n_samples, n_samples),
                                      check_invariants=False).coalesce()
    ij, v = coo.indices(), coo.values()
    keep = v > 0
    ij, v = ij[:, keep], v[keep]
    v = v / torch.clamp(v.sum(), min=np.finfo(np.float64).eps)
    counts = torch.bincount(ij[0], minlength=n_samples)
    indptr = np.zeros(n_samples + 1, dtype=np.int64)
    np.cumsum(counts.cpu().numpy(), out=indptr[1:])
    return sp.csr_matrix((v.cpu().numpy(), ij[1].cpu().numpy(), indptr), shape=(n_samples, n_samples))


def joint_probabilities_dense(sq_distances, perplexity, device):
    """Dense symmetric P over all pairs (the exact method) as a float64 NumPy array."""
    cond = conditional_probabilities(sq_distances, perplexity, device, skip_self=True)
    P = cond + cond.T
    P /= torch.clamp(P.sum(), min=np.finfo(np.float64).eps)
    return P.cpu().numpy()


def squared_distances(X, metric, device):
    """All-pairs squared metric distances (euclidean, sqeuclidean, cosine) on ``device``, float64."""
    T = torch.as_tensor(np.asarray(X, dtype=np.float64)).to(device)
    if metric == "cosine":
        T = T / torch.clamp(torch.linalg.vector_norm(T, dim=1, keepdim=True), min=1e-300)
        D = torch.clamp(1.0 - T @ T.T, min=0.0)
        D.fill_diagonal_(0.0)
        return D * D
    sq = torch.sum(T * T, dim=1)
    D = torch.clamp(sq[:, None] + sq[None, :] - 2.0 * (T @ T.T), min=0.0)
    D.fill_diagonal_(0.0)
    return D * D if metric == "sqeuclidean" else D
