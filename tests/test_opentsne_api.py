"""openTSNE's main API on turbotsne: ``turbotsne.opentsne`` and the names it re-exports."""
import logging
import pickle

import numpy as np
import pytest

from conftest import assert_same_up_to_rounding, make_clusters
import turbotsne
from turbotsne import opentsne as openTSNE
from turbotsne.opentsne import affinity, callbacks, initialization, nearest_neighbors, utils

FAST = dict(early_exaggeration_iter=30, n_iter=40, random_state=0, n_jobs=1)


@pytest.fixture(scope="module")
def data():
    X, y = make_clusters(260, 6, n_clusters=4, seed=3)
    return X[:220], X[220:]


@pytest.fixture(scope="module")
def fitted(data):
    return openTSNE.TSNE(negative_gradient_method="bh", **FAST).fit(data[0])


# -- the namespace -------------------------------------------------------------------
def test_namespace_re_exports_turbotsne_objects():
    assert openTSNE.TSNEEmbedding is turbotsne.TSNEEmbedding
    assert openTSNE.OptimizationInterrupt is turbotsne.OptimizationInterrupt
    assert openTSNE.sklearn.TSNE is turbotsne.TSNE
    assert openTSNE.affinity.PerplexityBasedNN is turbotsne.affinity.PerplexityBasedNN
    assert openTSNE.tsne.PartialTSNEEmbedding is turbotsne.embedding.PartialTSNEEmbedding
    assert openTSNE.initialization.pca is turbotsne.initialization.pca
    assert openTSNE.callbacks.ErrorLogger is turbotsne.callbacks.ErrorLogger
    assert issubclass(nearest_neighbors.Sklearn, turbotsne.neighbors.Exact)
    assert issubclass(nearest_neighbors.NNDescent, turbotsne.neighbors.PyNNDescent)


# -- TSNE: fit returns the embedding -------------------------------------------------
def test_fit_returns_an_embedding_that_carries_on(fitted, data):
    assert isinstance(fitted, turbotsne.TSNEEmbedding)
    Y = np.asarray(fitted)
    assert Y.shape == (220, 2) and np.all(np.isfinite(Y))
    new = fitted.transform(data[1], n_iter=20)
    assert np.asarray(new).shape == (40, 2)
    more = fitted.optimize(10)
    assert more is not fitted and more.n_iter == fitted.n_iter + 10


def test_fit_gives_the_estimators_coordinates(data):
    params = dict(negative_gradient_method="fft", **FAST)
    Y = np.asarray(openTSNE.TSNE(**params).fit(data[0]))
    assert np.array_equal(Y, turbotsne.TSNE(**params).fit_transform(data[0]))


def test_bh_beyond_three_components_warns_and_sums_exactly(data):
    X = data[0][:120]
    params = dict(n_components=4, negative_gradient_method="bh", neighbors="exact", **FAST)
    with pytest.warns(FutureWarning, match="at most 3 dimensions"):
        Y = np.asarray(openTSNE.TSNE(**params).fit(X))
    exact = openTSNE.TSNE(**{**params, "theta": 0.0}).fit(X)
    assert Y.shape == (120, 4) and np.array_equal(Y, np.asarray(exact))
    with pytest.raises(ValueError, match="'bh' supports at most 3 embedding dimensions"):
        turbotsne.TSNE(**params).fit(X)  # the scikit-learn estimator refuses


def test_prepare_initial_is_not_optimised(data):
    tsne = openTSNE.TSNE(initialization="random", **FAST)
    emb = tsne.prepare_initial(data[0])
    assert emb.n_iter == 0 and emb.kl_divergence is None
    assert np.std(np.asarray(emb)[:, 0]) == pytest.approx(1e-4, rel=0.2)


def test_fit_on_precomputed_affinities_without_data(data):
    aff = affinity.PerplexityBasedNN(data[0], perplexity=20)
    with pytest.warns(UserWarning, match="PCA initialisation needs the data"):
        emb = openTSNE.TSNE(**FAST).fit(affinities=aff)
    assert emb.affinities is aff and np.asarray(emb).shape == (220, 2)
    emb2 = openTSNE.TSNE(**FAST).fit(affinities=aff, initialization="spectral")
    assert np.array_equal(np.asarray(emb), np.asarray(emb2))


