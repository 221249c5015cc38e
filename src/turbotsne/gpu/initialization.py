"""PCA initialisation on a torch device.

The covariance ``Xc^T Xc`` (features x features) is formed on the device in
float64 and its leading eigenvectors taken with ``torch.linalg.eigh``: exact
PCA (not randomised) in one pass over the data. Signs and the rescaling to
std 1e-4 are those of :func:`turbotsne.initialization.pca`, so the result
matches the CPU path's up to rounding.
"""
from __future__ import annotations

import numpy as np
import torch

from ..initialization import rescale

#: rows of X moved to the device per chunk (bounds device memory for tall data)
CHUNK_ROWS = 65536


def pca(X, n_components, device):
    """The first principal components of dense ``X`` (n, f), rescaled, as float64 NumPy."""
    n, f = X.shape
    mean = torch.as_tensor(np.asarray(X, dtype=np.float64).mean(axis=0)).to(device)
    cov = torch.zeros((f, f), dtype=torch.float64, device=device)
    for s in range(0, n, CHUNK_ROWS):
        C = torch.as_tensor(np.asarray(X[s:s + CHUNK_ROWS], dtype=np.float64)).to(device) - mean
        cov += C.T @ C
    _, vecs = torch.linalg.eigh(cov)
    W = vecs[:, -n_components:].flip(1)
    Y = np.empty((n, n_components))
    for s in range(0, n, CHUNK_ROWS):
        C = torch.as_tensor(np.asarray(X[s:s + CHUNK_ROWS], dtype=np.float64)).to(device) - mean
        Y[s:s + CHUNK_ROWS] = (C @ W).cpu().numpy()
    signs = np.sign(Y[np.argmax(np.abs(Y), axis=0), np.arange(n_components)])
    signs[signs == 0] = 1
    return rescale(Y * signs)
