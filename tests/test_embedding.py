"""The layered API: TSNEEmbedding.optimize, transform of new points, affinity classes, persistence."""
import pickle

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.neighbors import KNeighborsClassifier

import reference as ref
from conftest import assert_same_up_to_rounding, make_clusters
from turbotsne import TSNE, TSNEEmbedding
from turbotsne.affinity import (FixedSigmaNN, Multiscale, MultiscaleMixture, PerplexityBasedNN,
                                PrecomputedAffinities, Uniform, conditional_probabilities)
from turbotsne.initialization import pca

METHODS = ["exact", "bh", "fft"]


@pytest.fixture(scope="module")
def clusters():
    X, y = make_clusters(900, 10, n_clusters=6, seed=1)
    return X[:700], y[:700], X[700:], y[700:]


def _fitted(X, method="exact", n_components=2, **kw):
    return TSNE(n_components=n_components, negative_gradient_method=method, random_state=0, n_jobs=2,
                early_exaggeration_iter=125, n_iter=250, **kw).fit(X)


@pytest.fixture(scope="module")
def fitted(clusters):
    """``fitted(method)``: the 2-D fit of the training clusters, made once per method for the module
    (transform does not change it: see test_transform_leaves_the_reference_unchanged)."""
    cache = {}

    def get(method):
        if method not in cache:
            cache[method] = _fitted(clusters[0], method)
        return cache[method]

    return get


def test_optimize_twice_equals_once():
    X, _ = make_clusters(200, 5)
    aff = PerplexityBasedNN(X, perplexity=10)
    emb = TSNEEmbedding(pca(X), aff, negative_gradient_method="bh", theta=0.0)
    once = emb.optimize(70, exaggeration=12)
    twice = emb.optimize(30, exaggeration=12).optimize(40, exaggeration=12)
    assert np.array_equal(np.asarray(once), np.asarray(twice))
    assert np.array_equal(once.optimizer_state.gains, twice.optimizer_state.gains)
    assert once.n_iter == twice.n_iter == 70
    # not in place: the starting embedding is untouched
    assert np.array_equal(np.asarray(emb), pca(X)) and emb.n_iter == 0


def test_optimize_inplace_and_array_protocol():
    X, _ = make_clusters(100, 4)
    emb = TSNEEmbedding(pca(X), PerplexityBasedNN(X, perplexity=10), negative_gradient_method="exact")
    out = emb.optimize(20, inplace=True)
    assert out is emb and emb.n_iter == 20
    assert np.asarray(emb).shape == (100, 2) and np.asarray(emb, dtype=np.float32).dtype == np.float32
    with pytest.raises(TypeError, match="unexpected parameters"):
        emb.optimize(5, not_a_parameter=1)
    with pytest.raises(ValueError, match="'n_iter' parameter of TSNEEmbedding.optimize"):
        emb.optimize(-1)


@pytest.mark.parametrize("method", METHODS)
def test_transform_lands_new_points_in_their_clusters(clusters, fitted, method):
    Xtr, ytr, Xte, yte = clusters
    tsne = fitted(method)
    Yte = tsne.transform(Xte)
    assert Yte.shape == (len(Xte), 2) and np.all(np.isfinite(Yte))
    knn = KNeighborsClassifier(10).fit(tsne.embedding_, ytr)
    train_acc = knn.score(tsne.embedding_, ytr)
    assert knn.score(Yte, yte) >= 0.95 * train_acc


@pytest.mark.parametrize("method", METHODS)
def test_transforming_training_points_lands_near_their_positions(clusters, fitted, method):
    Xtr = clusters[0]
    tsne = fitted(method)
    again = tsne.transform(Xtr[:150])
    extent = np.ptp(tsne.embedding_, axis=0).max()
    assert np.median(np.linalg.norm(again - tsne.embedding_[:150], axis=1)) < 0.03 * extent