def test_fit_checks_its_inputs(data):
    with pytest.raises(ValueError, match="'affinities' parameter of TSNE.fit"):
        openTSNE.TSNE(**FAST).fit(data[0], affinities="nonsense")
    with pytest.raises(ValueError, match="needs the data X or precomputed affinities"):
        openTSNE.TSNE(**FAST).fit()
    with pytest.raises(ValueError, match="n_components = 2 columns"):
        openTSNE.TSNE(initialization=np.zeros((10, 3)))


def test_list_of_perplexities_is_multiscale(data):
    emb = openTSNE.TSNE(perplexity=[10, 20], **FAST).fit(data[0])
    assert isinstance(emb.affinities, affinity.Multiscale)
    assert emb.affinities.effective_perplexities_ == [10.0, 20.0]
    assert np.asarray(emb.transform(data[1][:5], perplexity=[5, 10], n_iter=5)).shape == (5, 2)


def test_estimator_prepare_initial_and_knn_kwargs(data):
    est = turbotsne.TSNE(neighbors="hnsw", knn_kwargs={"M": 8}, **FAST)
    emb = est.prepare_initial(data[0])
    assert emb.affinities.knn_index.M == 8 and emb.n_iter == 0
    assert est.get_params()["knn_kwargs"] == {"M": 8}
    with pytest.raises(ValueError, match="knn_kwargs needs the 'method'"):
        turbotsne.TSNE(knn_kwargs={"M": 8}, **FAST).fit(data[0])


# -- TSNEEmbedding --------------------------------------------------------------------
def test_optimizer_state(data):
    emb = openTSNE.TSNE(**FAST).prepare_initial(data[0])
    assert emb.optimizer.gains is None
    once = emb.optimize(5)
    assert emb.optimizer.gains is None and once.optimizer.gains.shape == (220, 2)
    twice = once.optimize(5)
    assert twice.optimizer is not once.optimizer
    assert not np.array_equal(twice.optimizer.gains, once.optimizer.gains)


@pytest.mark.parametrize("init", ["median", "weighted", "random"])
def test_prepare_partial_initializations(fitted, data, init):
    partial = fitted.prepare_partial(data[1], initialization=init, k=10)
    Y = np.asarray(partial)
    assert Y.shape == (40, 2) and np.all(np.isfinite(Y))
    if init == "random":
        assert np.std(Y[:, 0]) < 1e-3
    else:
        assert np.std(Y[:, 0]) > 1e-2  # among the reference points


def test_base_follows_inplace(fitted, data):
    same = fitted.optimize(2, inplace=True)
    assert same is fitted and same.base is fitted.base
    other = fitted.optimize(2)
    assert other.base is not fitted.base and np.shares_memory(np.asarray(fitted), fitted.base)
    partial = fitted.prepare_partial(data[1])
    assert partial.optimize(2, inplace=True).base is partial.base
    assert partial.optimize(2).base is not partial.base


def test_embeddings_are_float64_arrays(fitted, data):
    partial = fitted.prepare_partial(data[1])
    for emb in (fitted, partial, fitted.transform(data[1], n_iter=5)):
        assert isinstance(emb, np.ndarray) and emb.dtype == np.float64 and emb.ndim == 2
        assert emb.flags.c_contiguous
        assert type(emb.embedding) is np.ndarray and np.shares_memory(emb.embedding, emb)


def test_indexing_and_arithmetic_give_plain_arrays(fitted):
    Y = fitted.embedding.copy()
    for result, expected in ((fitted[:, 0], Y[:, 0]), (fitted[:25], Y[:25]), (fitted * 2, Y * 2),
                             (fitted - fitted, np.zeros_like(Y)), (np.mean(fitted, axis=0), Y.mean(axis=0)),
                             (fitted.sum(), Y.sum()), (np.median(fitted, axis=0), np.median(Y, axis=0))):
        assert not isinstance(result, turbotsne.TSNEEmbedding)
        np.testing.assert_array_equal(result, expected)
    assert [type(row) for row in fitted][:1] == [np.ndarray]
    assert (fitted == Y).all() and (fitted == fitted).shape == Y.shape  # element-wise, like any array
    with pytest.raises(TypeError):
        hash(fitted)


