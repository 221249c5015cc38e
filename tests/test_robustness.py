"""Robustness: parameter validation, awkward data, determinism, numerical safety, interrupts, memory.

Every case ends either in a finite result or in a clear error checked with ``match=``.
Runs are tiny (a few dozen points, a few iterations) to keep the file fast.
"""
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import turbotsne
from turbotsne import TSNE, OptimizationInterrupt, PerplexityBasedDense, PerplexityBasedNN, TSNEEmbedding
from turbotsne import affinity as affinity_module
from turbotsne.affinity import FixedSigmaNN, Multiscale, MultiscaleMixture, PrecomputedAffinities, Uniform

FAST = dict(early_exaggeration_iter=5, n_iter=10, random_state=0)
METHODS = ["exact", "bh", "fft"]


def _X(n=40, f=5, seed=0):
    return np.random.RandomState(seed).normal(size=(n, f))


def _fit(X, **kw):
    params = {**FAST, "neighbors": "exact", **kw}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # perplexity reduced, PCA fallback: tested separately
        return TSNE(**params).fit_transform(X)


def _assert_finite_embedding(Y, n, d=2):
    assert Y.shape == (n, d)
    assert np.all(np.isfinite(Y))


@pytest.fixture(scope="module")
def fitted():
    X = _X(60, 4)
    tsne = TSNE(**FAST, neighbors="exact", negative_gradient_method="bh").fit(X)
    return X, tsne


# --------------------------------------------------------------------------- #
# 1. Bad parameters: a table of (constructor kwargs, message)
# --------------------------------------------------------------------------- #
BAD_TSNE_PARAMS = [
    ({"n_components": 0}, r"'n_components' parameter of TSNE must be an int in the range \[1, inf\)"),
    ({"n_components": 2.5}, r"'n_components' parameter of TSNE must be an int"),
    ({"perplexity": -1}, r"'perplexity' parameter of TSNE must be a float in the range \(0.0, inf\). Got -1"),
    ({"perplexity": 0}, r"'perplexity' parameter of TSNE must be a float"),
    ({"perplexity": np.nan}, r"'perplexity' parameter of TSNE"),
    ({"perplexity": "30"}, r"'perplexity' parameter of TSNE"),
    ({"learning_rate": 0}, r"'learning_rate' parameter of TSNE must be a float in the range \(0.0, inf\) or 'auto'"),
    ({"learning_rate": "fast"}, r"'learning_rate' parameter of TSNE"),
    ({"learning_rate": np.inf}, r"'learning_rate' parameter of TSNE must be a float in the range \(0.0, inf\)"),
    ({"perplexity": np.inf}, r"'perplexity' parameter of TSNE must be a float in the range \(0.0, inf\)"),
    ({"exaggeration": np.inf}, r"'exaggeration' parameter of TSNE"),
    ({"dof": np.inf}, r"'dof' parameter of TSNE"),
    ({"max_step_norm": np.inf}, r"'max_step_norm' parameter of TSNE .* or None"),
    ({"early_exaggeration_iter": -1}, r"'early_exaggeration_iter' parameter of TSNE must be an int"),
    ({"early_exaggeration": -12}, r"'early_exaggeration' parameter of TSNE"),
    ({"n_iter": -5}, r"'n_iter' parameter of TSNE must be an int in the range \[0, inf\)"),
    ({"n_iter": 10.5}, r"'n_iter' parameter of TSNE must be an int"),
    ({"exaggeration": 0}, r"'exaggeration' parameter of TSNE must be a float in the range \(0.0, inf\) or None"),
    ({"dof": 0}, r"'dof' parameter of TSNE must be a float in the range \(0.0, inf\)"),
    ({"dof": -1}, r"'dof' parameter of TSNE"),
    ({"theta": -0.5}, r"'theta' parameter of TSNE must be a float in the range \[0.0, inf\)"),
    ({"n_interpolation_points": 0}, r"'n_interpolation_points' parameter of TSNE"),
    ({"min_num_intervals": 0}, r"'min_num_intervals' parameter of TSNE"),
    ({"ints_in_interval": 0}, r"'ints_in_interval' parameter of TSNE"),
    ({"initialization": "magic"}, r"'initialization' parameter of TSNE must be a str among"),
    ({"initialization": np.zeros((3, 2))}, r"'initialization' array must have shape"),
    ({"initialization": np.full((40, 2), np.nan)}, r"'initialization' array contains NaN"),
    ({"metric": 3}, r"'metric' parameter of TSNE must be a str or a callable"),
    ({"metric": "no-such-metric"}, r"does not support metric='no-such-metric'"),
    ({"metric_params": [1]}, r"'metric_params' parameter of TSNE must be a dict or None"),
    ({"initial_momentum": 1.0}, r"'initial_momentum' parameter of TSNE must be a float in the range \[0.0, 1.0\)"),
    ({"final_momentum": -0.1}, r"'final_momentum' parameter of TSNE"),
    ({"max_grad_norm": 0}, r"'max_grad_norm' parameter of TSNE"),
    ({"max_step_norm": -1}, r"'max_step_norm' parameter of TSNE"),
    ({"n_jobs": 0}, r"'n_jobs' parameter of TSNE must be a non-zero int"),
    ({"n_jobs": 1.5}, r"'n_jobs' parameter of TSNE"),
    ({"neighbors": "kdtree"}, r"'neighbors' parameter of TSNE must be a str among"),
    ({"negative_gradient_method": "sgd"}, r"'negative_gradient_method' parameter must be one of"),
    ({"callbacks": 5}, r"'callbacks' parameter of TSNE must be a callable or a list of callables"),
    ({"callbacks_every_iters": 0}, r"'callbacks_every_iters' parameter of TSNE"),
    ({"random_state": "seed"}, r"cannot be used to seed"),
    ({"verbose": "yes"}, r"'verbose' parameter of TSNE must be a bool"),
    ({"n_iter_without_progress": 0}, r"'n_iter_without_progress' parameter of TSNE"),
    ({"min_grad_norm": -1.0}, r"'min_grad_norm' parameter of TSNE"),
    ({"negative_gradient_method": "bh", "n_components": 4}, r"'bh' supports at most 3 embedding dimensions"),
    ({"negative_gradient_method": "fft", "n_components": 4}, r"'fft' supports n_components of 1, 2 or 3"),
]


