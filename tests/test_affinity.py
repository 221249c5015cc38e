"""Affinities against scikit-learn's joint probabilities and the NumPy reference bisection."""
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.metrics import pairwise_distances
from sklearn.neighbors import NearestNeighbors

import reference as ref
from turbotsne.affinity import (PerplexityBasedDense, PerplexityBasedNN, conditional_probabilities,
                                joint_probabilities_dense, joint_probabilities_nn)


@pytest.fixture(scope="module")
def digits():
    return load_digits().data.astype(np.float64)


def test_dense_P_matches_scikit_learn_on_digits(digits):
    from scipy.spatial.distance import squareform
    from sklearn.manifold._t_sne import _joint_probabilities

    D = pairwise_distances(digits, squared=True)
    P_ref = squareform(_joint_probabilities(D, 30.0, 0))
    P = joint_probabilities_dense(D, 30.0)
    np.testing.assert_allclose(P, P_ref, atol=1e-6, rtol=1e-5)
    np.testing.assert_allclose(P, P.T)
    assert P.sum() == pytest.approx(1.0)
    assert np.all(np.diag(P) == 0)


def test_sparse_P_matches_scikit_learn_on_digits(digits):
    from sklearn.manifold._t_sne import _joint_probabilities_nn

    k = 90
    nn = NearestNeighbors(n_neighbors=k).fit(digits)
    G = nn.kneighbors_graph(mode="distance")
    G.data **= 2
    P_ref = _joint_probabilities_nn(G, 30.0, 0).toarray()
    dist, ind = nn.kneighbors()
    P = joint_probabilities_nn(ind, dist, 30.0)
    assert sp.isspmatrix_csr(P)
    np.testing.assert_allclose(P.toarray(), P_ref, atol=1e-6, rtol=1e-5)
    assert abs(P - P.T).max() < 1e-15
    assert P.sum() == pytest.approx(1.0)


@pytest.mark.parametrize("scale", [1e-3, 10.0, 1e5])
def test_perplexity_search_reaches_perplexity_and_matches_bisection(scale):
    # the stopping rule is scikit-learn's (entropy within 1e-5 nats): every row meets it, and
    # P agrees with the bisection reference to what that tolerance allows
    r = np.random.default_rng(0)
    D = r.random((50, 20)) * scale
    out, betas = conditional_probabilities(D, 5.0, return_betas=True)
    np.testing.assert_allclose(out.sum(axis=1), 1.0)
    H = -np.sum(out * np.log(np.maximum(out, 1e-300)), axis=1)
    assert np.abs(H - np.log(5.0)).max() <= 1e-5 + 1e-12
    np.testing.assert_allclose(out, ref.conditional_probabilities(D, 5.0), rtol=1e-3, atol=1e-9)
    shifted = D - D.min(axis=1, keepdims=True)
    K = np.exp(-betas[:, None] * shifted)
    np.testing.assert_allclose(out, K / K.sum(axis=1, keepdims=True), rtol=1e-12)


def test_perplexity_search_at_extreme_scales():
    # the start guess 1 / mean(d) is summed in shares, so it neither overflows nor underflows
    r = np.random.default_rng(3)
    for scale in (1e-300, 1e300):
        out = conditional_probabilities(r.random((4, 60)) * scale, 10.0)
        H = -np.sum(out * np.log(np.maximum(out, 1e-300)), axis=1)
        assert np.abs(H - np.log(10.0)).max() <= 1e-5 + 1e-12


def test_perplexity_search_with_duplicates_and_unreachable_perplexity():
    # rows of equal distances cannot go below entropy log(k): the search stops after max_iter
    # with uniform probabilities (as bisection does); a row with duplicate neighbours still
    # converges
    D = np.vstack([np.full(10, 3.0), np.r_[np.zeros(3), np.arange(1.0, 8.0)]])
    out = conditional_probabilities(D, 20.0)
    np.testing.assert_allclose(out[0], 0.1)
    out = conditional_probabilities(D[1:], 4.0)
    H = -np.sum(out * np.log(np.maximum(out, 1e-300)))
    assert abs(H - np.log(4.0)) <= 1e-5 + 1e-12