def test_in_place_operators_keep_the_embedding(data):
    emb = openTSNE.TSNE(negative_gradient_method="bh", **FAST).prepare_initial(data[0])
    before = emb.embedding.copy()
    buffer = emb.base
    emb += 1.0
    assert isinstance(emb, turbotsne.TSNEEmbedding) and emb.base is buffer
    np.testing.assert_array_equal(emb, before + 1.0)
    emb[0] = 5.0
    assert np.all(emb.embedding[0] == 5.0)


def test_assert_equal_compares_coordinates(data):
    tsne = openTSNE.TSNE(negative_gradient_method="bh", **FAST)
    first, second = tsne.fit(data[0]), tsne.fit(data[0])
    np.testing.assert_equal(first, second)
    with pytest.raises(AssertionError):
        np.testing.assert_equal(first, first.optimize(3))


def test_copies_keep_attributes_and_own_state(fitted):
    import copy

    for other in (fitted.copy(), copy.copy(fitted)):
        assert isinstance(other, turbotsne.TSNEEmbedding) and other.affinities is fitted.affinities
        assert other.n_iter == fitted.n_iter and not np.shares_memory(other, fitted)
        assert other.optimizer_state.gains is not fitted.optimizer_state.gains


def test_save_load_and_pickle_keep_attributes(fitted, data, tmp_path):
    np.save(tmp_path / "emb.npy", fitted)
    np.testing.assert_array_equal(np.load(tmp_path / "emb.npy"), fitted.embedding)
    expected = fitted.transform(data[1], n_iter=10)
    for copy in (pickle.loads(pickle.dumps(fitted)), _save_load(fitted, tmp_path / "emb.pkl")):
        assert type(copy) is type(fitted) and copy.n_iter == fitted.n_iter
        assert copy.gradient_descent_params == fitted.gradient_descent_params
        np.testing.assert_array_equal(copy, fitted)
        np.testing.assert_array_equal(copy.optimizer_state.gains, fitted.optimizer_state.gains)
        assert_same_up_to_rounding(copy.transform(data[1], n_iter=10), expected)
    partial = pickle.loads(pickle.dumps(expected))
    assert isinstance(partial, turbotsne.embedding.PartialTSNEEmbedding) and partial.kl_divergence is not None
    np.testing.assert_array_equal(partial.P.toarray(), expected.P.toarray())


def _save_load(embedding, path):
    embedding.save(path)
    return type(embedding).load(path)


def test_optimize_writes_into_the_same_buffer_only_in_place(data):
    emb = openTSNE.TSNE(negative_gradient_method="bh", **FAST).prepare_initial(data[0])
    start = emb.embedding.copy()
    address = emb.ctypes.data
    other = emb.optimize(5)
    np.testing.assert_array_equal(emb, start)
    assert other.ctypes.data != address and not np.array_equal(other, start)
    same = emb.optimize(5, inplace=True)
    assert same is emb and emb.ctypes.data == address
    np.testing.assert_array_equal(emb, other)


def test_prepared_interpolation_grid_is_reused(data, monkeypatch):
    from turbotsne.gradients.fft import FFTReferenceRepulsion

    grids = []
    regrid = FFTReferenceRepulsion._regrid
    monkeypatch.setattr(FFTReferenceRepulsion, "_regrid", lambda self, *a: grids.append(1) or regrid(self, *a))
    emb = openTSNE.TSNE(negative_gradient_method="fft", **FAST).fit(data[0])
    params = dict(n_iter=30, negative_gradient_method="fft")
    plain = emb.transform(data[1], **params)
    assert len(grids) >= 1  # unprepared: each transform builds its grid
    assert emb.prepare_interpolation_grid() is emb
    prepared = emb.__dict__["_interpolation_grid"][1]
    charges = prepared._charges
    del grids[:]
    first = emb.transform(data[1], **params)
    second = emb.transform(data[1], **params)
    assert grids == []  # the transforms start from the prepared grid and keep it
    assert_same_up_to_rounding(first, second)
    assert prepared._charges is charges  # built once, never rebuilt by a transform
    np.testing.assert_allclose(first, plain, atol=2e-3 * np.ptp(np.asarray(emb)))
    emb.optimize(1, inplace=True)  # the coordinates move: the grid is dropped
    assert "_interpolation_grid" not in emb.__dict__
    assert_same_up_to_rounding(emb.transform(data[1], **params), emb.copy().transform(data[1], **params))