@pytest.mark.parametrize("params, match", BAD_TSNE_PARAMS, ids=[str(p) for p, _ in BAD_TSNE_PARAMS])
def test_bad_tsne_parameter(params, match):
    with pytest.raises(ValueError, match=match):
        TSNE(**{**FAST, "neighbors": "exact", **params}).fit(_X())


BAD_DATA = [
    ("nan", lambda: np.where(np.eye(40, 5) > 0, np.nan, _X()), r"Input X contains NaN"),
    ("inf", lambda: np.where(np.eye(40, 5) > 0, np.inf, _X()), r"Input X contains infinity"),
    ("-inf", lambda: np.where(np.eye(40, 5) > 0, -np.inf, _X()), r"Input X contains infinity"),
    ("nan-sparse", lambda: sp.csr_matrix(np.where(np.eye(40, 5) > 0, np.nan, _X())), r"Input X contains NaN"),
    ("n=0", lambda: np.zeros((0, 5)), r"0 sample\(s\) .* minimum of 2 is required"),
    ("n=1", lambda: np.zeros((1, 5)), r"1 sample\(s\) .* minimum of 2 is required"),
    ("0 features", lambda: np.zeros((10, 0)), r"0 feature\(s\)"),
    ("1-D", lambda: np.arange(10.0), r"Expected 2D array"),
    ("3-D", lambda: np.zeros((4, 3, 2)), r"Found array with dim 3"),
    ("strings", lambda: np.array([["a", "b"]] * 5), r"dtype='numeric' is not compatible|could not convert"),
    ("complex", lambda: _X() + 1j, r"Complex data not supported"),
]


@pytest.mark.parametrize("make, match", [(m, r) for _, m, r in BAD_DATA], ids=[i for i, _, _ in BAD_DATA])
def test_bad_input_data(make, match):
    with pytest.raises(ValueError, match=match):
        TSNE(**FAST).fit(make())