@pytest.mark.parametrize("n_components", [1, 3])
def test_transform_other_dimensions(clusters, n_components):
    Xtr, ytr, Xte, yte = clusters
    tsne = _fitted(Xtr, "exact", n_components=n_components)
    Yte = tsne.transform(Xte)
    assert Yte.shape == (len(Xte), n_components)
    knn = KNeighborsClassifier(10).fit(tsne.embedding_, ytr)
    assert knn.score(Yte, yte) >= 0.9 * knn.score(tsne.embedding_, ytr)


def test_transform_is_independent_of_the_batch(clusters, fitted):
    Xte = clusters[2]
    tsne = fitted("exact")
    batch = tsne.transform(Xte[:20])
    alone = tsne.transform(Xte[3:4])
    np.testing.assert_allclose(alone[0], batch[3], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_transform_leaves_the_reference_unchanged(clusters, fitted, method):
    emb = fitted(method).tsne_embedding_
    Y, P = emb.embedding.copy(), emb.P.copy()
    gains, update = emb.optimizer_state.gains.copy(), emb.optimizer_state.update.copy()
    kl, n_iter = emb.kl_divergence, emb.n_iter
    assert np.any(gains != 1.0) and np.any(update != 0.0)  # a real optimiser state, not the initial one
    new = emb.transform(clusters[2])
    assert np.array_equal(emb.embedding, Y)
    assert np.array_equal(new.reference_embedding.embedding, Y)
    assert type(emb.P) is type(P) and emb.P.dtype == P.dtype and emb.P.shape == P.shape
    if sp.issparse(P):  # CSR; the exact method's P is dense
        for name in ("data", "indices", "indptr"):
            assert np.array_equal(getattr(emb.P, name), getattr(P, name))
    else:
        assert np.array_equal(emb.P, P)
    assert np.array_equal(emb.optimizer_state.gains, gains)
    assert np.array_equal(emb.optimizer_state.update, update)
    assert emb.kl_divergence == kl and emb.n_iter == n_iter


def test_transform_moves_new_points_towards_their_own_cluster(clusters, fitted):
    _, ytr, Xte, yte = clusters
    emb = fitted("bh").tsne_embedding_
    start = np.asarray(emb.prepare_partial(Xte, perplexity=5))  # transform's own placement
    end = np.asarray(emb.transform(Xte, perplexity=5))
    R = emb.embedding
    moved = np.linalg.norm(end - start, axis=1)
    assert np.all(moved > 0)
    assert np.median(moved) > 0.01 * np.ptp(R, axis=0).max()
    # each new point ends nearer (mean distance) to the reference points of its own cluster
    # than to those of any other cluster, by a clear margin
    for i, (y, c) in enumerate(zip(end, yte)):
        mean_dist = {k: np.linalg.norm(R[ytr == k] - y, axis=1).mean() for k in np.unique(ytr)}
        others = min(d for k, d in mean_dist.items() if k != c)
        assert mean_dist[c] < 0.5 * others, i


#: method, engine and relative tolerance (the approximations' errors of Z, float32 on torch)
_KL_ENGINES = {"exact": ("exact", {}, 1e-10), "bh": ("bh", {}, 5e-5), "fft": ("fft", {}, 3e-6),
               "torch-exact": ("exact", dict(backend="torch", device="cpu"), 1e-7),
               "torch-fft": ("fft", dict(backend="torch", device="cpu"), 3e-6)}


@pytest.mark.parametrize("engine", list(_KL_ENGINES))
@pytest.mark.parametrize("dof", [1.0, 0.6])
def test_reported_kl_of_an_unnormalised_P(engine, dof):
    # P is used as given: KL = sum p_ij log(p_ij / q_ij), q summing to 1 and P not (see
    # gradients/__init__.py); every iteration's KL is that of the positions before its step
    method, engine_kw, rtol = _KL_ENGINES[engine]
    if engine_kw:
        pytest.importorskip("torch")
    r = np.random.default_rng(0)
    n = 80
    A = sp.random(n, n, density=0.15, random_state=1, data_rvs=lambda k: r.uniform(0.5, 3.0, k)).toarray()
    A = A + A.T
    np.fill_diagonal(A, 0.0)
    A *= 25.0 / A.sum()  # sums to 25
    aff = PrecomputedAffinities(A, normalize=False)
    assert aff.P.sum() == pytest.approx(25.0)
    Y0 = r.normal(scale=3.0, size=(n, 2))
    seen = []
    emb = TSNEEmbedding(Y0, aff, negative_gradient_method=method, dof=dof, callbacks_every_iters=1,
                        callbacks=lambda it, kl, Y: seen.append((kl, np.array(Y))), **engine_kw)
    emb = emb.optimize(4, learning_rate=10.0)
    assert len(seen) == 4 and emb.kl_divergence == seen[-1][0]
    before_step = [Y0] + [Y for _, Y in seen[:-1]]
    for (kl, _), Y in zip(seen, before_step):
        assert kl == pytest.approx(ref.kl_divergence_unnormalised(Y, A, dof), rel=rtol)
    # the same quantity in terms of the normalised KL: s (KL(P / s || Q) + log s)
    assert seen[0][0] == pytest.approx(25.0 * (ref.kl_divergence(Y0, A / 25.0, dof) + np.log(25.0)), rel=rtol)


def test_partial_gradient_matches_reference():
    from turbotsne.gradients import PartialGradient, make_repulsion

    r = np.random.default_rng(0)
    R, Y = r.normal(size=(300, 2)) * 5, r.normal(size=(40, 2)) * 5
    P = sp.random(40, 300, density=0.05, random_state=0, format="csr")
    P = sp.csr_matrix(P.multiply(1.0 / P.sum(axis=1)))
    for dof in (1.0, 0.6):
        out = np.empty_like(Y)
        kl = PartialGradient(R, make_repulsion("exact", reference=R)).gradient(Y, P, dof, 2.0, out, True)
        rep, z = ref.reference_repulsion(Y, R, dof)
        diff = Y[:, None, :] - R[None, :, :]
        w = ref.kernel(np.einsum("ijk,ijk->ij", diff, diff), dof)
        attr = np.einsum("ij,ijk->ik", 2.0 * P.toarray() * w ** (1 / dof), diff)
        np.testing.assert_allclose(out, attr - rep / z[:, None], rtol=1e-9, atol=1e-12)
        Pd = P.toarray()
        q = w / z[:, None]
        m = Pd > 0
        assert kl == pytest.approx(np.sum(Pd[m] * np.log(Pd[m] / q[m])) / 40, rel=1e-9)


def test_prepare_partial_median_and_weighted(clusters, fitted):
    Xtr, _, Xte, _ = clusters
    emb = fitted("exact").tsne_embedding_
    R = emb.embedding
    partial = emb.prepare_partial(Xte[:10], initialization="median", k=5)
    for i, x in enumerate(Xte[:10]):
        # the 5 nearest training points by brute force; per coordinate, the middle of their 5 positions
        nearest = np.argsort(np.linalg.norm(Xtr - x, axis=1), kind="stable")[:5]
        for c in range(2):
            assert partial.embedding[i, c] == sorted(R[j, c] for j in nearest)[2]
    assert partial.P.shape == (10, 700)
    np.testing.assert_allclose(np.asarray(partial.P.sum(axis=1)).ravel(), 1.0)
    weighted = emb.prepare_partial(Xte[:10], initialization="weighted")
    W = weighted.P.toarray()
    np.testing.assert_allclose(W.sum(axis=1), 1.0)
    for i in range(10):
        # the mean of the reference positions weighted by the new point's affinities
        mean = np.zeros(2)
        for j in range(R.shape[0]):
            mean += W[i, j] * R[j]
        np.testing.assert_allclose(weighted.embedding[i], mean, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="'initialization' parameter of prepare_partial"):
        emb.prepare_partial(Xte[:10], initialization="pca")


def test_pickle_round_trip_gives_identical_results(clusters, fitted, tmp_path):
    Xte = clusters[2]
    tsne = fitted("bh")
    again = pickle.loads(pickle.dumps(tsne))
    assert_same_up_to_rounding(again.transform(Xte[:30]), tsne.transform(Xte[:30]))
    emb = tsne.tsne_embedding_
    path = tmp_path / "emb.pkl"
    emb.save(path)
    loaded = TSNEEmbedding.load(path)
    a = emb.optimize(20, negative_gradient_method="bh")
    b = loaded.optimize(20, negative_gradient_method="bh")
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# -- affinity classes against dense references -------------------------------------------------
def _dense_knn(X, k):
    D = ((X[:, None] - X[None]) ** 2).sum(-1)
    np.fill_diagonal(D, np.inf)
    idx = np.argsort(D, axis=1, kind="stable")[:, :k]
    return idx, np.take_along_axis(D, idx, 1)


def _sym(cond, idx, n):
    C = np.zeros((n, n))
    np.put_along_axis(C, idx, cond, 1)
    P = C + C.T
    return P / P.sum()


@pytest.fixture(scope="module")
def small():
    return np.random.default_rng(3).normal(size=(150, 4))


def test_fixed_sigma(small):
    idx, D = _dense_knn(small, 20)
    W = np.exp(-D / (2 * 0.7 ** 2))
    expected = _sym(W / W.sum(1, keepdims=True), idx, 150)
    np.testing.assert_allclose(FixedSigmaNN(small, sigma=0.7, k=20, method="exact").P.toarray(), expected,
                               rtol=1e-9, atol=1e-15)


def test_uniform(small):
    idx, _ = _dense_knn(small, 12)
    expected = _sym(np.full((150, 12), 1 / 12), idx, 150)
    np.testing.assert_allclose(Uniform(small, k_neighbors=12, method="exact").P.toarray(), expected, atol=1e-15)


def test_multiscale_is_the_average_of_single_scales(small):
    idx, D = _dense_knn(small, 45)
    conds = [conditional_probabilities(D, p) for p in (5, 15)]  # checked against ref in test_affinity
    expected = _sym((conds[0] + conds[1]) / 2, idx, 150)
    np.testing.assert_allclose(Multiscale(small, perplexities=[5, 15], method="exact").P.toarray(), expected,
                               rtol=1e-8, atol=1e-14)


def test_multiscale_mixture_mixes_raw_kernels(small):
    idx, D = _dense_knn(small, 45)
    betas = [conditional_probabilities(D, p, return_betas=True)[1] for p in (5, 15)]
    K = sum(np.exp(-b[:, None] * D) for b in betas)
    expected = _sym(K / K.sum(1, keepdims=True), idx, 150)
    np.testing.assert_allclose(MultiscaleMixture(small, perplexities=[5, 15], method="exact").P.toarray(),
                               expected, rtol=1e-8, atol=1e-14)
    with pytest.raises(ValueError, match="'perplexities' parameter of MultiscaleMixture"):
        MultiscaleMixture(small, perplexities=[-1])


def test_precomputed_affinities_validate_and_normalise():
    A = np.random.default_rng(0).random((30, 30))
    A = A + A.T
    aff = PrecomputedAffinities(A)
    assert aff.P.sum() == pytest.approx(1.0) and aff.P.diagonal().sum() == 0
    with pytest.raises(ValueError, match="must be symmetric"):
        PrecomputedAffinities(np.triu(A))
    with pytest.raises(ValueError, match="must be square"):
        PrecomputedAffinities(A[:5])
    with pytest.raises(NotImplementedError, match="cannot relate new points"):
        aff.to_new(np.zeros((2, 3)))
    emb = TSNEEmbedding(np.random.default_rng(0).normal(scale=1e-4, size=(30, 2)), aff,
                        negative_gradient_method="exact").optimize(50)
    assert np.all(np.isfinite(np.asarray(emb)))


@pytest.mark.parametrize("cls, kw", [(PerplexityBasedNN, dict(perplexity=5)), (FixedSigmaNN, dict(sigma=1.0)),
                                     (Uniform, {}), (Multiscale, dict(perplexities=[3, 6]))])
def test_to_new_rows_sum_to_one(small, cls, kw):
    aff = cls(small[:100], method="exact", **kw)
    P = aff.to_new(small[100:])
    assert P.shape == (50, 100)
    np.testing.assert_allclose(np.asarray(P.sum(axis=1)).ravel(), 1.0)
