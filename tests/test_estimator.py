"""The TSNE estimator: the seed's contract, scikit-learn conventions, quality on digits."""
import inspect
import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import load_digits
from sklearn.manifold import trustworthiness
from sklearn.utils.estimator_checks import parametrize_with_checks

from conftest import make_clusters
from turbotsne import TSNE

# openTSNE.sklearn.TSNE's signature, from the API contract (shared/seeds/000_*.txt)
SEED_SIGNATURE = [
    ("n_components", 2), ("perplexity", 30), ("learning_rate", "auto"), ("early_exaggeration_iter", 250),
    ("early_exaggeration", "auto"), ("n_iter", 500), ("exaggeration", None), ("dof", 1), ("theta", 0.5),
    ("n_interpolation_points", 3), ("min_num_intervals", 50), ("ints_in_interval", 1),
    ("initialization", "pca"), ("metric", "euclidean"), ("metric_params", None), ("initial_momentum", 0.8),
    ("final_momentum", 0.8), ("max_grad_norm", None), ("max_step_norm", 5), ("n_jobs", 1),
    ("neighbors", "auto"), ("negative_gradient_method", "auto"), ("callbacks", None),
    ("callbacks_every_iters", 50), ("random_state", None), ("verbose", False),
]


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return X, y


def test_signature_is_the_seed_contract():
    params = list(inspect.signature(TSNE).parameters.values())
    positional = [(p.name, p.default) for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    assert positional == SEED_SIGNATURE
    extras = {p.name: p.default for p in params if p.kind is p.KEYWORD_ONLY}
    assert extras == {"n_iter_without_progress": None, "min_grad_norm": None, "device": "cpu", "backend": "auto",
                      "knn_kwargs": None}


def _small_tsne():
    return TSNE(early_exaggeration_iter=20, n_iter=20, random_state=0)


# Checks that do not apply to t-SNE, each with its reason.
_TRANSFORM_NOT_FIT = ("t-SNE's transform re-optimises new points against the fixed embedding: training points land "
                      "near, not within atol 1e-2 of, their fitted positions (checked in test_embedding.py)")
EXPECTED_FAILED = {
    "check_transformer_general": _TRANSFORM_NOT_FIT,
    "check_transformer_data_not_an_array": _TRANSFORM_NOT_FIT,
}


@parametrize_with_checks([_small_tsne()], expected_failed_checks=lambda est: EXPECTED_FAILED)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def test_fit_returns_self_and_sets_attributes():
    X, _ = make_clusters(200, 5)
    tsne = TSNE(early_exaggeration_iter=50, n_iter=50, random_state=0)
    assert tsne.fit(X) is tsne
    assert tsne.embedding_.shape == (200, 2)
    assert tsne.n_iter_ == 100
    assert tsne.learning_rate_ == pytest.approx(200.0)
    assert np.isfinite(tsne.kl_divergence_) and tsne.kl_divergence_ > 0
    assert tsne.n_features_in_ == 5


def test_get_set_params_and_clone():
    tsne = TSNE(perplexity=12, dof=0.7)
    assert tsne.get_params()["perplexity"] == 12
    tsne.set_params(theta=0.3)
    c = clone(tsne)
    assert c.get_params() == tsne.get_params()
    assert c is not tsne


def test_same_random_state_same_embedding_and_n_jobs_invariance():
    X, _ = make_clusters(300, 8, seed=3)
    a = TSNE(early_exaggeration_iter=50, n_iter=50, random_state=1, n_jobs=1).fit_transform(X)
    b = TSNE(early_exaggeration_iter=50, n_iter=50, random_state=1, n_jobs=2).fit_transform(X)
    assert np.array_equal(a, b)


def test_input_array_is_not_modified():
    X, _ = make_clusters(120, 4)
    X0 = X.copy()
    init = np.random.default_rng(0).normal(scale=1e-4, size=(120, 2))
    init0 = init.copy()
    TSNE(early_exaggeration_iter=10, n_iter=10, initialization=init).fit(X)
    assert np.array_equal(X, X0)
    assert np.array_equal(init, init0)


@pytest.mark.parametrize("name, value, match", [
    ("perplexity", -1, r"The 'perplexity' parameter of TSNE must be a float in the range \(0.0, inf\). Got -1"),
    ("n_components", 0, "'n_components' parameter of TSNE must be an int"),
    ("learning_rate", "fast", "'learning_rate' parameter of TSNE must be a float in the range .* or 'auto'"),
    ("early_exaggeration", 0, "'early_exaggeration' parameter"),
    ("n_iter", -5, "'n_iter' parameter"),
    ("exaggeration", -2.0, "'exaggeration' parameter"),
    ("dof", 0, "'dof' parameter"),
    ("theta", -0.1, "'theta' parameter"),
    ("initialization", "umap", "'initialization' parameter of TSNE must be a str among"),
    ("initial_momentum", 1.5, "'initial_momentum' parameter"),
    ("max_step_norm", 0, "'max_step_norm' parameter"),
    ("n_jobs", 0, "'n_jobs' parameter of TSNE must be a non-zero int"),
    ("neighbors", "faiss", "'neighbors' parameter of TSNE must be a str among"),
    ("negative_gradient_method", "fast", "'negative_gradient_method' parameter must be one of"),
    ("callbacks", [1], "'callbacks' parameter of TSNE must be a callable"),
    ("callbacks_every_iters", 0, "'callbacks_every_iters' parameter"),
    ("metric_params", 3, "'metric_params' parameter of TSNE must be a dict"),
])
def test_bad_parameters_are_named(name, value, match):
    X, _ = make_clusters(50, 3)
    with pytest.raises(ValueError, match=match):
        TSNE(**{name: value}).fit(X)


def test_callbacks_receive_progress_and_can_stop():
    X, _ = make_clusters(100, 4)
    seen = []

    def cb(iteration, error, embedding):
        seen.append((iteration, error, embedding.shape))
        return iteration >= 20

    tsne = TSNE(early_exaggeration_iter=100, n_iter=100, callbacks=cb, callbacks_every_iters=10, random_state=0)
    tsne.fit(X)
    assert [s[0] for s in seen[:2]] == [10, 20]
    assert all(np.isfinite(s[1]) and s[2] == (100, 2) for s in seen)
    # the callback stops each phase after 20 iterations
    assert tsne.n_iter_ == 40


def test_verbose_logs_kl(caplog):
    X, _ = make_clusters(100, 4)
    with caplog.at_level("INFO", logger="turbotsne"):
        TSNE(early_exaggeration_iter=50, n_iter=50, verbose=True, random_state=0).fit(X)
    assert any("KL divergence" in r.getMessage() for r in caplog.records)


def test_pickle_round_trip_of_fitted_estimator():
    X, _ = make_clusters(100, 4)
    tsne = TSNE(early_exaggeration_iter=10, n_iter=10, random_state=0).fit(X)
    again = pickle.loads(pickle.dumps(tsne))
    assert np.array_equal(again.embedding_, tsne.embedding_)


@pytest.mark.parametrize("init", ["pca", "spectral", "random"])
def test_initialisations_run(init):
    X, _ = make_clusters(150, 6)
    Y = TSNE(early_exaggeration_iter=30, n_iter=30, initialization=init, random_state=0).fit_transform(X)
    assert Y.shape == (150, 2) and np.all(np.isfinite(Y))


@pytest.mark.parametrize("n_components", [1, 3])
def test_other_dimensions(n_components):
    X, _ = make_clusters(150, 6)
    Y = TSNE(n_components=n_components, early_exaggeration_iter=30, n_iter=30, random_state=0).fit_transform(X)
    assert Y.shape == (150, n_components) and np.all(np.isfinite(Y))


def test_digits_default_exact_quality(digits):
    X, _ = digits
    tsne = TSNE(negative_gradient_method="exact", random_state=0, n_jobs=2)
    Y = tsne.fit_transform(X)
    assert trustworthiness(X, Y, n_neighbors=10) >= 0.98
    assert tsne.kl_divergence_ < 0.8


def test_digits_exact_kl_within_2_percent_of_scikit_learn(digits):
    """Matched settings: dense P, perplexity 30, 1000 iterations (250 exaggerated at 12 with
    momentum 0.5, then momentum 0.8), the same initial array; scikit-learn's gradient is 4x ours,
    so its learning rate L corresponds to our 4 L."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE as SKTSNE

    X, _ = digits
    Y0 = PCA(2, random_state=0).fit_transform(X)
    Y0 = Y0 / Y0[:, 0].std() * 1e-4
    sk = SKTSNE(method="exact", init=Y0.copy(), learning_rate=50.0, max_iter=1000, perplexity=30,
                early_exaggeration=12.0, random_state=0).fit(X)
    ours = TSNE(negative_gradient_method="exact", initialization=Y0, learning_rate=200.0,
                early_exaggeration=12, early_exaggeration_iter=250, n_iter=750, initial_momentum=0.5,
                final_momentum=0.8, max_step_norm=None, perplexity=30, n_jobs=2).fit(X)
    assert ours.kl_divergence_ == pytest.approx(sk.kl_divergence_, rel=0.02)


def test_cpu_fit_imports_neither_torch_nor_pynndescent():
    """The numba path must not pay for the optional torch backend (or pynndescent) it does not use."""
    import subprocess
    import sys

    code = ("import sys, numpy as np; from turbotsne import TSNE; "
            "TSNE(n_iter=2, early_exaggeration_iter=2, random_state=0).fit(np.random.rand(300, 5)); "
            "print(sorted(m for m in ('torch', 'pynndescent') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