BAD_AFFINITY = [
    (PerplexityBasedNN, {"perplexity": -1}, r"'perplexity' parameter of PerplexityBasedNN must be a float"),
    (PerplexityBasedNN, {"perplexity": np.inf}, r"'perplexity' parameter of PerplexityBasedNN"),
    (PerplexityBasedNN, {"k_neighbors": 0}, r"'k_neighbors' parameter of PerplexityBasedNN"),
    (PerplexityBasedNN, {"k_neighbors": "many"}, r"'k_neighbors' parameter of PerplexityBasedNN"),
    (PerplexityBasedNN, {"method": "kdtree"}, r"'method' parameter of PerplexityBasedNN must be a KNNIndex"),
    (PerplexityBasedNN, {"metric": 1}, r"'metric' parameter of PerplexityBasedNN"),
    (PerplexityBasedNN, {"metric_params": 2}, r"'metric_params' parameter of PerplexityBasedNN"),
    (PerplexityBasedNN, {"n_jobs": 0}, r"'n_jobs' parameter of PerplexityBasedNN"),
    (PerplexityBasedNN, {"knn_index": "exact"}, r"'knn_index' parameter of PerplexityBasedNN"),
    (FixedSigmaNN, {"sigma": 0}, r"'sigma' parameter of FixedSigmaNN"),
    (FixedSigmaNN, {"sigma": 1, "k": 0}, r"'k' parameter of FixedSigmaNN"),
    (FixedSigmaNN, {"sigma": 1, "method": None}, r"'method' parameter of FixedSigmaNN"),
    (Uniform, {"k_neighbors": -3}, r"'k_neighbors' parameter of Uniform"),
    (Uniform, {"n_jobs": "all"}, r"'n_jobs' parameter of Uniform"),
    (Multiscale, {"perplexities": []}, r"'perplexities' parameter of Multiscale"),
    (Multiscale, {"perplexities": [5, -1]}, r"'perplexities' parameter of Multiscale"),
    (MultiscaleMixture, {"perplexities": [5, np.inf]}, r"'perplexities' parameter of MultiscaleMixture"),
    (MultiscaleMixture, {"perplexities": ["a"]}, r"'perplexities' parameter of MultiscaleMixture"),
    (PerplexityBasedDense, {"perplexity": 0}, r"'perplexity' parameter of PerplexityBasedDense"),
    (PerplexityBasedDense, {"metric": None}, r"'metric' parameter of PerplexityBasedDense"),
    (PerplexityBasedDense, {"n_jobs": 0}, r"'n_jobs' parameter of PerplexityBasedDense"),
    (PerplexityBasedDense, {"allow_large": "yes"}, r"'allow_large' parameter of PerplexityBasedDense"),
]


@pytest.mark.parametrize("cls, params, match", BAD_AFFINITY,
                         ids=[f"{c.__name__}-{p}" for c, p, _ in BAD_AFFINITY])
def test_bad_affinity_parameter(cls, params, match):
    with pytest.raises(ValueError, match=match):
        cls(_X(30, 3), **params)


@pytest.mark.parametrize("cls, params", [
    (PerplexityBasedNN, {}), (FixedSigmaNN, {"sigma": 1.0}), (Uniform, {}), (Multiscale, {"perplexities": [2, 5]}),
    (MultiscaleMixture, {"perplexities": [2, 5]}), (PerplexityBasedDense, {}),
])
@pytest.mark.parametrize("bad, match", [(np.nan, "contains NaN"), (np.inf, "contains infinity")])
def test_affinity_classes_reject_non_finite_data(cls, params, bad, match):
    X = _X(30, 3)
    X[3, 1] = bad
    with pytest.raises(ValueError, match=match):
        cls(X, **params)


def test_affinity_classes_reject_single_sample():
    with pytest.raises(ValueError, match="minimum of 2 is required by PerplexityBasedNN"):
        PerplexityBasedNN(np.zeros((1, 3)))


def test_precomputed_affinities_checks():
    with pytest.raises(ValueError, match="'normalize' parameter of PrecomputedAffinities must be a bool"):
        PrecomputedAffinities(np.eye(3), normalize="yes")
    with pytest.raises(ValueError, match="finite, non-negative"):
        PrecomputedAffinities(np.array([[0, np.nan], [np.nan, 0]]))
    with pytest.raises(ValueError, match="must be symmetric"):
        PrecomputedAffinities(np.array([[0, 1.0], [0.5, 0]]))


