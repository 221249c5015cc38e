"""Exact nearest neighbours on a torch device: tiled brute force.

Per tile of query rows: ``|r|^2 - 2 q r^T`` (one matrix product; on a CUDA
device the tensor cores do the work) and ``topk`` of ``k + REFINE_MARGIN``
candidates, then the candidates' distances are recomputed from coordinate
differences in float64 (no cancellation error, so a near-tie at the k-th
neighbour is decided on exact distances, not on the product's rounding; see
docs/design/gpu.md) and the ``k`` nearest kept, sorted by (distance, index).
Tiles are sized so that no intermediate exceeds :data:`BLOCK_BYTES`: memory
stays bounded at any N.
"""
from __future__ import annotations

import numpy as np
import torch

from ..neighbors.base import (KNNIndex, check_data as _check_data, check_k as _check_k,
                              unsupported_message as _unsupported_message)

#: largest intermediate tensor of one tile, in bytes
BLOCK_BYTES = 2 ** 28
#: candidates beyond k taken from the matrix-product distances before the exact recomputation
REFINE_MARGIN = 8
METRICS = frozenset({"euclidean", "l2", "sqeuclidean", "cosine"})


class TorchExact(KNNIndex):
    """Exact kNN on ``device`` for dense input and the metrics in :data:`METRICS`.

    The reference is kept as a NumPy array (so the index pickles and loads on
    a machine without that device) and copied to the device on first use.
    """

    name = "torch"

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None, device="cpu"):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.device = str(device)
        self._ref_t = None

    @classmethod
    def valid_metrics(cls, sparse=False):
        return frozenset() if sparse else METRICS

    @classmethod
    def supports(cls, metric, sparse=False):
        return isinstance(metric, str) and not sparse and metric in METRICS

    def fit(self, X):
        X = _check_data(X, accept_sparse=False)
        if not self.supports(self.metric, False) or self.metric_params:
            raise ValueError(_unsupported_message(self.name, self.metric, False))
        self.n_samples_fit_, self.n_features_in_ = X.shape
        self._ref = np.array(X, dtype=np.float32, order="C")
        self._ref_t = None
        return self

    def build(self, X, k):
        self.fit(X)
        k = _check_k(k, self.n_samples_fit_, build=True)
        return self._search(self._reference(), k, exclude_self=True)

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = _check_k(k, self.n_samples_fit_, build=False)
        return self._search(self._prepare(X_new), k, exclude_self=False)

    # -- internals ------------------------------------------------------------------
    def _prepare(self, X):
        T = torch.as_tensor(np.asarray(X, dtype=np.float32)).to(self.device)
        if self.metric == "cosine":
            T = T / torch.clamp(torch.linalg.vector_norm(T, dim=1, keepdim=True), min=1e-30)
        return T

    def _reference(self):
        if self._ref_t is None:
            self._ref_t = self._prepare(self._ref)
        return self._ref_t

    def _exact(self, q, r):
        """Distances of query rows ``q`` (b, D) to their candidates ``r`` (b, m, D), in float64."""
        q, r = q.to(torch.float64), r.to(torch.float64)
        if self.metric == "cosine":
            return torch.clamp(1.0 - torch.einsum("bd,bmd->bm", q, r), min=0.0)
        d2 = torch.sum((q[:, None, :] - r) ** 2, dim=-1)
        return d2 if self.metric == "sqeuclidean" else torch.sqrt(d2)

    def _search(self, Q, k, exclude_self):
        R = self._reference()
        n_q, n_r, dim = Q.shape[0], R.shape[0], R.shape[1]
        m = min(k + REFINE_MARGIN, n_r - (1 if exclude_self else 0))
        r_sq = None if self.metric == "cosine" else torch.sum(R * R, dim=1)
        rows = max(1, BLOCK_BYTES // (4 * n_r))
        refine_rows = max(1, BLOCK_BYTES // (8 * m * max(dim, 1)))
        indices = np.empty((n_q, k), dtype=np.int64)
        distances = np.empty((n_q, k), dtype=np.float64)
        for s in range(0, n_q, rows):
            q = Q[s:s + rows]
            score = -(q @ R.T) if r_sq is None else r_sq[None, :] - 2.0 * (q @ R.T)
            if exclude_self:
                local = torch.arange(q.shape[0], device=Q.device)
                score[local, local + s] = float("inf")
            cand = torch.topk(score, m, dim=1, largest=False, sorted=False).indices
            del score
            for t in range(0, q.shape[0], refine_rows):
                c = torch.sort(cand[t:t + refine_rows], dim=1).values  # ties end up in index order
                d = self._exact(q[t:t + refine_rows], R[c])
                d, order = torch.sort(d, dim=1, stable=True)
                lo, hi = s + t, s + t + c.shape[0]
                indices[lo:hi] = torch.gather(c, 1, order[:, :k]).cpu().numpy()
                distances[lo:hi] = d[:, :k].cpu().numpy()
        return indices, distances

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_ref_t"] = None
        return state
