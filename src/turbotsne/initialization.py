"""Initial embeddings: PCA, spectral, random, or a user array, rescaled to std 1e-4.

Also the placements of new points among a reference embedding (:func:`median`,
:func:`weighted_mean`) and :func:`jitter`, with openTSNE's names and arguments.

As openTSNE does, every generated initialisation is rescaled so that its first
coordinate has standard deviation ``1e-4``; t-SNE with a small initial scale
behaves like early exaggeration on a tight cloud and converges reliably.
"""
from __future__ import annotations

import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.utils import check_random_state

TARGET_STD = 1e-4


def rescale(Y, target_std=TARGET_STD, *, inplace=False):
    """Return ``Y`` scaled so that its first column has standard deviation ``target_std``.

    With ``inplace``, ``Y`` (a float64 array) is scaled and returned itself.
    """
    Y = np.asarray(Y, dtype=np.float64) if inplace else np.array(Y, dtype=np.float64, copy=True)
    std = np.std(Y[:, 0]) if Y.shape[0] > 1 else 0.0
    if std > 0:
        Y *= target_std / std
    return Y


def jitter(Y, inplace=False, scale=0.01, random_state=None):
    """Add Gaussian noise of ``scale`` times the first column's standard deviation to ``Y``."""
    rs = check_random_state(random_state)
    Y = np.asarray(Y, dtype=np.float64) if inplace else np.array(Y, dtype=np.float64, copy=True)
    std = np.std(Y[:, 0]) if Y.shape[0] > 1 else 0.0
    Y += rs.normal(0, scale * std, Y.shape)
    return Y


def random(n_samples, n_components=2, random_state=None, verbose=False):
    """Gaussian noise with standard deviation 1e-4; ``n_samples`` is a number or the data itself."""
    if not np.isscalar(n_samples):
        n_samples = n_samples.shape[0]
    rs = check_random_state(random_state)
    return TARGET_STD * rs.standard_normal((n_samples, n_components))


def pca(X, n_components=2, random_state=None, *, svd_solver="auto", add_jitter=False, verbose=False):
    """The first principal components of ``X``, rescaled (signs fixed for reproducibility).

    ``svd_solver`` is scikit-learn's PCA option (dense ``X``); ``add_jitter`` adds
    noise of 1 % of the scale (openTSNE's default, off here: it would change results).
    """
    if add_jitter:
        return jitter(pca(X, n_components, random_state, svd_solver=svd_solver), inplace=True,
                      random_state=random_state)
    from sklearn.decomposition import PCA, TruncatedSVD

    n, f = X.shape
    if f < n_components or n <= n_components:
        # too few features or points for PCA: fall back to noise, as openTSNE would fail here.
        warnings.warn(
            f"PCA initialisation needs more than {n_components} features and samples; "
            "using random initialisation instead.", stacklevel=3)
        return random(n, n_components, random_state)
    if sp.issparse(X):
        Y = TruncatedSVD(n_components, random_state=random_state).fit_transform(X)
    else:
        Y = PCA(n_components, svd_solver=svd_solver, random_state=random_state).fit_transform(X)
    # deterministic sign: the largest-magnitude entry of each column is positive
    signs = np.sign(Y[np.argmax(np.abs(Y), axis=0), np.arange(n_components)])
    signs[signs == 0] = 1
    return rescale(Y * signs)


def spectral(P, n_components=2, random_state=None, tol=1e-4, max_iter=None, *, add_jitter=False, verbose=False):
    """Leading non-trivial eigenvectors of the normalised affinity graph ``D^-1/2 P D^-1/2``.

    ``add_jitter`` adds noise of 1 % of the scale (openTSNE's default; off here).
    """
    if add_jitter:
        return jitter(spectral(P, n_components, random_state, tol, max_iter), inplace=True,
                      random_state=random_state)
    from scipy.sparse.linalg import eigsh

    A = sp.csr_matrix(P, dtype=np.float64)
    n = A.shape[0]
    if n <= n_components + 1:
        return random(n, n_components, random_state)
    deg = np.asarray(A.sum(axis=1)).ravel()
    deg[deg == 0] = 1.0
    d_inv_sqrt = sp.diags(1.0 / np.sqrt(deg))
    M = d_inv_sqrt @ A @ d_inv_sqrt
    rs = check_random_state(random_state)
    v0 = rs.uniform(-1, 1, n)
    k = n_components + 1
    if n < 200:
        vals, vecs = np.linalg.eigh(M.toarray())
        order = np.argsort(vals)[::-1][:k]
    else:
        vals, vecs = eigsh(M, k=k, which="LA", tol=tol, v0=v0, maxiter=max_iter)
        order = np.argsort(vals)[::-1]
    vecs = vecs[:, order]
    Y = d_inv_sqrt @ vecs[:, 1:]  # random-walk eigenvectors; drop the constant one
    signs = np.sign(Y[np.argmax(np.abs(Y), axis=0), np.arange(n_components)])
    signs[signs == 0] = 1
    return rescale(Y * signs)


def from_array(Y, n_samples, n_components):
    """Validate a user-given initialisation; warn when its scale is large."""
    Y = np.array(Y, dtype=np.float64, copy=True)
    if Y.shape != (n_samples, n_components):
        raise ValueError(
            f"The 'initialization' array must have shape (n_samples, n_components) = "
            f"({n_samples}, {n_components}). Got {Y.shape} instead.")
    if not np.all(np.isfinite(Y)):
        raise ValueError("The 'initialization' array contains NaN or infinity.")
    if n_samples > 1 and np.any(np.std(Y, axis=0) > 1e-2):
        warnings.warn(
            "The initial embedding has a standard deviation above 1e-2; t-SNE converges best from "
            "std ~1e-4 (use turbotsne.initialization.rescale).", stacklevel=3)
    return Y


def median(embedding, neighbors, verbose=False):
    """Place each new point at the coordinate-wise median of its reference neighbours.

    ``neighbors`` is an ``(n_new, k)`` array of row indices into ``embedding``.
    """
    return np.median(np.asarray(embedding)[np.asarray(neighbors)], axis=1)


def weighted_mean(X, embedding, neighbors, distances, verbose=False):
    """Place each new point at the mean of its reference neighbours weighted by inverse distance
    (a neighbour at distance 0 takes the whole weight)."""
    neighbors, distances = np.asarray(neighbors), np.asarray(distances, dtype=np.float64)
    with np.errstate(divide="ignore"):
        w = 1.0 / distances
    exact = ~np.isfinite(w)
    w[exact.any(axis=1)] = 0.0
    w[exact] = 1.0
    w /= w.sum(axis=1, keepdims=True)
    return np.einsum("ik,ikd->id", w, np.asarray(embedding)[neighbors])