@pytest.mark.parametrize("cls, params", [
    (PerplexityBasedNN, {"perplexity": 100}), (PerplexityBasedDense, {"perplexity": 100}),
    (Multiscale, {"perplexities": [2, 100]}), (MultiscaleMixture, {"perplexities": [100]}),
])
def test_perplexity_too_high_is_reduced_in_every_class(cls, params):
    X = _X(20, 3)
    with pytest.warns(UserWarning, match="Perplexity value 100 is too high for 20 samples"):
        aff = cls(X, **params)
    P = aff.P.toarray() if sp.issparse(aff.P) else aff.P
    assert np.all(np.isfinite(P)) and P.sum() == pytest.approx(1.0)


BAD_OPTIMIZE = [
    ({"n_iter": -1}, r"'n_iter' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "learning_rate": -1}, r"'learning_rate' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "exaggeration": 0}, r"'exaggeration' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "momentum": 1.5}, r"'momentum' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "dof": 0}, r"'dof' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "theta": -1}, r"'theta' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "n_jobs": 0}, r"'n_jobs' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "inplace": "no"}, r"'inplace' parameter of TSNEEmbedding.optimize must be a bool"),
    ({"n_iter": 5, "propagate_exception": 2}, r"'propagate_exception' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "min_grad_norm": -1}, r"'min_grad_norm' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "n_iter_without_progress": 0}, r"'n_iter_without_progress' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "verbose": "loud"}, r"'verbose' parameter of TSNEEmbedding.optimize"),
    ({"n_iter": 5, "negative_gradient_method": "sgd"}, r"'negative_gradient_method' parameter must be one of"),
    ({"n_iter": 5, "callbacks": [1]}, r"'callbacks' parameter of TSNEEmbedding.optimize"),
]


@pytest.mark.parametrize("params, match", BAD_OPTIMIZE, ids=[str(p) for p, _ in BAD_OPTIMIZE])
def test_bad_optimize_parameter(fitted, params, match):
    emb = fitted[1].tsne_embedding_
    before = emb.embedding.copy()
    with pytest.raises(ValueError, match=match):
        emb.optimize(**params)
    np.testing.assert_array_equal(emb.embedding, before)


def test_optimize_rejects_unknown_keyword(fitted):
    with pytest.raises(TypeError, match=r"unexpected parameters \['speed'\]"):
        fitted[1].tsne_embedding_.optimize(5, speed=3)


BAD_TRANSFORM = [
    ({"perplexity": 0}, r"'perplexity' parameter of TSNEEmbedding.transform"),
    ({"perplexity": np.inf}, r"'perplexity' parameter of TSNEEmbedding.transform"),
    ({"k": 0}, r"'k' parameter of prepare_partial"),
    ({"initialization": "mean"}, r"'initialization' parameter of prepare_partial"),
    ({"initialization": np.zeros((2, 2))}, r"'initialization' array must have shape"),
    ({"learning_rate": 0}, r"'learning_rate' parameter of TSNEEmbedding.transform"),
    ({"early_exaggeration": -1}, r"'early_exaggeration' parameter of TSNEEmbedding.transform"),
    ({"early_exaggeration_iter": -1}, r"'early_exaggeration_iter' parameter of TSNEEmbedding.transform"),
    ({"exaggeration": 0}, r"'exaggeration' parameter of TSNEEmbedding.transform"),
    ({"n_iter": 1.5}, r"'n_iter' parameter of TSNEEmbedding.transform"),
    ({"initial_momentum": 2}, r"'initial_momentum' parameter of TSNEEmbedding.transform"),
    ({"final_momentum": -1}, r"'final_momentum' parameter of TSNEEmbedding.transform"),
    ({"max_grad_norm": -1}, r"'max_grad_norm' parameter of TSNEEmbedding.transform"),
    ({"max_step_norm": 0}, r"'max_step_norm' parameter of TSNEEmbedding.transform"),
    ({"dof": -2}, r"'dof' parameter of TSNEEmbedding.transform"),
    ({"n_jobs": 0}, r"'n_jobs' parameter of TSNEEmbedding.transform"),
]


@pytest.mark.parametrize("params, match", BAD_TRANSFORM, ids=[str(p) for p, _ in BAD_TRANSFORM])
def test_bad_transform_parameter(fitted, params, match):
    X, tsne = fitted
    with pytest.raises(ValueError, match=match):
        tsne.tsne_embedding_.transform(X[:5], **{"n_iter": 5, **params})


@pytest.mark.parametrize("bad, match", [
    (np.nan, "Input X_new contains NaN|Input X contains NaN"), (np.inf, "contains infinity")])
