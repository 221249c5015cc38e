"""The torch engine's pipeline pieces (device choice, kNN, affinities, PCA, optimiser step),
each against the numba path, on torch's CPU build; CUDA-only checks skip without a GPU."""
import numpy as np
import pytest

from conftest import make_clusters
from turbotsne.engine import resolve_engine
from turbotsne.affinity import PerplexityBasedDense, PerplexityBasedNN
from turbotsne.neighbors import Exact

torch = pytest.importorskip("torch")
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.fixture(scope="module")
def data():
    X, _ = make_clusters(900, 12, n_clusters=5, seed=3)
    return X


# -- device and backend choice ---------------------------------------------------------
@pytest.mark.parametrize("device, backend, kind", [
    ("cpu", "auto", "numba"), ("cpu", "numba", "numba"), ("cpu", "torch", "torch"),
    ("auto", "numba", "numba"),
])
def test_resolve_engine(device, backend, kind):
    engine = resolve_engine(device, backend)
    assert engine.kind == kind
    if kind == "torch":
        assert engine.device == torch.device("cpu")


def test_auto_device_follows_cuda():
    engine = resolve_engine("auto", "auto")
    assert engine.kind == ("torch" if torch.cuda.is_available() else "numba")


def test_torch_device_object_accepted():
    assert resolve_engine(torch.device("cpu"), "torch").kind == "torch"


@pytest.mark.parametrize("device, backend, match", [
    ("gpu", "auto", "'device' parameter of TSNE"),
    ("cuda:x", "auto", "'device' parameter of TSNE"),
    (3, "auto", "'device' parameter of TSNE"),
    ("cpu", "jax", "'backend' parameter of TSNE"),
    ("cuda", "numba", "backend='numba' runs on the CPU only"),
])
def test_bad_device_backend(device, backend, match):
    with pytest.raises(ValueError, match=match):
        resolve_engine(device, backend)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_cuda_without_device_is_a_clear_error():
    with pytest.raises(ValueError, match="sees no CUDA device"):
        resolve_engine("cuda", "auto")


def test_missing_torch_names_the_extra(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torch)
    with pytest.raises(ImportError, match=r"turbotsne\[gpu\]"):
        resolve_engine("cpu", "torch")
    assert resolve_engine("auto", "auto").kind == "numba"  # auto falls back quietly