def test_bh_transform_does_not_use_the_grid(fitted, data, monkeypatch):
    def fail(self, *args, **kwargs):
        raise AssertionError("prepare_interpolation_grid called")

    monkeypatch.setattr(turbotsne.TSNEEmbedding, "prepare_interpolation_grid", fail)
    assert np.asarray(fitted.transform(data[1], n_iter=5)).shape == (40, 2)


def test_interpolation_grid_padding_is_checked(data):
    emb = openTSNE.TSNE(**FAST).prepare_initial(data[0][:50])
    with pytest.raises(ValueError, match="padding"):
        emb.prepare_interpolation_grid(padding=-1)


def test_random_state_is_kept_as_given(data):
    rs = np.random.RandomState(1)
    emb = turbotsne.TSNEEmbedding(np.zeros((3, 2)) + np.arange(3)[:, None],
                                  affinity.PrecomputedAffinities(np.ones((3, 3)) - np.eye(3)), random_state=rs)
    assert emb.random_state is rs


# -- affinities -----------------------------------------------------------------------
@pytest.mark.parametrize("symmetrize", [True, "mean", "max", False])
def test_symmetrize(data, symmetrize):
    # uniform conditionals (1/k each): the mean gives two values (pairs found both ways or one way),
    # the maximum one value, no symmetrisation one value on a non-symmetric P
    P = affinity.Uniform(data[0], k_neighbors=10, symmetrize=symmetrize).P
    assert P.sum() == pytest.approx(1.0)
    n_values = len(np.unique(np.round(P.data / P.data.max(), 9)))
    assert n_values == (2 if symmetrize in (True, "mean") else 1)
    assert (abs(P - P.T).max() == 0) == (symmetrize is not False)
    if symmetrize is not False:
        assert np.array_equal(P.toarray(), affinity.Uniform(data[0], k_neighbors=10).P.toarray()) == \
            (symmetrize != "max")


def test_symmetrize_is_checked(data):
    with pytest.raises(ValueError, match="'symmetrize' parameter of Uniform"):
        affinity.Uniform(data[0], symmetrize="sometimes")


def test_set_perplexity(data, caplog):
    aff = affinity.PerplexityBasedNN(data[0], perplexity=20)
    nnz = aff.P.nnz
    aff.set_perplexity(10)
    assert aff.perplexity == aff.effective_perplexity_ == 10 and aff.P.nnz < nnz
    fresh = affinity.PerplexityBasedNN(data[0], perplexity=10)
    assert np.allclose(aff.P.toarray(), fresh.P.toarray(), atol=1e-12)
    with caplog.at_level(logging.WARNING, logger="turbotsne.affinity"):
        aff.set_perplexity(40)  # 60 neighbours were found: truncated there
    assert "truncated" in caplog.text and aff.P.nnz == nnz
    with pytest.raises(RuntimeError, match="above the 60 neighbours"):
        aff.set_perplexity(70)


def test_set_perplexities(data):
    aff = affinity.Multiscale(data[0], perplexities=[10, 20])
    aff.set_perplexities([5, 10])
    assert aff.effective_perplexities_ == [5.0, 10.0]
    fresh = affinity.Multiscale(data[0], perplexities=[5, 10])
    assert np.allclose(aff.P.toarray(), fresh.P.toarray(), atol=1e-12)
    with pytest.raises(RuntimeError, match="needs 63 neighbours per point but 60 were found"):
        aff.set_perplexities([10, 21])