def test_transform_rejects_non_finite(fitted, bad, match):
    X, tsne = fitted
    Xn = X[:4].copy()
    Xn[1, 0] = bad
    with pytest.raises(ValueError, match=match):
        tsne.transform(Xn)
    with pytest.raises(ValueError, match=match):
        tsne.tsne_embedding_.transform(Xn)


def test_transform_rejects_wrong_feature_count(fitted):
    with pytest.raises(ValueError, match="features"):
        fitted[1].transform(np.zeros((3, 7)))


def test_embedding_constructor_checks(fitted):
    aff = fitted[1].tsne_embedding_.affinities
    with pytest.raises(ValueError, match="contains NaN or infinity"):
        TSNEEmbedding(np.full((60, 2), np.nan), aff)
    with pytest.raises(ValueError, match="must be a 2-D array"):
        TSNEEmbedding(np.zeros(60), aff)
    with pytest.raises(ValueError, match="'affinities' parameter of TSNEEmbedding"):
        TSNEEmbedding(np.zeros((60, 2)), object())
    with pytest.raises(ValueError, match="affinities hold 60 points but the embedding 10"):
        TSNEEmbedding(np.zeros((10, 2)), aff)


# --------------------------------------------------------------------------- #
# 2. Awkward data that must give a finite embedding
# --------------------------------------------------------------------------- #
AWKWARD = {
    "n=2": lambda: _X(2, 5),
    "n=3": lambda: _X(3, 5),
    "n=3, 1 feature": lambda: _X(3, 1),
    "duplicates": lambda: np.repeat(_X(5, 4), 8, axis=0),
    "constant column": lambda: np.c_[_X(30, 3), np.full(30, 7.0)],
    "all identical": lambda: np.ones((30, 4)),
    "all zero": lambda: np.zeros((25, 3)),
    "two distinct rows": lambda: np.repeat(np.eye(2, 3), 15, axis=0),
    "x 1e8": lambda: _X() * 1e8,
    "x 1e-8": lambda: _X() * 1e-8,
    "offset 1e9": lambda: _X() + 1e9,
    "int": lambda: (_X() * 10).astype(np.int64),
    "bool": lambda: _X() > 0,
    "float32": lambda: _X().astype(np.float32),
    "F order": lambda: np.asfortranarray(_X()),
    "strided view": lambda: _X(80, 10)[::2, ::2],
    "list of lists": lambda: _X().tolist(),
    "sparse csr": lambda: sp.random(40, 20, density=0.3, random_state=0, format="csr"),
    "sparse coo": lambda: sp.random(40, 20, density=0.3, random_state=0, format="coo"),
    "sparse with empty rows": lambda: sp.csr_matrix(np.r_[np.zeros((5, 8)), _X(35, 8)]),
}


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("name", list(AWKWARD))
def test_awkward_data_gives_finite_embedding(name, method):
    X = AWKWARD[name]()
    n = len(X) if isinstance(X, list) else X.shape[0]
    Y = _fit(X, negative_gradient_method=method)
    _assert_finite_embedding(Y, n)
    assert np.allclose(Y.mean(axis=0), 0, atol=1e-8)  # re-centred


@pytest.mark.parametrize("method", METHODS)
def test_two_points_are_a_symmetric_distinct_pair(method):
    Y = _fit(_X(2, 5), negative_gradient_method=method, n_iter=50)
    np.testing.assert_allclose(Y[0], -Y[1], atol=1e-12)
    assert np.linalg.norm(Y[0] - Y[1]) > 0


def test_pca_init_falls_back_with_warning_for_tiny_n():
    with pytest.warns(UserWarning, match="PCA initialisation needs more than 2 features and samples"):
        TSNE(**FAST, neighbors="exact").fit(_X(2, 5))


def test_pandas_dataframe_input():
    pd = pytest.importorskip("pandas")
    X = _X()
    df = pd.DataFrame(X, columns=[f"c{i}" for i in range(X.shape[1])])
    np.testing.assert_array_equal(_fit(df), _fit(X))


