"""PyTorch gradient backends (turbotsne.gpu.gradients) against the numba CPU backends."""
import numpy as np
import pytest
import scipy.sparse as sp

torch = pytest.importorskip("torch")

import turbotsne  # noqa: E402
from conftest import make_clusters  # noqa: E402
from turbotsne._config import thread_limit  # noqa: E402
from turbotsne.gpu import gradients as tg  # noqa: E402
from turbotsne.gpu.gradients import make_backend as make_torch_backend  # noqa: E402
from turbotsne.gradients import PartialGradient, make_backend, make_repulsion  # noqa: E402

DEVICE = "cpu"
N = 600


@pytest.fixture(autouse=True, scope="module")
def one_thread_each():
    # torch's and numba's OpenMP threads spin after each parallel region and fight each
    # other when the tests alternate between them (5x slower on 2 cores): one thread each
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with thread_limit(1):
        yield
    torch.set_num_threads(threads)


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
    for kwargs in ({"P": P}, {"reference": np.zeros((5, 2))}):
        with pytest.raises(ValueError, match="'bh' is not available with backend='torch'; use 'fft' or 'exact'"):
            make_torch_backend("bh", device=DEVICE, **kwargs)
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


def test_callers_arrays_are_not_modified(affinities):
    P, Pd = affinities
    R = np.random.default_rng(9).normal(scale=5.0, size=(200, 2))
    Pn = sp.random(50, 200, density=0.05, random_state=0, format="csr")
    Pn = sp.csr_matrix(Pn.multiply(1.0 / Pn.sum(axis=1)))
    saved = [a.copy() for a in (P.data, P.indices, P.indptr, Pd, R, Pn.data, Pn.indices, Pn.indptr)]
    Y = np.random.default_rng(10).normal(size=(N, 2))
    Yn = np.random.default_rng(11).normal(scale=5.0, size=(50, 2))
    for dtype in (torch.float64, torch.float32):  # float64 on the CPU could share memory
        for method in ("exact", "fft"):
            torch_gradient(make_torch_backend(method, P, device=DEVICE, dtype=dtype), P, Y, 1.0, 12.0, dtype)
            torch_gradient(make_torch_backend(method, reference=R, device=DEVICE, dtype=dtype), Pn, Yn, 1.0,
                           1.0, dtype)
        torch_gradient(make_torch_backend("exact", Pd, device=DEVICE, dtype=dtype), Pd, Y, 1.0, 12.0, dtype)
    for a, b in zip((P.data, P.indices, P.indptr, Pd, R, Pn.data, Pn.indices, Pn.indptr), saved):
        assert np.array_equal(a, b)


# ---------------------------------------------------------------------------------------
# FFT
# ---------------------------------------------------------------------------------------
def blobs(n, d, side, seed=0, k=8):
    """Embedding-like data: k Gaussian clusters spread over a cube of the given side."""
    r = np.random.default_rng(seed)
    centres = r.uniform(-side / 2, side / 2, size=(k, d))
    return centres[r.integers(0, k, size=n)] + r.normal(scale=side / 10, size=(n, d))


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("dof", [0.5, 1.0, 100.0])
def test_fft_matches_numba_fft_and_exact(affinities, d, dof, monkeypatch):
    # sides at which the numba backend's grid is not capped by MAX_GRID_NODES either, and its
    # per-point 3-D cap (split_caps, a near/far split the torch backend does not have) lifted,
    # so both use the same grid; measured: gradients <= 1.4e-5 apart (float32 grids on both
    # sides), KL <= 2e-8; against exact <= 6e-3 and KL <= 2e-6
    import turbotsne.gradients.fft as fft_module

    monkeypatch.setattr(fft_module, "split_caps", lambda n: dict(fft_module.MAX_GRID_NODES))
    P = affinities[0]
    Y = blobs(N, d, {1: 40.0, 2: 30.0, 3: 12.0}[d], seed=d)
    g_fft, kl_fft = numpy_gradient("fft", P, Y, dof, 1.0, n_components=d)
    g_exact, kl_exact = numpy_gradient("exact", P, Y, dof, 1.0)
    backend = make_torch_backend("fft", P, device=DEVICE, n_components=d)
    assert backend.name == "fft"
    gt, klt = torch_gradient(backend, P, Y, dof, 1.0)
    assert rel_norm(gt, g_fft) <= 5e-5
    assert klt == pytest.approx(kl_fft, rel=1e-6)
    assert rel_norm(gt, g_exact) <= 1e-2
    assert klt == pytest.approx(kl_exact, rel=1e-4)
    gt64, _ = torch_gradient(make_torch_backend("fft", P, device=DEVICE, dtype=torch.float64), P, Y, dof, 1.0,
                             torch.float64)
    assert rel_norm(gt64, g_fft) <= 5e-5