def test_effective_perplexity_and_scalar_perplexities():
    X = np.random.default_rng(0).normal(size=(31, 3))
    with pytest.warns(UserWarning, match="too high"):
        aff = affinity.PerplexityBasedNN(X, perplexity=30)
    assert aff.effective_perplexity_ == pytest.approx(10.0) and aff.perplexity == 30  # the value given
    with pytest.warns(UserWarning, match="too high"):
        dense = affinity.PerplexityBasedDense(X, perplexity=30)
    assert dense.perplexity == 30 and dense.effective_perplexity_ == pytest.approx(10.0)
    with pytest.warns(UserWarning, match="too high"):
        at_ten = affinity.PerplexityBasedNN(X, perplexity=10.000001)
    assert np.allclose(at_ten.P.toarray(), aff.P.toarray(), rtol=1e-5)  # P follows the value used
    ms = affinity.MultiscaleMixture(X, perplexities=5)
    assert ms.perplexities == 5 and ms.effective_perplexities_ == [5.0]
    with pytest.warns(UserWarning, match="too high"):
        ms = affinity.Multiscale(X, perplexities=[5, 20, 40])
    assert ms.perplexities == [5, 20, 40] and ms.effective_perplexities_ == [5.0, 10.0]


def test_affinities_from_a_bound_index(data):
    index = nearest_neighbors.Sklearn(data[0], 30)
    from_index = affinity.PerplexityBasedNN(knn_index=index, perplexity=10)
    from_data = affinity.PerplexityBasedNN(data[0], perplexity=10, method="exact")
    assert np.allclose(from_index.P.toarray(), from_data.P.toarray())
    assert from_index.to_new(data[1]).shape == (40, 220)
    with pytest.raises(ValueError, match="either the data or a knn_index"):
        affinity.Uniform(data[0], knn_index=nearest_neighbors.Sklearn(data[0], 10))
    with pytest.raises(ValueError, match="needs the data or a knn_index"):
        affinity.FixedSigmaNN(sigma=1)


def test_affinities_from_precomputed_neighbors(data):
    ind, dist = nearest_neighbors.Sklearn(data[0], 15).build()
    aff = affinity.Uniform(knn_index=nearest_neighbors.PrecomputedNeighbors(ind, dist), k_neighbors=15)
    assert aff.P.shape == (220, 220) and aff.P.sum() == pytest.approx(1.0)


def test_knn_kwargs_reach_the_index(data):
    aff = affinity.PerplexityBasedNN(data[0], perplexity=10, method="annoy", knn_kwargs={"n_trees": 7})
    assert aff.knn_index.n_trees == 7
    with pytest.raises(ValueError, match="knn_kwargs needs the 'method'"):
        affinity.PerplexityBasedNN(data[0], knn_kwargs={"n_trees": 7})


def test_knn_kwargs_reach_the_library(data, monkeypatch):
    import sklearn.neighbors

    made = []

    class Recorder(sklearn.neighbors.NearestNeighbors):
        def __init__(self, **kw):
            made.append(kw)
            super().__init__(**kw)

    monkeypatch.setattr(sklearn.neighbors, "NearestNeighbors", Recorder)
    tree = dict(algorithm="kd_tree", leaf_size=7)
    aff = affinity.Uniform(data[0], k_neighbors=8, method="exact", knn_kwargs=tree)
    openTSNE.TSNE(neighbors="exact", knn_kwargs=tree, **FAST).prepare_initial(data[0])
    nearest_neighbors.Sklearn(data[0], 8, knn_kwargs=tree).build()
    assert len(made) == 3 and all(kw["algorithm"] == "kd_tree" and kw["leaf_size"] == 7 for kw in made)
    brute = affinity.Uniform(data[0], k_neighbors=8, method="exact")  # the blas brute force
    assert len(made) == 3 and np.allclose(aff.P.toarray(), brute.P.toarray())