@pytest.mark.parametrize("method", METHODS)
def test_inputs_are_never_modified(method):
    X = _X(40, 5).astype(np.float32)
    X_copy = X.copy()
    init = np.random.RandomState(1).normal(scale=1e-4, size=(40, 2))
    init_copy = init.copy()
    tsne = TSNE(**FAST, neighbors="exact", negative_gradient_method=method, initialization=init).fit(X)
    np.testing.assert_array_equal(X, X_copy)
    np.testing.assert_array_equal(init, init_copy)
    X_new = _X(5, 5, seed=3)
    X_new_copy = X_new.copy()
    tsne.transform(X_new, n_iter=5)
    np.testing.assert_array_equal(X_new, X_new_copy)
    S = sp.random(40, 5, density=0.5, random_state=0, format="csr")
    S_copy = S.copy()
    TSNE(**FAST, neighbors="exact", negative_gradient_method=method).fit(S)
    assert (S != S_copy).nnz == 0


def test_float32_and_float64_give_close_results():
    X = _X()
    Y64 = _fit(X, negative_gradient_method="exact")
    Y32 = _fit(X.astype(np.float32), negative_gradient_method="exact")
    assert Y32.dtype == np.float64
    np.testing.assert_allclose(Y32, Y64, rtol=1e-3, atol=1e-6)


@pytest.mark.parametrize("order", ["C", "F", "view"])
def test_memory_layout_does_not_change_result(order):
    base = _X(80, 10)
    ref = np.ascontiguousarray(base[::2, ::2])
    X = {"C": ref, "F": np.asfortranarray(ref), "view": base[::2, ::2]}[order]
    np.testing.assert_array_equal(_fit(X, negative_gradient_method="bh"), _fit(ref, negative_gradient_method="bh"))


def test_scaled_input_gives_scale_free_affinities():
    X = _X()
    P = PerplexityBasedNN(X, perplexity=5, method="exact").P
    for scale in (1e-8, 1e8):
        Ps = PerplexityBasedNN(X * scale, perplexity=5, method="exact").P
        assert np.all(np.isfinite(Ps.data))
        np.testing.assert_allclose(Ps.toarray(), P.toarray(), atol=1e-6)


# --------------------------------------------------------------------------- #
# 3. Determinism across n_jobs
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("method", METHODS)
def test_bit_identical_across_n_jobs(method):
    X = _X(150, 6)
    runs = [TSNE(early_exaggeration_iter=20, n_iter=30, random_state=3, neighbors="exact",
                 negative_gradient_method=method, n_jobs=n_jobs).fit_transform(X) for n_jobs in (1, 2, -1)]
    other_seed = TSNE(early_exaggeration_iter=20, n_iter=30, random_state=4, neighbors="exact",
                      negative_gradient_method=method, initialization="random").fit_transform(X)
    assert not np.array_equal(runs[0], other_seed)  # the comparison can fail
    for Y in runs[1:]:
        np.testing.assert_array_equal(Y, runs[0])


@pytest.mark.parametrize("method", ["bh", "fft"])
def test_transform_bit_identical_across_n_jobs(fitted, method):
    X, tsne = fitted
    emb = tsne.tsne_embedding_
    X_new = _X(10, 4, seed=7)
    outs = [np.asarray(emb.transform(X_new, n_iter=20, negative_gradient_method=method, n_jobs=j)) for j in (1, 2)]
    np.testing.assert_array_equal(outs[0], outs[1])


def test_same_random_state_same_result_random_init():
    X = _X()
    a = _fit(X, initialization="random", random_state=np.random.RandomState(5))
    b = _fit(X, initialization="random", random_state=np.random.RandomState(5))
    np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- #
# 4. Numerical safety
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dof", [0.1, 0.5, 1, 10, 100])
def test_dof_range_is_finite(method, dof):
    _assert_finite_embedding(_fit(_X(), negative_gradient_method=method, dof=dof, n_iter=40), 40)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("lr", [1e-3, 1.0, 1e3, 1e6])
def test_learning_rate_range_is_finite(method, lr):
    _assert_finite_embedding(_fit(_X(), negative_gradient_method=method, learning_rate=lr, n_iter=40), 40)


@pytest.mark.parametrize("method", METHODS)
def test_exaggeration_100_is_finite(method):
    Y = _fit(_X(), negative_gradient_method=method, early_exaggeration=100, exaggeration=100, n_iter=40)
    _assert_finite_embedding(Y, 40)


