"""PyTorch gradient backends (turbotsne.gpu.gradients) against the numba CPU backends."""
import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import turbotsne  # noqa: E402
from conftest import make_clusters  # noqa: E402
from turbotsne.gpu import gradients as tg  # noqa: E402
from turbotsne.gpu.gradients import make_torch_backend, make_torch_reference_backend  # noqa: E402
from turbotsne.gradients import PartialGradient, make_backend, make_reference_repulsion  # noqa: E402

DEVICE = "cpu"
N = 600


@pytest.fixture(scope="module")
def affinities():
    X, _ = make_clusters(N, seed=1)
    return turbotsne.PerplexityBasedNN(X, 30, method="exact").P, turbotsne.PerplexityBasedDense(X, 30).P


def numpy_gradient(method, P, Y, dof, exaggeration, **options):
    out = np.empty_like(Y)
    kl = make_backend(method, P, **options).gradient(Y, P, dof, exaggeration, out, True)
    return out, kl


def torch_gradient(backend, P, Y, dof, exaggeration, dtype=torch.float32, compute_kl=True):
    out = torch.full(Y.shape, float("nan"), dtype=dtype)
    kl = backend.gradient(torch.tensor(Y, dtype=dtype), P, dof, exaggeration, out, compute_kl)
    return out.numpy().astype(np.float64), kl


def rel_max(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def rel_norm(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


# ---------------------------------------------------------------------------------------
# exact
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("d", [1, 2, 3, 5])
@pytest.mark.parametrize("dof", [0.5, 1.0, 100.0])
def test_exact_matches_numba(affinities, dense, d, dof):
    P = affinities[1] if dense else affinities[0]
    Y = np.random.default_rng(d).normal(scale=5.0, size=(N, d))
    for dtype, tol in ((torch.float32, 1e-5), (torch.float64, 1e-10)):
        backend = make_torch_backend("exact", P, device=DEVICE, dtype=dtype)
        assert backend.name == "exact"
        for exaggeration in (1.0, 12.0):
            g, kl = numpy_gradient("exact", P, Y, dof, exaggeration)
            gt, klt = torch_gradient(backend, P, Y, dof, exaggeration, dtype)
            assert rel_max(gt, g) <= tol
            assert klt == pytest.approx(kl, rel=tol)
            gt2, none = torch_gradient(backend, P, Y, dof, exaggeration, dtype, compute_kl=False)
            assert none is None
            assert np.array_equal(gt2, gt)  # KL iterations take the same force path


@pytest.mark.parametrize("dense", [False, True])
def test_exact_tiling_and_chunking_do_not_change_the_result(affinities, dense, monkeypatch):
    P = affinities[1] if dense else affinities[0]
    Y = np.random.default_rng(7).normal(scale=5.0, size=(N, 2))
    backend = make_torch_backend("exact", P, device=DEVICE, dtype=torch.float64)
    g, kl = torch_gradient(backend, P, Y, 1.0, 4.0, torch.float64)
    monkeypatch.setattr(tg, "TILE_ELEMENTS", 7 * N * 37)  # 37 rows per tile, a ragged last tile
    monkeypatch.setattr(tg, "NNZ_CHUNK", 1001)
    g2, kl2 = torch_gradient(backend, P, Y, 1.0, 4.0, torch.float64)
    np.testing.assert_allclose(g2, g, rtol=1e-12, atol=1e-15 * np.abs(g).max())
    assert kl2 == pytest.approx(kl, rel=1e-12)


def test_bh_is_rejected_and_dense_needs_exact(affinities):
    P, Pd = affinities
    for factory, arg in ((make_torch_backend, P), (make_torch_reference_backend, np.zeros((5, 2)))):
        with pytest.raises(ValueError, match="'bh' is not available with backend='torch'; use 'fft' or 'exact'"):
            factory("bh", arg, device=DEVICE)
    with pytest.raises(ValueError, match="dense P is only supported by the exact method"):
        make_torch_backend("fft", Pd, device=DEVICE)
    with pytest.raises(ValueError, match="'dtype' parameter must be torch.float32 or torch.float64"):
        make_torch_backend("exact", P, device=DEVICE, dtype=torch.float16)
    with pytest.raises(ValueError, match="supports n_components of 1, 2 or 3 only"):
        make_torch_backend("fft", P, device=DEVICE, n_components=4)


@pytest.mark.parametrize("dense", [False, True])
def test_P_is_converted_once_per_object(affinities, dense):
    P = affinities[1] if dense else affinities[0]
    Y = np.random.default_rng(8).normal(size=(N, 2))
    backend = make_torch_backend("exact", P, device=DEVICE)
    g1, _ = torch_gradient(backend, P, Y, 1.0, 1.0)
    torch_gradient(backend, P, Y, 1.0, 1.0)
    assert backend.n_P_conversions == 1
    P2 = P.copy() * 2.0  # a different object: rebuilt, and used
    g2, _ = torch_gradient(backend, P2, Y, 1.0, 1.0)
    assert backend.n_P_conversions == 2
    g_ref, _ = numpy_gradient("exact", P2, Y, 1.0, 1.0)
    assert rel_max(g2, g_ref) <= 1e-5 and not np.allclose(g1, g2)