def test_perplexity_search_identical_across_thread_counts():
    D = np.random.default_rng(1).random((400, 30))
    a = conditional_probabilities(D, 8.0, n_jobs=1)
    b = conditional_probabilities(D, 8.0, n_jobs=2)
    assert np.array_equal(a, b)


def test_perplexity_based_nn_uses_3_perplexity_neighbours(digits):
    aff = PerplexityBasedNN(digits[:300], perplexity=10)
    assert aff.P.shape == (300, 300)
    assert aff.P.diagonal().max() == 0  # self excluded
    # every row holds its 30 neighbours, plus the points that have it as theirs
    ind, _ = aff.knn_index.query(digits[:300], 31)
    for i in (0, 123, 299):
        nbrs = set(ind[i]) - {i}
        assert nbrs <= set(aff.P[i].indices) and len(nbrs) == 30


def test_too_high_perplexity_is_reduced_with_warning():
    X = np.random.default_rng(0).normal(size=(20, 3))
    with pytest.warns(UserWarning, match="Perplexity value 30 is too high"):
        aff = PerplexityBasedNN(X, perplexity=30)
    assert aff.effective_perplexity_ == pytest.approx(19 / 3) and aff.perplexity == 30
    with pytest.warns(UserWarning, match="too high"):
        dense = PerplexityBasedDense(X, perplexity=30)
    assert dense.P.shape == (20, 20)
    assert dense.P.sum() == pytest.approx(1.0)


def test_dense_precomputed_equals_raw(digits):
    X = digits[:200]
    a = PerplexityBasedDense(X, perplexity=15).P
    b = PerplexityBasedDense(pairwise_distances(X), perplexity=15, metric="precomputed").P
    np.testing.assert_allclose(a, b, atol=1e-12)