@pytest.mark.parametrize("method", ["exact", "bh"])
def test_huge_unclipped_steps_stay_finite(method):
    Y = _fit(_X(), negative_gradient_method=method, learning_rate=1e6, max_step_norm=None, n_iter=60)
    _assert_finite_embedding(Y, 40)


def test_fft_with_exploding_steps_raises_clear_error():
    # lr 1e6 without step clipping throws points ~1e5 units away: FFT's grid cannot cover that.
    with pytest.raises(ValueError, match="points have probably shot off"):
        _fit(_X(), negative_gradient_method="fft", learning_rate=1e6, max_step_norm=None, n_iter=60)


@pytest.mark.parametrize("method", METHODS)
def test_transform_far_away_points_is_finite(fitted, method):
    X, tsne = fitted
    X_far = np.r_[X[:3] * 1e6, X[:3] + 1e6, np.full((2, X.shape[1]), -1e9)]
    Y = tsne.tsne_embedding_.transform(X_far, n_iter=30, negative_gradient_method=method)
    _assert_finite_embedding(np.asarray(Y), len(X_far))


@pytest.mark.parametrize("method", ["exact", "bh"])
def test_optimize_far_outside_embedding_is_finite(fitted, method):
    emb = fitted[1].tsne_embedding_
    far = emb.optimize(0)
    far.embedding[0] = 1e6
    out = far.optimize(20, negative_gradient_method=method, max_step_norm=None)
    assert np.all(np.isfinite(out.embedding))


def test_fft_refuses_a_point_far_outside_with_clear_error(fitted):
    far = fitted[1].tsne_embedding_.optimize(0)
    far.embedding[0] = 1e6
    with pytest.raises(ValueError, match="embedding spans 1e\\+06 units: points have probably shot off"):
        far.optimize(5, negative_gradient_method="fft")


# --------------------------------------------------------------------------- #
# 5. Interrupts
# --------------------------------------------------------------------------- #
def _interrupt_at(iteration):
    def callback(it, error, embedding):
        if it >= iteration:
            raise KeyboardInterrupt
    return callback


def test_optimize_propagates_interrupt_with_final_embedding(fitted):
    emb = fitted[1].tsne_embedding_
    with pytest.raises(OptimizationInterrupt) as info:
        emb.optimize(50, propagate_exception=True, callbacks=_interrupt_at(7), callbacks_every_iters=1)
    ex = info.value
    assert ex.n_iter == 7
    assert ex.final_embedding.shape == emb.shape and np.all(np.isfinite(ex.final_embedding))
    assert not np.array_equal(ex.final_embedding, emb.embedding)  # optimize() worked on a copy


def test_optimize_without_propagation_keeps_positions_and_counts_iterations(fitted):
    emb = fitted[1].tsne_embedding_
    out = emb.optimize(50, callbacks=_interrupt_at(7), callbacks_every_iters=1)
    assert out.n_iter == emb.n_iter + 7
    assert np.all(np.isfinite(out.embedding)) and not np.array_equal(out.embedding, emb.embedding)


def test_tsne_fit_raises_interrupt_with_resumable_embedding():
    X = _X(50, 4)
    tsne = TSNE(early_exaggeration_iter=10, n_iter=50, neighbors="exact", random_state=0,
                callbacks=_interrupt_at(15), callbacks_every_iters=1)
    with pytest.raises(OptimizationInterrupt) as info:
        tsne.fit(X)
    ex = info.value
    assert ex.n_iter == 15  # in the second phase (callbacks count iterations per phase)
    emb = ex.tsne_embedding
    assert isinstance(emb, TSNEEmbedding) and emb.n_iter == 10 + 15
    np.testing.assert_array_equal(emb.embedding, ex.final_embedding)
    assert emb.affinities.P.shape == (50, 50) and emb.affinities.knn_index is not None
    assert not hasattr(tsne, "embedding_")
    resumed = emb.optimize(10, callbacks=None)
    assert resumed.n_iter == 35 and np.all(np.isfinite(resumed.embedding))


def test_interrupt_is_a_keyboard_interrupt():
    assert issubclass(OptimizationInterrupt, KeyboardInterrupt)
    assert turbotsne.OptimizationInterrupt is OptimizationInterrupt


