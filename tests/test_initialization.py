import numpy as np
import pytest
import scipy.sparse as sp

from turbotsne import initialization as init
from turbotsne.affinity import PerplexityBasedNN


def test_pca_is_rescaled_and_spans_principal_axes(rng):
    X = rng.normal(size=(300, 6)) * np.array([10.0, 3.0, 1.0, 1.0, 1.0, 1.0])
    Y = init.pca(X, 2, random_state=0)
    assert Y.shape == (300, 2)
    assert np.std(Y[:, 0]) == pytest.approx(1e-4, rel=1e-9)
    # the first coordinate follows the dominant input axis
    assert abs(np.corrcoef(Y[:, 0], X[:, 0])[0, 1]) > 0.99


def test_random_is_reproducible_and_small():
    a = init.random(100, 3, random_state=42)
    b = init.random(100, 3, random_state=42)
    assert np.array_equal(a, b)
    assert a.shape == (100, 3)
    assert 0.5e-4 < a.std() < 2e-4


def test_spectral_orders_points_along_a_curve():
    # the first non-trivial eigenvector of a path-like graph orders its points
    r = np.random.default_rng(0)
    t = np.sort(r.uniform(0, 10, 300))
    X = np.column_stack([t, np.sin(t), 0.01 * r.normal(size=300)])
    P = PerplexityBasedNN(X, perplexity=10).P
    Y = init.spectral(P, 2, random_state=0)
    assert Y.shape == (300, 2)
    assert np.std(Y[:, 0]) == pytest.approx(1e-4, rel=1e-6)
    from scipy.stats import spearmanr
    assert abs(spearmanr(Y[:, 0], t)[0]) > 0.99


def test_spectral_matches_dense_eigenvectors():
    r = np.random.default_rng(1)
    X = r.normal(size=(400, 4))
    P = PerplexityBasedNN(X, perplexity=10).P
    Y = init.spectral(P, 2, random_state=0, tol=1e-10)
    A = P.toarray()
    deg = A.sum(1)
    M = A / np.sqrt(deg)[:, None] / np.sqrt(deg)[None, :]
    vals, vecs = np.linalg.eigh(M)
    ref = vecs[:, ::-1][:, 1:3] / np.sqrt(deg)[:, None]
    for k in range(2):
        assert abs(np.corrcoef(Y[:, k], ref[:, k])[0, 1]) > 0.999


def test_array_initialisation_checks_shape_and_warns_on_large_scale():
    with pytest.raises(ValueError, match=r"must have shape \(n_samples, n_components\) = \(10, 2\)"):
        init.from_array(np.zeros((10, 3)), 10, 2)
    with pytest.warns(UserWarning, match="standard deviation above 1e-2"):
        init.from_array(np.random.default_rng(0).normal(size=(10, 2)), 10, 2)
    with pytest.raises(ValueError, match="NaN or infinity"):
        init.from_array(np.full((10, 2), np.nan), 10, 2)


def test_pca_on_sparse_input(rng):
    X = sp.random(200, 30, density=0.2, random_state=0, format="csr")
    Y = init.pca(X, 2, random_state=0)
    assert Y.shape == (200, 2) and np.all(np.isfinite(Y))