@pytest.mark.parametrize("n, k", [(2, 1), (7, 3), (7, 6), (400, 25), (3000, 40), (600, 160)])
def test_symmetrize_equals_scipy_reference(n, k):
    """The numba symmetrisation gives SciPy's (P + P^T) / sum bit for bit: sorted columns, summed
    mutual pairs, explicit zeros dropped (a zero conditional whose mirror is zero too)."""
    from turbotsne.affinity_kernels import MACHINE_EPSILON, symmetrize

    rng = np.random.default_rng(n)
    ind = np.array([rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)])
    cond = rng.random((n, k))
    if k > 1:
        cond[::3, -1] = 0.0  # some zero entries; their mirror may be absent (then the pair drops out)
    cond /= cond.sum(axis=1, keepdims=True)
    A = sp.csr_matrix((cond.ravel(), ind.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    A = (A + A.T).tocsr()
    A.sum_duplicates()
    A.sort_indices()
    A.eliminate_zeros()
    A.data /= max(A.data.sum(), MACHINE_EPSILON)
    before = (ind.copy(), cond.copy())
    P = symmetrize(cond, ind)
    np.testing.assert_array_equal(ind, before[0])  # not overwritten unless asked
    np.testing.assert_array_equal(cond, before[1])
    Q = symmetrize(cond.copy(), ind.astype(np.int32), overwrite=True)
    assert (Q != P).nnz == 0
    np.testing.assert_array_equal(P.indptr, A.indptr)
    np.testing.assert_array_equal(P.indices, A.indices)
    np.testing.assert_array_equal(P.data, A.data)
    assert P.has_sorted_indices and np.all(P.data > 0) and abs(P - P.T).max() == 0


@pytest.mark.parametrize("n, k, zeros", [(2, 1, 0.0), (9, 4, 0.5), (500, 30, 0.0), (500, 30, 0.7), (2000, 12, 0.3)])
def test_symmetrize_in_place_float32_equals_scipy_reference(n, k, zeros):
    """float32 conditionals in the approximate indexes' compact outputs (fronts of buffers with
    room for P) are symmetrised inside those buffers: P's arrays share their memory and equal
    SciPy's float32 (P + P^T) / sum bit for bit, also when many zero entries make rows move
    towards the front and others towards the back."""
    from turbotsne.affinity import symmetrize
    from turbotsne.neighbors.base import knn_output as _output

    rng = np.random.default_rng(k)
    ind = _output(n, k, np.int32, room=True)
    cond = _output(n, k, np.float32, room=True)
    ind[...] = [rng.choice(np.delete(np.arange(n), i), k, replace=False) for i in range(n)]
    cond[...] = rng.random((n, k)) * (rng.random((n, k)) >= zeros)
    cond /= np.maximum(cond.sum(axis=1, keepdims=True), 1e-30)
    A = sp.csr_matrix((cond.ravel(), ind.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n), dtype=np.float32)
    A = (A + A.T).tocsr()
    A.sum_duplicates()
    A.sort_indices()
    A.eliminate_zeros()
    A.data /= float(A.data.sum(dtype=np.float64))
    bases = (ind.base, cond.base)
    P = symmetrize(cond, ind, overwrite=True)
    assert P.data.dtype == np.float32 and P.indices.dtype == np.int32
    if P.nnz >= n * k:  # (SciPy copies views under half their buffer: many zeros here)
        assert np.shares_memory(P.data, bases[1]) and np.shares_memory(P.indices, bases[0])
    np.testing.assert_array_equal(P.indptr, A.indptr)
    np.testing.assert_array_equal(P.indices, A.indices)
    np.testing.assert_array_equal(P.data, A.data)
    assert P.has_sorted_indices and np.all(P.data > 0) and abs(P - P.T).max() == 0


def test_compact_knn_pipeline_gives_float32_P_in_the_knn_buffers(digits, monkeypatch):
    """Above COMPACT_KNN_FROM_ENTRIES (lowered here) PerplexityBasedNN squares, searches and
    symmetrises inside the approximate index's int32 / float32 output: P is float32 with int32
    indices, the same pattern as the full-precision P and within float32 rounding of it; TSNE on
    it reaches the same KL."""
    pytest.importorskip("hnswlib")
    import turbotsne.neighbors.base as nb
    from turbotsne import TSNE

    full = PerplexityBasedNN(digits, 30, method="hnsw", n_jobs=1, random_state=0)
    monkeypatch.setattr(nb, "COMPACT_KNN_FROM_ENTRIES", 0)
    compact = PerplexityBasedNN(digits, 30, method="hnsw", n_jobs=1, random_state=0)
    assert full.P.dtype == np.float64 and compact.P.dtype == np.float32 and compact.P.indices.dtype == np.int32
    np.testing.assert_array_equal(compact.P.indptr, full.P.indptr)
    np.testing.assert_array_equal(compact.P.indices, full.P.indices)
    np.testing.assert_allclose(compact.P.data, full.P.data, rtol=2e-5)
    assert abs(compact.P - compact.P.T).max() == 0 and abs(compact.P.sum() - 1) < 1e-6
    kl = []
    for threshold in (2 ** 62, 0):
        monkeypatch.setattr(nb, "COMPACT_KNN_FROM_ENTRIES", threshold)
        kl.append(TSNE(neighbors="hnsw", n_jobs=1, random_state=0, n_iter=300).fit(digits).kl_divergence_)
    assert abs(kl[1] - kl[0]) < 0.01 * kl[0]


def test_transform_onto_every_neighbour_kernel():
    # transform's perplexity sets the new points' Gaussian kernel for every class that has a perplexity
    # (one scale for the multiscale kernels); fixed-sigma and uniform kernels keep their own parameters
    from turbotsne import TSNEEmbedding
    from turbotsne.affinity import FixedSigmaNN, Multiscale, MultiscaleMixture, Uniform
    from turbotsne.initialization import pca

    X = np.random.default_rng(3).normal(size=(260, 6))
    ref, new = X[:220], X[220:]
    single = PerplexityBasedNN(ref, 20, method="exact").to_new(new, perplexity=5).toarray()
    for aff in (Multiscale(ref, [5, 20], method="exact"), MultiscaleMixture(ref, [5, 20], method="exact"),
                FixedSigmaNN(ref, 1.5, k=12, method="exact"), Uniform(ref, 12, method="exact")):
        emb = TSNEEmbedding(pca(ref, 2, random_state=0), aff)
        partial = emb.prepare_partial(new, **aff.transform_params(5))
        if isinstance(aff, MultiscaleMixture):
            np.testing.assert_allclose(partial.P.toarray(), single, rtol=1e-12, atol=1e-15)
        else:
            np.testing.assert_array_equal(partial.P.toarray(), aff.to_new(new).toarray())
        out = np.asarray(emb.transform(new, n_iter=5))
        assert out.shape == (40, 2) and np.all(np.isfinite(out))
