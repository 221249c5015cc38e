import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist
from sklearn.manifold import trustworthiness as sk_trustworthiness

import reference
from conftest import make_clusters
from turbotsne import PerplexityBasedNN, TSNEEmbedding
from turbotsne.affinity import PerplexityBasedDense
from turbotsne.metrics import (kl_divergence, knn_accuracy, knn_preservation, quality_report,
                               trustworthiness)


@pytest.fixture(scope="module")
def data():
    X, labels = make_clusters(n=300, n_features=8, seed=3)
    r = np.random.default_rng(4)
    Y = X[:, :2] + r.normal(scale=2.0, size=(300, 2))  # a poor but structured "embedding"
    return X, Y, labels


def brute_knn(A, k, metric="euclidean"):
    D = cdist(A, A, metric=metric)
    np.fill_diagonal(D, np.inf)
    return np.argsort(D, axis=1, kind="stable")[:, :k]


@pytest.mark.parametrize("k", [1, 5, 10, 40])
def test_trustworthiness_matches_sklearn(data, k):
    X, Y, _ = data
    ours = trustworthiness(X, Y, n_neighbors=k)
    ref = sk_trustworthiness(X, Y, n_neighbors=k)
    assert ref < 0.999  # the test data must carry a penalty, or any constant 1 would pass
    assert abs(ours - ref) < 1e-9


@pytest.mark.parametrize("metric", ["manhattan", "cosine"])
def test_trustworthiness_other_metrics_match_sklearn(data, metric):
    X, Y, _ = data
    assert abs(trustworthiness(X, Y, 7, metric=metric) - sk_trustworthiness(X, Y, n_neighbors=7, metric=metric)) < 1e-9


@pytest.mark.filterwarnings("ignore:Could not adhere to working_memory")
def test_trustworthiness_in_small_blocks_and_precomputed(data):
    X, Y, _ = data
    ref = sk_trustworthiness(X, Y, n_neighbors=10)
    # working_memory tiny: sklearn's chunker then yields one row at a time
    assert abs(trustworthiness(X, Y, 10, working_memory=0.001) - ref) < 1e-9
    D = cdist(X, X)
    assert abs(trustworthiness(D, Y, 10, metric="precomputed", working_memory=0.01) - ref) < 1e-9


def test_sparse_input_gives_the_same_values(data):
    X, Y, _ = data
    Xs = sp.csr_matrix(np.where(np.abs(X) > 3, X, 0.0))
    dense = Xs.toarray()
    assert trustworthiness(Xs, Y, 10) == pytest.approx(sk_trustworthiness(dense, Y, n_neighbors=10), abs=1e-9)
    assert knn_preservation(Xs, Y, 10) == pytest.approx(knn_preservation(dense, Y, 10), abs=1e-12)


def test_trustworthiness_perfect_and_1d(data):
    X, _, _ = data
    assert trustworthiness(X, X, 10) == pytest.approx(1.0, abs=1e-12)
    y1 = X[:, 0]
    assert abs(trustworthiness(X, y1, 5) - sk_trustworthiness(X, y1[:, None], n_neighbors=5)) < 1e-9


def test_trustworthiness_errors(data):
    X, Y, _ = data
    with pytest.raises(ValueError, match="less than n_samples / 2"):
        trustworthiness(X, Y, n_neighbors=150)
    with pytest.raises(ValueError, match="different numbers of samples"):
        trustworthiness(X, Y[:-1])
    with pytest.raises(ValueError, match="positive int"):
        trustworthiness(X, Y, n_neighbors=0)
    Yn = Y.copy()
    Yn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        trustworthiness(X, Yn)


@pytest.mark.parametrize("k", [1, 10, 30])
def test_knn_preservation_matches_brute_force(data, k):
    X, Y, _ = data
    a, b = brute_knn(X, k), brute_knn(Y, k)
    expected = np.mean([len(set(a[i]) & set(b[i])) / k for i in range(len(X))])
    assert 0.0 < expected < 0.95
    assert knn_preservation(X, Y, k) == pytest.approx(expected, abs=1e-12)


def test_knn_preservation_metric_and_identity(data):
    X, Y, _ = data
    a, b = brute_knn(X, 5, "cityblock"), brute_knn(Y, 5)
    expected = np.mean([len(set(a[i]) & set(b[i])) / 5 for i in range(len(X))])
    assert knn_preservation(X, Y, 5, metric="manhattan") == pytest.approx(expected, abs=1e-12)
    assert knn_preservation(X, X, 5) == 1.0


@pytest.mark.parametrize("dof", [1.0, 0.6])
def test_kl_divergence_exact_matches_reference(data, dof):
    X, Y, _ = data
    aff = PerplexityBasedNN(X, perplexity=10, method="exact")
    expected = reference.kl_divergence(Y, aff.P, dof)
    assert kl_divergence(aff.P, Y, dof=dof, method="exact") == pytest.approx(expected, rel=1e-9)
    assert kl_divergence(aff, Y, dof=dof) == pytest.approx(expected, rel=1e-9)  # auto = exact here
    dense = PerplexityBasedDense(X, perplexity=10)
    assert kl_divergence(dense.P, Y, dof=dof) == pytest.approx(reference.kl_divergence(Y, dense.P, dof), rel=1e-9)