def test_knn_kwargs_reach_pynndescent(data, monkeypatch):
    import pynndescent

    seen = []
    real = pynndescent.NNDescent

    def recorder(*args, **kw):
        seen.append(kw)
        return real(*args, **kw)

    monkeypatch.setattr(pynndescent, "NNDescent", recorder)
    nearest_neighbors.NNDescent(data[0], 5, random_state=3, knn_kwargs=dict(n_trees=4, leaf_size=12)).build()
    affinity.Uniform(data[0], 5, method="pynndescent", random_state=3, knn_kwargs=dict(leaf_size=12))
    assert seen[0]["n_trees"] == 4 and seen[0]["leaf_size"] == 12 and seen[1]["leaf_size"] == 12
    assert seen[0]["random_state"] == 3  # openTSNE's class: as given
    assert isinstance(seen[1]["random_state"], np.random.RandomState)  # turbotsne's: seeded from it


@pytest.mark.parametrize("cls, method", [("Sklearn", "exact"), ("Annoy", "annoy"), ("HNSW", "hnsw"),
                                         ("NNDescent", "pynndescent")])
def test_unknown_knn_kwargs_name_the_index(data, cls, method):
    with pytest.raises(TypeError, match=f"'{method}' nearest-neighbour index .* unexpected knn_kwargs"):
        getattr(nearest_neighbors, cls)(data[0], 5, knn_kwargs={"bogus": 1})
    with pytest.raises(TypeError, match=f"'{method}' nearest-neighbour index .* unexpected knn_kwargs"):
        affinity.PerplexityBasedNN(data[0], 5, method=method, knn_kwargs={"bogus": 1})


# -- nearest_neighbors ------------------------------------------------------------------
@pytest.mark.parametrize("cls", ["Sklearn", "Annoy", "HNSW", "NNDescent"])
def test_index_calling_convention(data, cls):
    index = getattr(nearest_neighbors, cls)(data[0], 12, metric="euclidean", random_state=0)
    assert index.index is None
    ind, dist = index.build()
    assert ind.shape == dist.shape == (220, 12) and index.index is not None
    q_ind, q_dist = index.query(data[1], 5)
    assert q_ind.shape == (40, 5) and np.all(np.diff(q_dist, axis=1) >= 0)
    assert "euclidean" in type(index).VALID_METRICS
    clone = pickle.loads(pickle.dumps(index))
    assert np.array_equal(clone.query(data[1], 5)[0], q_ind)


def test_sklearn_index_reports_scipys_cosine_distances(data):
    from scipy.spatial.distance import cdist

    index = nearest_neighbors.Sklearn(data[0], 6, metric="cosine")
    ind, dist = index.build()
    assert np.array_equal(dist, np.take_along_axis(cdist(data[0], data[0], "cosine"), ind, axis=1))
    q_ind, q_dist = index.query(data[1], 4)
    assert np.array_equal(q_dist, np.take_along_axis(cdist(data[1], data[0], "cosine"), q_ind, axis=1))
    own_ind, own_dist = turbotsne.neighbors.Exact("cosine").build(data[0], 6)  # same neighbours
    assert np.array_equal(own_ind, ind) and np.allclose(own_dist, dist, rtol=0, atol=1e-14)


def test_index_checks_its_metric(data):
    with pytest.raises(ValueError, match="does not support metric"):
        nearest_neighbors.Annoy(data[0], 5, metric="chebyshev")


def test_nndescent_compiles_a_python_metric(data):
    def manhattan(a, b):
        return np.sum(np.abs(a - b))

    index = nearest_neighbors.NNDescent(data[0], 5, metric=manhattan, random_state=0)
    assert index.check_metric(manhattan) is not manhattan  # compiled
    ind, _ = index.build()
    exact, _ = nearest_neighbors.Sklearn(data[0], 5, metric="manhattan").build()
    assert np.mean(ind == exact) > 0.9


def test_precomputed_distance_matrix(data):
    from scipy.spatial.distance import cdist

    D = cdist(data[0], data[0])
    ind, dist = nearest_neighbors.PrecomputedDistanceMatrix(D, 7).build()
    ref_ind, ref_dist = nearest_neighbors.Sklearn(data[0], 7).build()
    assert np.array_equal(ind, ref_ind) and np.allclose(dist, ref_dist)
    with pytest.raises(ValueError, match="cannot be queried"):
        nearest_neighbors.PrecomputedNeighbors(ind, dist).query(data[1], 3)
    # the index the affinity classes make for metric="precomputed" is one
    aff = affinity.PerplexityBasedNN(D, perplexity=5, metric="precomputed")
    assert isinstance(aff.knn_index, nearest_neighbors.PrecomputedDistanceMatrix)
    assert not isinstance(nearest_neighbors.Sklearn(data[0], 7), nearest_neighbors.PrecomputedDistanceMatrix)
    bound = affinity.PerplexityBasedNN(knn_index=nearest_neighbors.PrecomputedDistanceMatrix(D, 15), perplexity=5)
    assert np.allclose(bound.P.toarray(), aff.P.toarray())