@pytest.mark.parametrize("d", [1, 2, 3])
def test_fft_matches_exact_at_realistic_extent(affinities, d):
    P = affinities[0]
    side = {1: 40.0, 2: 40.0, 3: 16.0}[d]  # extents ~60, ~55, ~25
    Y = blobs(N, d, side, seed=10 + d)
    backend = make_torch_backend("fft", P, device=DEVICE, n_components=d)
    for dof in (0.5, 1.0, 100.0):
        g_exact, kl_exact = numpy_gradient("exact", P, Y, dof, 12.0)
        gt, klt = torch_gradient(backend, P, Y, dof, 12.0)
        assert rel_norm(gt, g_exact) <= 1e-2  # measured <= 4.4e-4
        assert klt == pytest.approx(kl_exact, rel=1e-4)


def test_grid_rule_matches_the_cpu_below_its_cap():
    from turbotsne.gradients.fft import grid_size

    for d, extents in ((1, (0.5, 30.0, 1000.0)), (2, (3.0, 77.7, 500.0)), (3, (2.0, 20.0))):
        for extent in extents:
            for p, ints in ((3, 1.0), (2, 0.7)):
                assert tg.torch_grid_size(extent, d, p, 50, ints) == grid_size(extent, d, p, 50, ints)


def test_fft_capped_grid_warns_and_shot_off_points_raise(affinities, monkeypatch, caplog):
    P = affinities[0]
    Y = blobs(N, 3, 30.0, seed=3)
    monkeypatch.setattr(tg, "TORCH_MAX_GRID_NODES", {1: 2 ** 26, 2: 2 ** 26, 3: 2 ** 18})
    monkeypatch.setattr("turbotsne._logging._logged", set())  # no log-once notice logged yet
    backend = make_torch_backend("fft", P, device=DEVICE, n_components=3)
    with caplog.at_level("WARNING", logger="turbotsne.gpu.gradients"):
        gt, klt = torch_gradient(backend, P, Y, 1.0, 1.0)
    assert "grid is capped" in caplog.text and "summed exactly" in caplog.text
    # a capped 3-D grid is too coarse to be accurate: that call's repulsion is the exact sum
    g_exact, kl_exact = numpy_gradient("exact", P, Y, 1.0, 1.0)
    assert rel_max(gt, g_exact) <= 1e-5 and klt == pytest.approx(kl_exact, rel=1e-5)
    Y[0, 0] = 1e6
    with pytest.raises(ValueError, match="points have probably shot off"):
        torch_gradient(backend, P, Y, 1.0, 1.0)
    Y[0, 0] = np.nan
    with pytest.raises(ValueError, match="contains NaN or inf"):
        torch_gradient(backend, P, Y, 1.0, 1.0)