def test_kl_divergence_matches_gradients_backend_and_approximations(data):
    from turbotsne import gradients

    X, Y, _ = data
    aff = PerplexityBasedNN(X, perplexity=10, method="exact")
    backend = gradients.make_backend("exact", aff.P, n_samples=300, n_components=2)
    expected = backend.gradient(Y, aff.P, 1.0, 1.0, np.empty_like(Y), True)
    assert kl_divergence(aff.P, Y, method="exact") == pytest.approx(expected, rel=1e-12)
    for method in ("bh", "fft"):
        assert kl_divergence(aff.P, Y, method=method) == pytest.approx(expected, rel=2e-2)
    # unnormalised P is normalised; an embedding object is read through np.asarray
    emb = TSNEEmbedding(Y, aff)
    assert kl_divergence(aff.P * 3.0, emb) == pytest.approx(expected, rel=1e-9)


def test_kl_divergence_errors(data):
    X, Y, _ = data
    aff = PerplexityBasedNN(X, perplexity=10, method="exact")
    with pytest.raises(ValueError, match="embedding has 299 points"):
        kl_divergence(aff.P, Y[:-1])
    with pytest.raises(ValueError, match="negative_gradient_method"):
        kl_divergence(aff.P, Y, method="nope")
    with pytest.raises(ValueError, match="positive, finite sum"):
        kl_divergence(sp.csr_matrix((300, 300)), Y)


def test_knn_accuracy_matches_brute_vote(data):
    X, Y, labels = data
    nn = brute_knn(Y, 10)
    votes = np.array([np.bincount(labels[row], minlength=labels.max() + 1).argmax() for row in nn])
    expected = np.mean(votes == labels)
    assert 0.2 < expected < 1.0
    assert knn_accuracy(Y, labels, 10) == pytest.approx(expected)
    assert knn_accuracy(X, labels.astype(str), 10) == pytest.approx(
        np.mean(np.array([np.bincount(labels[r]).argmax() for r in brute_knn(X, 10)]) == labels))


def test_quality_report_keys_and_values(data):
    X, Y, labels = data
    rep = quality_report(X, Y, labels)
    assert set(rep) == {"n_samples", "n_neighbors", "trustworthiness", "knn_preservation", "kl_divergence",
                        "knn_accuracy"}
    assert rep["n_samples"] == 300
    assert rep["trustworthiness"] == pytest.approx(sk_trustworthiness(X, Y, n_neighbors=10), abs=1e-9)
    a, b = brute_knn(X, 10), brute_knn(Y, 10)
    preservation = np.mean([len(set(a[i]) & set(b[i])) / 10 for i in range(300)])
    assert rep["knn_preservation"] == pytest.approx(preservation, abs=1e-12)
    votes = np.array([np.bincount(labels[row]).argmax() for row in b])  # ties: the smallest label
    assert rep["knn_accuracy"] == pytest.approx(np.mean(votes == labels), abs=1e-12)
    # without affinities: those of perplexity 30 (the default) over exact neighbours
    P = PerplexityBasedNN(X, perplexity=30, method="exact").P
    assert rep["kl_divergence"] > 0
    assert rep["kl_divergence"] == pytest.approx(reference.kl_divergence(Y, P), rel=1e-9)
    assert "knn_accuracy" not in quality_report(X, Y)


def test_quality_report_subsample_and_embedding_affinities(data):
    X, Y, labels = data
    aff = PerplexityBasedNN(X, perplexity=10, method="exact")
    emb = TSNEEmbedding(Y, aff)
    rep = quality_report(X, emb, labels, subsample=100, random_state=0)
    assert rep["n_samples"] == 100
    idx = np.sort(np.random.RandomState(0).choice(300, 100, replace=False))
    assert rep["trustworthiness"] == pytest.approx(sk_trustworthiness(X[idx], Y[idx], n_neighbors=10), abs=1e-9)
    # KL uses the embedding's own affinities over all points
    assert rep["kl_divergence"] == pytest.approx(reference.kl_divergence(Y, aff.P), rel=1e-9)
    assert quality_report(X, Y, subsample=0.5, random_state=1)["n_samples"] == 150
    with pytest.raises(ValueError, match="subsample must keep at least 2 points"):
        quality_report(X, Y, subsample=-3)
    with pytest.raises(ValueError, match="subsample must be a positive int or a float"):
        quality_report(X, Y, subsample=1.5)
    with pytest.raises(ValueError, match="labels must have shape"):
        quality_report(X, Y, labels[:-1])


@pytest.mark.parametrize("working_memory", [64, 0.05])
def test_trustworthiness_equals_sklearn_with_tied_distances(working_memory):
    # small-integer features: many input distances tie exactly; the rows concerned are ranked in
    # scikit-learn's sort order, so the value is scikit-learn's to the last bit, blocks or not
    r = np.random.default_rng(7)
    X = r.integers(0, 4, size=(300, 6)).astype(np.float64)
    Y = X[:, :2] + 0.01 * r.standard_normal((300, 2))
    for k in (5, 12):
        assert trustworthiness(X, Y, k, working_memory=working_memory) == sk_trustworthiness(X, Y, n_neighbors=k)