# -- initialization ---------------------------------------------------------------------
def test_initialization_functions(data):
    X = data[0]
    assert initialization.random(X, random_state=0).shape == (220, 2)
    assert np.array_equal(initialization.random(X, random_state=0), initialization.random(220, random_state=0))
    Y = initialization.pca(X, random_state=0)
    assert np.allclose(initialization.pca(X, random_state=0, svd_solver="full", add_jitter=False), Y, atol=1e-12)
    jittered = initialization.pca(X, random_state=0, add_jitter=True)
    assert not np.array_equal(jittered, Y) and np.allclose(jittered, Y, atol=0.05 * 1e-4 * 5)
    P = affinity.PerplexityBasedNN(X, perplexity=10).P
    S = initialization.spectral(P, random_state=0)
    assert initialization.spectral(P, random_state=0, add_jitter=True).shape == S.shape
    Z = np.arange(12.0).reshape(6, 2)
    same = initialization.rescale(Z, inplace=True)
    assert same is Z and np.std(Z[:, 0]) == pytest.approx(1e-4)
    assert initialization.jitter(Z, random_state=0) is not Z


def test_placement_of_new_points():
    E = np.array([[0.0, 0.0], [1.0, 0.0], [3.0, 3.0]])
    neighbors = np.array([[0, 1, 2], [2, 1, 0]])
    assert np.array_equal(initialization.median(E, neighbors), [[1.0, 0.0], [1.0, 0.0]])
    W = initialization.weighted_mean(None, E, neighbors, np.array([[0.0, 1.0, 1.0], [1.0, 1.0, 2.0]]))
    assert np.allclose(W[0], E[0])
    assert np.allclose(W[1], (0.4 * E[2] + 0.4 * E[1] + 0.2 * E[0]))


# -- callbacks, tsne, utils -------------------------------------------------------------
def test_verify_exaggeration_error(data, caplog):
    emb = openTSNE.TSNE(**FAST).prepare_initial(data[0])
    check = callbacks.VerifyExaggerationError(emb)
    emb.optimize(10, exaggeration=12, callbacks=[check], callbacks_every_iters=2, inplace=True)
    emb.affinities.P = emb.affinities.P * 12
    with pytest.raises(RuntimeError, match="affinities changed"):
        check(1, 0.0, np.asarray(emb))


def test_kl_divergence_functions(fitted):
    from turbotsne.metrics import kl_divergence

    exact = kl_divergence(fitted.P, np.asarray(fitted), method="exact")
    assert openTSNE.tsne.kl_divergence_bh(fitted, fitted.P) == pytest.approx(exact, rel=0.05)
    assert openTSNE.tsne.kl_divergence_fft(fitted, fitted.P) == pytest.approx(exact, rel=0.05)
    with pytest.raises(ValueError, match="reference_embedding is not supported"):
        openTSNE.tsne.kl_divergence_bh(fitted, fitted.P, reference_embedding=np.asarray(fitted))


def test_utils():
    assert utils.is_package_installed("numpy") and not utils.is_package_installed("no_such_package_here")
    pts = np.array([[0.0, 2.0], [0.3, 0.4], [-3.0, -4.0]])
    clipped, mask = utils.clip_point_to_disc(pts, 1.0)
    assert np.array_equal(mask, [True, False, True])
    assert np.allclose(clipped, [[0.0, 1.0], [0.3, 0.4], [-0.6, -0.8]]) and pts[0, 1] == 2.0
    _, _ = utils.clip_point_to_disc(pts, 1.0, inplace=True)
    assert pts[0, 1] == 1.0