# -- nearest neighbours ------------------------------------------------------------------
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine"])
def test_torch_knn_matches_brute_force(data, metric):
    from turbotsne.gpu.neighbors import TorchExact

    ref_i, ref_d = Exact(metric).build(data, 30)
    ind, dist = TorchExact(metric).build(data, 30)
    assert ind.dtype == np.int64 and dist.dtype == np.float64 and ind.shape == (len(data), 30)
    assert not np.any(ind == np.arange(len(data))[:, None])
    recall = np.mean([len(np.intersect1d(a, b)) for a, b in zip(ind, ref_i)]) / 30
    assert recall >= 0.999
    # the distances returned are those of the pairs returned (float32 coordinates)
    diff = data[:, None, :] - data[ind]
    true = {"euclidean": np.sqrt((diff ** 2).sum(-1)), "sqeuclidean": (diff ** 2).sum(-1)}.get(metric)
    if true is None:
        unit = data / np.linalg.norm(data, axis=1, keepdims=True)
        true = 1 - np.einsum("id,ikd->ik", unit, unit[ind])
    np.testing.assert_allclose(dist, true, rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_torch_knn_query_and_duplicates(data):
    from turbotsne.gpu.neighbors import TorchExact

    X = np.vstack([data, data[:10]])  # duplicates must find each other (self excluded by index)
    ind, dist = TorchExact().build(X, 5)
    n = len(data)
    assert np.all(ind[n:, 0] == np.arange(10)) and np.allclose(dist[n:, 0], 0.0)
    index = TorchExact().fit(data)
    q_i, q_d = index.query(data[:50] + 1e-3, 7)
    r_i, r_d = Exact().fit(data).query(data[:50] + 1e-3, 7)
    assert np.mean(q_i == r_i) >= 0.99
    np.testing.assert_allclose(q_d[:, 0], r_d[:, 0], rtol=1e-4, atol=1e-5)  # float32 coordinates


def test_torch_knn_small_blocks_equal_one_block(data, monkeypatch):
    from turbotsne.gpu import neighbors as tn

    one = tn.TorchExact().build(data, 10)
    monkeypatch.setattr(tn, "BLOCK_BYTES", 4 * len(data) * 7)  # 7 rows per tile, refinement tiles of 1 row
    many = tn.TorchExact().build(data, 10)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_allclose(one[1], many[1], rtol=1e-6)


def test_torch_knn_rejects_unsupported_metric(data):
    from turbotsne.gpu.neighbors import TorchExact

    with pytest.raises(ValueError, match="does not support metric='manhattan'"):
        TorchExact("manhattan").build(data, 5)


def test_torch_knn_pickles(data, tmp_path):
    import pickle

    from turbotsne.gpu.neighbors import TorchExact

    index = TorchExact().fit(data)
    index.query(data[:3], 4)
    clone = pickle.loads(pickle.dumps(index))
    assert clone._ref_t is None
    np.testing.assert_array_equal(clone.query(data[:5], 4)[0], index.query(data[:5], 4)[0])


# -- affinities ----------------------------------------------------------------------------
@pytest.mark.parametrize("perplexity", [2, 30])
def test_torch_affinities_equal_cpu(data, perplexity):
    a = PerplexityBasedNN(data, perplexity, method="exact")
    b = PerplexityBasedNN(data, perplexity, method="exact", backend="torch")
    assert b.engine.kind == "torch" and a.engine.kind == "numba"
    np.testing.assert_array_equal(a.P.indptr, b.P.indptr)
    np.testing.assert_array_equal(a.P.indices, b.P.indices)
    np.testing.assert_allclose(b.P.data, a.P.data, rtol=1e-9)
    assert abs(b.P.sum() - 1) < 1e-12 and abs(b.P - b.P.T).max() < 1e-15
    new = data[:20] + 0.05
    np.testing.assert_allclose(b.to_new(new).toarray(), a.to_new(new).toarray(), atol=1e-12)


def test_torch_bisection_reaches_the_perplexity(data):
    from turbotsne.gpu.affinity import conditional_probabilities

    ind, dist = Exact().build(data, 60)
    P, beta = conditional_probabilities(dist ** 2, 20, "cpu", return_betas=True)
    P = P.numpy()
    entropy = -np.sum(np.where(P > 0, P * np.log(np.maximum(P, 1e-300)), 0), axis=1)
    np.testing.assert_allclose(np.exp(entropy), 20, rtol=1e-4)
    np.testing.assert_allclose(P.sum(axis=1), 1, atol=1e-12)


@pytest.mark.parametrize("scale", [1e-300, 1.0, 1e300])
def test_torch_perplexity_search_equals_cpu_at_any_scale(scale):
    from turbotsne.affinity import conditional_probabilities as cpu_conditionals
    from turbotsne.gpu.affinity import conditional_probabilities

    D = np.random.default_rng(3).random((6, 60)) * scale
    P, beta = conditional_probabilities(D, 10, "cpu", return_betas=True)
    Q, beta_cpu = cpu_conditionals(D, 10, return_betas=True)
    entropy = -np.sum(P.numpy() * np.log(np.maximum(P.numpy(), 1e-300)), axis=1)
    assert np.abs(entropy - np.log(10)).max() <= 1e-5 + 1e-12
    np.testing.assert_allclose(P.numpy(), Q, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(beta.numpy(), beta_cpu, rtol=1e-9)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_torch_dense_affinities_equal_cpu(data, metric):
    X = data[:300]
    a = PerplexityBasedDense(X, 20, metric=metric)
    b = PerplexityBasedDense(X, 20, metric=metric, backend="torch")
    np.testing.assert_allclose(b.P, a.P, rtol=1e-7, atol=1e-15)
    assert np.all(np.diag(b.P) == 0)


def test_affinity_caller_arrays_untouched(data):
    X = data.copy()
    PerplexityBasedNN(X, 10, method="exact", backend="torch")
    np.testing.assert_array_equal(X, data)


# -- PCA -------------------------------------------------------------------------------
def test_torch_pca_matches_cpu(data):
    from turbotsne.gpu.initialization import pca as torch_pca
    from turbotsne.initialization import pca

    a = pca(data, 2, random_state=0)
    b = torch_pca(data, 2, "cpu")
    np.testing.assert_allclose(b, a, rtol=1e-6, atol=1e-12)
    assert abs(np.std(b[:, 0]) - 1e-4) < 1e-12


# -- optimiser step -------------------------------------------------------------------------
@pytest.mark.parametrize("mg, ms", [(np.inf, np.inf), (0.5, np.inf), (np.inf, 0.05), (0.3, 0.02)])
def test_torch_step_equals_numba_step(mg, ms):
    from turbotsne.gpu.optimizer import TorchOps, _TensorState
    from turbotsne.optimizer import NumpyOps, OptimizerState

    rng = np.random.default_rng(0)
    Y = rng.normal(size=(200, 2))
    state = OptimizerState(Y.shape)
    state.update[:] = rng.normal(scale=0.1, size=Y.shape)
    state.gains[:] = rng.uniform(0.01, 2, size=Y.shape)
    grad = rng.normal(size=Y.shape)
    tY, tstate = torch.tensor(Y), _TensorState(torch.tensor(state.gains), torch.tensor(state.update))
    t_row = torch.empty(200, dtype=torch.float64)
    row = np.empty(200)
    for _ in range(3):
        NumpyOps.step(Y, grad, state, 50.0, 0.8, mg, ms, row)
        TorchOps.step(tY, torch.tensor(grad), tstate, 50.0, 0.8, mg, ms, t_row)
        NumpyOps.recentre(Y)
        TorchOps.recentre(tY)
    np.testing.assert_allclose(tY.numpy(), Y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(tstate.gains.numpy(), state.gains, rtol=1e-12)
    np.testing.assert_allclose(t_row.numpy(), row, rtol=1e-12)
    assert TorchOps.grad_norm(t_row) == pytest.approx(NumpyOps.grad_norm(row), rel=1e-12)


def test_thread_limit_governs_torch():
    from turbotsne._config import thread_limit

    before = torch.get_num_threads()
    with thread_limit(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


@cuda
def test_cuda_knn_equals_cpu_knn(data):
    from turbotsne.gpu.neighbors import TorchExact

    a = TorchExact(device="cpu").build(data, 15)
    b = TorchExact(device="cuda").build(data, 15)
    assert np.mean(a[0] == b[0]) > 0.999