def test_fft_spectra_cached_and_P_converted_once(affinities):
    P = affinities[0]
    Y = blobs(N, 2, 20.0, seed=4)
    backend = make_torch_backend("fft", P, device=DEVICE)
    g1, _ = torch_gradient(backend, P, Y, 1.0, 1.0)
    spectra = backend.repulsion._spectra
    g2, _ = torch_gradient(backend, P, Y, 1.0, 1.0)
    assert backend.repulsion._spectra is spectra and backend.n_P_conversions == 1
    assert np.array_equal(g1, g2)
    torch_gradient(backend, P, Y, 2.0, 1.0)  # a new dof: new spectra
    assert backend.repulsion._spectra is not spectra


# ---------------------------------------------------------------------------------------
# reference (transform)
# ---------------------------------------------------------------------------------------
def new_points(R, n, seed=0, outside=0.3):
    """Half near reference points, half uniform over the reference box widened by
    ``outside`` of its side on each side (so some lie outside it)."""
    rng = np.random.default_rng(seed)
    lo, hi = R.min(axis=0), R.max(axis=0)
    near = R[rng.integers(0, len(R), n // 2)] + rng.normal(scale=0.5, size=(n // 2, R.shape[1]))
    wide = lo + (hi - lo) * rng.uniform(-outside, 1 + outside, size=(n - n // 2, R.shape[1]))
    return np.vstack([near, wide])


def partial_P(n_new, n_ref, seed=0):
    P = sp.random(n_new, n_ref, density=0.03, random_state=seed, format="csr")
    return sp.csr_matrix(P.multiply(1.0 / P.sum(axis=1)))


@pytest.mark.parametrize("method", ["exact", "fft"])
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("dof", [0.5, 1.0, 100.0])
def test_reference_backends_match_partial_gradient(method, d, dof):
    R = blobs(800, d, {1: 20.0, 2: 20.0, 3: 6.0}[d], seed=50 + d)
    Y = new_points(R, 200, seed=d)
    assert np.any(Y < R.min(axis=0)) and np.any(Y > R.max(axis=0))
    P = partial_P(200, 800, seed=d)
    out = np.empty_like(Y)
    kl = PartialGradient(R, make_repulsion(method, reference=R)).gradient(Y, P, dof, 2.0, out, True)
    # the numba and torch grids agree (3-D: below the numba cap); float32 rounding only
    # (measured <= 1.2e-6 of the largest gradient for both methods)
    tol = 1e-5
    for dtype in (torch.float32, torch.float64):
        backend = make_torch_backend(method, reference=R, device=DEVICE, dtype=dtype)
        assert backend.name == method
        gt, klt = torch_gradient(backend, P, Y, dof, 2.0, dtype)
        assert rel_max(gt, out) <= (tol if dtype == torch.float32 else 1e-10)
        assert klt == pytest.approx(kl, rel=1e-5 if dtype == torch.float32 else 1e-10)


def test_reference_fft_regrids_only_when_points_leave_the_grid():
    R = blobs(800, 2, 20.0, seed=70)
    lo, hi = R.min(axis=0), R.max(axis=0)
    rng = np.random.default_rng(71)
    Y1 = lo + (hi - lo) * rng.uniform(0.1, 0.9, size=(100, 2))
    P = partial_P(100, 800)
    backend = make_torch_backend("fft", reference=R, device=DEVICE)
    torch_gradient(backend, P, Y1, 1.0, 1.0)
    rep = backend.repulsion
    grids, phi = rep.n_grids, rep._phi
    torch_gradient(backend, P, Y1 + rng.normal(scale=0.3, size=Y1.shape), 1.0, 1.0)
    assert rep.n_grids == grids and rep._phi is phi and backend.n_P_conversions == 1
    Y3 = Y1 + 0.5 * (hi - lo)  # many leave the grid: a new one, still accurate
    g, kl = torch_gradient(backend, P, Y3, 1.0, 1.0)
    assert rep.n_grids == grids + 1
    out = np.empty_like(Y3)
    kl_ref = PartialGradient(R, make_repulsion("exact", reference=R)).gradient(Y3, P, 1.0, 1.0, out, True)
    assert rel_norm(g, out) <= 1e-2
    assert kl == pytest.approx(kl_ref, rel=1e-3)