# --------------------------------------------------------------------------- #
# 6. Memory: the dense exact method is capped
# --------------------------------------------------------------------------- #
def test_exact_refuses_large_n(monkeypatch):
    monkeypatch.setattr(affinity_module, "EXACT_MAX_SAMPLES", 30)
    X = _X(40, 3)
    with pytest.raises(ValueError, match=r"limited to 30 samples. Use negative_gradient_method='bh' or 'fft'"):
        TSNE(**FAST, negative_gradient_method="exact").fit(X)
    with pytest.raises(ValueError, match="EXACT_MAX_SAMPLES"):
        PerplexityBasedDense(X)
    assert PerplexityBasedDense(X, allow_large=True).P.shape == (40, 40)
    _assert_finite_embedding(_fit(X, negative_gradient_method="bh"), 40)  # the sparse methods are not capped


def test_exact_limit_default():
    assert affinity_module.EXACT_MAX_SAMPLES == 20_000


def test_exact_rejects_sparse_precomputed_graph():
    D = sp.csr_matrix(np.abs(_X(20, 20)))
    with pytest.raises(ValueError, match="needs a dense square distance matrix"):
        TSNE(**FAST, metric="precomputed", negative_gradient_method="exact", initialization="random").fit(D)


@pytest.mark.parametrize("method", ["bh", "fft"])
def test_sparse_methods_allocate_no_dense_n_by_n(monkeypatch, method):
    import turbotsne.gradients as gradients

    def refuse(*args, **kwargs):
        raise AssertionError("an O(N^2) dense path was taken")

    monkeypatch.setattr(gradients, "exact_dense_gradient", refuse)
    monkeypatch.setattr(affinity_module, "joint_probabilities_dense", refuse)
    monkeypatch.setattr(affinity_module, "EXACT_MAX_SAMPLES", 10)
    tsne = TSNE(**FAST, perplexity=5, neighbors="exact", negative_gradient_method=method).fit(_X(60, 4))
    P = tsne.tsne_embedding_.P
    assert sp.issparse(P) and P.nnz <= 2 * 60 * 15


# --------------------------------------------------------------------------- #
# 7. Property-based: any small shape / dtype / parameter mix gives a finite embedding
# --------------------------------------------------------------------------- #
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(2, 60),
    f=st.integers(1, 8),
    dtype=st.sampled_from([np.float64, np.float32, np.int32, np.bool_]),
    method=st.sampled_from(METHODS),
    n_components=st.integers(1, 3),
    perplexity=st.floats(0.5, 50),
    dof=st.floats(0.1, 100),
    scale=st.sampled_from([1e-8, 1.0, 1e8]),
    duplicates=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_finite_embedding(n, f, dtype, method, n_components, perplexity, dof, scale, duplicates, seed):
    rng = np.random.RandomState(seed)
    X = rng.normal(size=(n, f)) * scale
    if duplicates:
        X[n // 2:] = X[0]
    X = X.astype(dtype)
    X_copy = X.copy()
    Y = _fit(X, negative_gradient_method=method, n_components=n_components, perplexity=perplexity, dof=dof,
             random_state=seed)
    _assert_finite_embedding(Y, n, n_components)
    np.testing.assert_array_equal(X, X_copy)


@settings(max_examples=15, deadline=None)
@given(n=st.integers(2, 40), perplexity=st.floats(0.01, 100), scale=st.sampled_from([1e-8, 1.0, 1e8]),
       seed=st.integers(0, 2**16))
def test_property_affinities_are_a_distribution(n, perplexity, scale, seed):
    X = np.random.RandomState(seed).normal(size=(n, 3)) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for P in (PerplexityBasedNN(X, perplexity, method="exact").P.toarray(), PerplexityBasedDense(X, perplexity).P):
            assert np.all(np.isfinite(P)) and np.all(P >= 0)
            assert P.sum() == pytest.approx(1.0)
            np.testing.assert_allclose(P, P.T, atol=1e-15)


@settings(max_examples=10, deadline=None)
@given(lr=st.floats(1e-3, 1e6), exaggeration=st.floats(1, 100), momentum=st.floats(0, 0.99),
       method=st.sampled_from(METHODS))
def test_property_optimizer_parameters_finite(fitted, lr, exaggeration, momentum, method):
    emb = fitted[1].tsne_embedding_
    out = emb.optimize(20, learning_rate=lr, exaggeration=exaggeration, momentum=momentum,
                       negative_gradient_method=method)
    assert np.all(np.isfinite(out.embedding)) and np.isfinite(out.kl_divergence)
