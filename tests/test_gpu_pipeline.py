"""The torch engine end to end: TSNE, the embedding API and transform on torch's CPU build
(the same code runs on CUDA; those checks skip without a GPU)."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from conftest import make_clusters
from turbotsne import TSNE, OptimizationInterrupt, PerplexityBasedNN, TSNEEmbedding
from turbotsne.initialization import pca

torch = pytest.importorskip("torch")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
TORCH = dict(device="cpu", backend="torch")


@pytest.fixture(scope="module")
def digits():
    return load_digits().data


@pytest.fixture(scope="module")
def small():
    X, y = make_clusters(500, 10, n_clusters=4, seed=5)
    return X, y


@pytest.fixture(scope="module")
def small_affinities(small):
    return PerplexityBasedNN(small[0], 20, method="exact")


# The acceptance test of the issue: on digits, a full run (250 + 500 iterations, FFT gradient) on the
# torch path reaches a KL within 1 % of the numba path's, from the same P and initialisation. One run
# is not enough to tell: a 1e-9 relative nudge of the start moves either path's final KL by up to ~1 %
# (numba 0.7431-0.7514, torch 0.7454-0.7508 over four starts), so the mean over three starts is compared.
def test_digits_full_run_kl_matches_cpu_path(digits):
    from turbotsne.initialization import pca

    Y0 = pca(digits, 2, random_state=0)
    starts = [Y0] + [Y0 * (1 + 1e-9 * np.random.default_rng(s).standard_normal(Y0.shape)) for s in (1, 2)]
    kl = {}
    for backend in ("numba", "torch"):
        kls = []
        for Yi in starts:
            model = TSNE(negative_gradient_method="fft", neighbors="exact", random_state=0, n_jobs=2,
                         backend=backend, initialization=Yi).fit(digits)
            assert np.all(np.isfinite(model.embedding_)) and model.embedding_.dtype == np.float64
            kls.append(model.kl_divergence_)
        kl[backend] = float(np.mean(kls))
    assert abs(kl["torch"] - kl["numba"]) <= 0.01 * kl["numba"], kl


def test_exact_method_on_torch_matches_numba(small):
    # dense P on the device, the fused dense gradient. 500 points, 300 iterations: float32 and float64
    # trajectories part after a few hundred steps and land in minima whose KL spreads by ~1 %, hence 2 %
    # here (the 1 % acceptance check is the full digits run above).
    X, _ = small
    kls = [TSNE(negative_gradient_method="exact", random_state=0, n_iter=200, early_exaggeration_iter=100,
                backend=b).fit(X).kl_divergence_ for b in ("numba", "torch")]
    assert abs(kls[1] - kls[0]) <= 0.02 * kls[0], kls


def test_auto_method_on_torch_is_fft(small, caplog):
    import logging

    X, _ = small
    with caplog.at_level(logging.INFO, logger="turbotsne"):
        model = TSNE(random_state=0, n_iter=10, early_exaggeration_iter=10, **TORCH).fit(X)
    assert model.tsne_embedding_.gradient_descent_params["backend"] == "torch"
    assert any("(method fft, torch on cpu," in r.getMessage() for r in caplog.records)


def test_bh_on_torch_is_refused_before_any_work(small):
    with pytest.raises(ValueError, match="'bh' is not available with backend='torch'"):
        TSNE(negative_gradient_method="bh", **TORCH).fit(small[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_device_without_gpu(small):
    with pytest.raises(ValueError, match="sees no CUDA device"):
        TSNE(device="cuda").fit(small[0])


def test_bad_backend_names_the_parameter(small):
    with pytest.raises(ValueError, match="'backend' parameter of TSNE"):
        TSNE(backend="cupy").fit(small[0])


def test_optimize_in_pieces_equals_one_call(small, small_affinities):
    X, _ = small
    Y0 = pca(X, 2, random_state=0)
    a = TSNEEmbedding(Y0, small_affinities, negative_gradient_method="fft", **TORCH)
    a.optimize(30, inplace=True, exaggeration=12)
    a.optimize(20, inplace=True, exaggeration=12)
    b = TSNEEmbedding(Y0, small_affinities, negative_gradient_method="fft", **TORCH)
    b.optimize(50, inplace=True, exaggeration=12)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(a.optimizer_state.gains, b.optimizer_state.gains)


def test_torch_embedding_follows_numba_embedding(small, small_affinities):
    """Same P, same start, same schedule: float32 on torch follows float64 on numba (the early phase is
    chaotic: the difference grows from 2e-7 after 5 steps to 5e-6 after 10 and ~1e-2 after 50)."""
    X, _ = small
    Y0 = pca(X, 2, random_state=0)
    out = {}
    for backend in ("numba", "torch"):
        emb = TSNEEmbedding(Y0, small_affinities, negative_gradient_method="exact", backend=backend)
        emb.optimize(10, inplace=True, exaggeration=12)
        out[backend] = np.asarray(emb)
    scale = np.abs(out["numba"]).max()
    assert np.abs(out["torch"] - out["numba"]).max() <= 1e-4 * scale


def test_callbacks_get_numpy_and_interrupt_keeps_positions(small, small_affinities):
    X, _ = small
    seen = []

    def callback(it, kl, Y):
        seen.append((it, kl, type(Y)))
        if it == 20:
            raise KeyboardInterrupt

    emb = TSNEEmbedding(pca(X, 2, random_state=0), small_affinities, callbacks=[callback],
                        callbacks_every_iters=10, **TORCH)
    with pytest.raises(OptimizationInterrupt) as info:
        emb.optimize(100, inplace=True, propagate_exception=True)
    assert [s[0] for s in seen] == [10, 20]
    assert all(t is np.ndarray and np.isfinite(kl) for _, kl, t in seen)
    final = info.value.final_embedding
    assert isinstance(final, np.ndarray) and final.shape == (len(X), 2)
    np.testing.assert_array_equal(np.asarray(emb), final)  # the embedding keeps the positions reached
    assert emb.n_iter == 20


def test_transform_on_torch(small):
    X, _ = small
    model = TSNE(random_state=0, n_iter=150, early_exaggeration_iter=100, **TORCH).fit(X[:400])
    new = model.transform(X[400:], n_iter=50)
    cpu = TSNE(random_state=0, n_iter=150, early_exaggeration_iter=100).fit(X[:400])
    assert new.shape == (100, 2) and np.all(np.isfinite(new))
    # new points land among their own cluster: their nearest reference point is a true neighbour
    from turbotsne.neighbors import Exact

    near_in_X = Exact().fit(X[:400]).query(X[400:], 10)[0]
    near_in_Y = Exact().fit(model.embedding_).query(new, 1)[0][:, 0]
    hits = np.mean([a in row for a, row in zip(near_in_Y, near_in_X)])
    near_cpu = Exact().fit(cpu.embedding_).query(cpu.transform(X[400:], n_iter=50), 1)[0][:, 0]
    hits_cpu = np.mean([a in row for a, row in zip(near_cpu, near_in_X)])
    assert hits >= hits_cpu - 0.05, (hits, hits_cpu)


def test_transform_exact_reference_on_torch(small, small_affinities):
    X, _ = small
    emb = TSNEEmbedding(pca(X, 2, random_state=0), small_affinities, **TORCH)
    emb.optimize(100, inplace=True, exaggeration=12)
    a = emb.transform(X[:20] + 0.01, negative_gradient_method="exact", n_iter=30)
    b = emb.transform(X[:20] + 0.01, negative_gradient_method="exact", n_iter=30, backend="numba")
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= 1e-3 * np.abs(np.asarray(emb)).max()


def test_pickle_after_torch_optimize(small, small_affinities, tmp_path):
    X, _ = small
    emb = TSNEEmbedding(pca(X, 2, random_state=0), small_affinities, **TORCH)
    emb.optimize(10, inplace=True)
    assert "_backend_cache" in emb.__dict__
    emb.save(tmp_path / "e.pkl")
    loaded = TSNEEmbedding.load(tmp_path / "e.pkl")
    assert "_backend_cache" not in loaded.__dict__
    a = emb.optimize(10)
    b = loaded.optimize(10)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_caller_arrays_not_modified(small):
    X, _ = small
    X0 = X.copy()
    init = pca(X, 2, random_state=0)
    init0 = init.copy()
    TSNE(initialization=init, n_iter=10, early_exaggeration_iter=10, **TORCH).fit(X)
    np.testing.assert_array_equal(X, X0)
    np.testing.assert_array_equal(init, init0)


@pytest.mark.parametrize("n_components", [1, 3])
def test_other_dimensions_on_torch(small, n_components):
    X, _ = small
    # few iterations: on the CPU a 3-D FFT grid (144^3 padded nodes) costs ~0.1 s per call
    Y = TSNE(n_components=n_components, random_state=0, n_iter=10, early_exaggeration_iter=10,
             **TORCH).fit_transform(X)
    assert Y.shape == (len(X), n_components) and np.all(np.isfinite(Y))


@cuda
def test_cuda_run_matches_cpu_torch(digits):
    kl = [TSNE(random_state=0, neighbors="exact", device=dev, backend="torch").fit(digits).kl_divergence_
          for dev in ("cpu", "cuda")]
    assert abs(kl[1] - kl[0]) <= 0.01 * kl[0]


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=cuda)])
def test_torch_fit_emits_no_library_warnings(small, device):
    # torch 2.11 on CUDA warned "Sparse invariant checks are implicitly disabled" on every fit (seen on
    # an H200); a user's fit should print nothing from the libraries underneath. Only the CUDA case
    # can show that warning (torch's CPU build here never printed it); the CPU case guards the rest.
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Y = TSNE(random_state=0, n_iter=50, early_exaggeration_iter=25, device=device,
                 backend="torch").fit_transform(small[0])
    assert np.all(np.isfinite(Y))
