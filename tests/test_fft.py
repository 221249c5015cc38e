"""FFT-accelerated interpolation repulsion against the exact references."""
import numpy as np
import pytest
import scipy.sparse as sp

from reference import gradient as reference_gradient
from reference import reference_repulsion as naive_reference_repulsion
from reference import repulsion as reference_repulsion
from turbotsne._config import thread_limit
from turbotsne.gradients import make_backend, make_repulsion
from turbotsne.gradients.exact import exact_repulsion
from turbotsne.gradients.fft import (MAX_GRID_NODES, FFTReferenceRepulsion, FFTRepulsion,
                                     grid_size)


def blobs(n, d, side, seed=0, k=8):
    """Embedding-like data: k Gaussian clusters spread over a cube of the given side."""
    r = np.random.default_rng(seed)
    centres = r.uniform(-side / 2, side / 2, size=(k, d))
    labels = r.integers(0, k, size=n)
    return np.ascontiguousarray(centres[labels] + r.normal(scale=side / 10, size=(n, d)))


def exact(Y, dof):
    r = np.empty_like(Y)
    Z = exact_repulsion(Y, float(dof), r, np.empty(len(Y)))
    return r, Z


def fft(Y, dof, **kw):
    out = np.full_like(Y, np.nan)
    Z = FFTRepulsion(**kw)(Y, dof, out)
    return out, Z


def errors(Y, dof, **kw):
    r, Z = exact(Y, dof)
    rf, Zf = fft(Y, dof, **kw)
    return np.linalg.norm(rf / Zf - r / Z) / np.linalg.norm(r / Z), abs(Zf - Z) / Z


# embedding-like sizes per dimension at which the defaults reach 1e-2 (see fft.py)
SIDES = {1: 20.0, 2: 20.0, 3: 8.0}


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("dof", [0.5, 1.0, 100.0])
def test_matches_naive_reference(d, dof):
    Y = blobs(1200, d, SIDES[d], seed=d)
    r, Z = reference_repulsion(Y, dof)
    rf, Zf = fft(Y, dof)
    assert np.all(np.isfinite(rf))
    assert np.linalg.norm(rf / Zf - r / Z) <= 1e-2 * np.linalg.norm(r / Z)
    assert abs(Zf - Z) <= 1e-2 * Z


@pytest.mark.parametrize("d", [1, 2, 3])
def test_larger_n_matches_exact(d):
    Y = blobs(3000, d, SIDES[d], seed=10 + d)
    err_r, err_z = errors(Y, 1.0)
    assert err_r <= 1e-2
    assert err_z <= 1e-2


def test_defaults_accurate_at_realistic_extent():
    # t-SNE embeddings end up 100-200 units across: tight clusters spread over ~150 units.
    # FIt-SNE's box-local quadratic Lagrange interpolation errs by ~3e-2 here.
    r = np.random.default_rng(5)
    centres = r.uniform(-65, 65, size=(10, 2))
    Y = centres[r.integers(0, 10, 3000)] + r.normal(scale=5, size=(3000, 2))
    assert 130 < np.ptp(Y, axis=0).max() < 170
    err_r, err_z = errors(Y, 1.0)
    assert err_r <= 1e-2
    assert err_z <= 1e-3


@pytest.mark.parametrize("d", [1, 2, 3])
def test_more_interpolation_points_more_accurate(d):
    Y = blobs(1000, d, 2 * SIDES[d], seed=20 + d)
    errs = [errors(Y, 1.0, n_interpolation_points=p, min_num_intervals=4, ints_in_interval=2)[0]
            for p in (1, 2, 3, 5)]
    assert all(b < a for a, b in zip(errs, errs[1:])), errs
    assert errs[-1] < 0.1 * errs[0], errs


def test_finer_grid_more_accurate():
    Y = blobs(1000, 2, 40.0, seed=3)
    coarse = errors(Y, 1.0, min_num_intervals=10, ints_in_interval=4)[0]
    fine = errors(Y, 1.0, min_num_intervals=10, ints_in_interval=0.5)[0]
    assert fine < 0.2 * coarse


@pytest.mark.parametrize("d, p", [(1, 3), (2, 3), (3, 3), (2, 1), (2, 2), (3, 1)])
def test_thread_count_does_not_change_result(d, p):
    # p = 1 spreads in 3 colours of slabs, p >= 2 in 2
    Y = blobs(2000, d, SIDES[d], seed=30 + d)
    results = []
    for n_threads in (1, 2):
        with thread_limit(n_threads):
            out = np.empty_like(Y)
            Z = FFTRepulsion(n_interpolation_points=p)(Y, 0.7, out)
        results.append((out, Z))
    assert np.array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


def test_repeated_calls_reuse_cache_and_stay_equal():
    Y = blobs(500, 2, 10.0)
    f = FFTRepulsion()
    a, b = np.empty_like(Y), np.empty_like(Y)
    Za = f(Y, 1.0, a)
    khat = f._khat
    Zb = f(Y, 1.0, b)
    assert f._khat is khat
    assert Za == Zb and np.array_equal(a, b)
    # a different dof or box width must not reuse the cached kernel
    c = np.empty_like(Y)
    f(Y, 2.0, c)
    assert f._khat is not khat
    r, _ = reference_repulsion(Y, 2.0)
    assert np.linalg.norm(c - r) < 1e-2 * np.linalg.norm(r)


def test_grid_size_rules():
    # openTSNE semantics: at least min_num_intervals, boxes at most ints_in_interval wide
    assert grid_size(1.0, 2) >= 50
    assert grid_size(200.0, 2) >= 200
    n = grid_size(200.0, 2)
    from scipy.fft import next_fast_len

    assert next_fast_len(2 * 3 * n, real=True) == 2 * 3 * n
    assert grid_size(200.0, 2) < 220


def test_oversize_grid_raises():
    Y = np.zeros((10, 2))
    Y[0] = 1e6  # a point that shot off
    with pytest.raises(ValueError, match="max_step_norm"):
        FFTRepulsion()(Y, 1.0, np.empty_like(Y))
    Y3 = np.zeros((10, 3))
    Y3[0] = 5e3
    with pytest.raises(ValueError, match="points have probably shot off"):
        FFTRepulsion()(Y3, 1.0, np.empty_like(Y3))
    with pytest.raises(ValueError, match="MAX_GRID_NODES"):
        grid_size(100 * np.sqrt(MAX_GRID_NODES[2]), 2)
    # below the cap: boxes at most ints_in_interval wide; above: the largest grid under it
    assert (2 * 3 * grid_size(20.0, 3)) ** 3 <= MAX_GRID_NODES[3]
    assert 20.0 / grid_size(20.0, 3) <= 1.0
    for d, extent in ((3, 60.0), (3, 500.0), (2, 3000.0)):
        n = grid_size(extent, d)
        assert (2 * 3 * n) ** d <= MAX_GRID_NODES[d] < (2 * 3 * 1.12 * n) ** d  # within 10 %
        assert extent / n > 1.0


def test_non_finite_input_raises():
    Y = np.zeros((5, 2))
    Y[2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        FFTRepulsion()(Y, 1.0, np.empty_like(Y))


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("scale", [0.0, 1e-9, 1e-4])
def test_identical_points_and_tiny_extent(d, scale):
    rng = np.random.default_rng(0)
    Y = np.ascontiguousarray(3.0 + scale * rng.normal(size=(50, d)))
    out, Z = fft(Y, 1.0)
    r, Z_ref = reference_repulsion(Y, 1.0)
    assert np.all(np.isfinite(out)) and np.isfinite(Z)
    assert abs(Z - Z_ref) <= 1e-6 * Z_ref
    assert np.linalg.norm(out - r) <= 1e-3 * np.linalg.norm(r) + 1e-12 * Z_ref


def test_two_points_and_one_point():
    Y = np.array([[0.0, 0.0], [1.0, 0.0]])
    out, Z = fft(Y, 1.0)
    r, Z_ref = reference_repulsion(Y, 1.0)
    assert np.allclose(out, r, rtol=1e-3, atol=1e-6) and abs(Z - Z_ref) < 1e-3
    out1, Z1 = fft(np.array([[2.0, 3.0]]), 1.0)
    assert np.allclose(out1, 0.0, atol=1e-9) and abs(Z1) < 1e-9


def test_parameter_validation():
    with pytest.raises(ValueError, match="n_interpolation_points"):
        FFTRepulsion(n_interpolation_points=0)
    with pytest.raises(ValueError, match="min_num_intervals"):
        FFTRepulsion(min_num_intervals=0)
    with pytest.raises(ValueError, match="ints_in_interval"):
        FFTRepulsion(ints_in_interval=-1)
    with pytest.raises(ValueError, match="negative_gradient_method"):
        FFTRepulsion()(np.zeros((5, 4)), 1.0, np.empty((5, 4)))


def test_registry_rejects_more_than_three_components():
    with pytest.raises(ValueError, match="negative_gradient_method"):
        make_repulsion("fft", n_components=4)
    assert isinstance(make_repulsion("fft", n_components=3), FFTRepulsion)


@pytest.mark.parametrize("d", [2, 3])
def test_full_gradient_through_registry(d):
    n = 800
    Y = blobs(n, d, SIDES[d], seed=40 + d)
    rng = np.random.default_rng(1)
    rows = np.repeat(np.arange(n), 10)
    cols = rng.integers(0, n, size=rows.size)
    P = sp.coo_matrix((rng.random(rows.size), (rows, cols)), shape=(n, n)).tocsr()
    P = P + P.T
    P.setdiag(0)
    P.eliminate_zeros()
    P = (P / P.sum()).tocsr()
    backend = make_backend("fft", P, n_jobs=1, n_components=d)
    assert backend.name == "fft"
    out = np.empty_like(Y)
    backend.gradient(Y, P, 1.0, 12.0, out)
    ref = reference_gradient(Y, P, 1.0, 12.0)
    assert np.linalg.norm(out - ref) <= 1e-2 * np.linalg.norm(ref)
    backend.gradient(Y, P, 1.0, 1.0, out)
    ref = reference_gradient(Y, P, 1.0, 1.0)
    assert np.linalg.norm(out - ref) <= 1e-2 * np.linalg.norm(ref)


# ---------------------------------------------------------------------------------------
# repulsion of new points by a fixed reference (transform)
# ---------------------------------------------------------------------------------------
def new_points(R, n, seed=0, outside=0.15):
    """Half near reference points, half uniform over the reference box widened by
    ``outside`` of its side on each side (so some lie outside it)."""
    rng = np.random.default_rng(seed)
    lo, hi = R.min(axis=0), R.max(axis=0)
    near = R[rng.integers(0, len(R), n // 2)] + rng.normal(scale=0.5, size=(n // 2, R.shape[1]))
    wide = lo + (hi - lo) * rng.uniform(-outside, 1 + outside, size=(n - n // 2, R.shape[1]))
    return np.ascontiguousarray(np.vstack([near, wide]))


def fft_reference(f, Y, dof):
    out = np.full_like(Y, np.nan)
    z = np.full(len(Y), np.nan)
    f(Y, dof, out, z)
    return out, z


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("dof", [0.5, 1.0, 100.0])
def test_reference_matches_naive(d, dof):
    R = blobs(1000, d, SIDES[d], seed=50 + d)
    Y = new_points(R, 300, seed=d)
    assert np.any(Y < R.min(axis=0)) and np.any(Y > R.max(axis=0))
    r, z = naive_reference_repulsion(Y, R, dof)
    out, zf = fft_reference(FFTReferenceRepulsion(R), Y, dof)
    assert np.all(np.isfinite(out)) and np.all(zf > 0)
    force, force_f = r / z[:, None], out / zf[:, None]
    assert np.linalg.norm(force_f - force) <= 1e-2 * np.linalg.norm(force)
    assert np.linalg.norm(zf - z) <= 1e-2 * np.linalg.norm(z)


def test_reference_far_outside_points():
    # points well outside the reference box and, for dof > 1, isolated ones (summed
    # exactly). The union box is ~3x wider, so the boxes are ints_in_interval = 1 unit
    # wide (0.4 in the test above): the default method's accuracy is ~1e-2 there.
    R = blobs(800, 2, 20.0, seed=60)
    Y = new_points(R, 200, seed=61, outside=1.0)
    for dof in (1.0, 100.0):
        r, z = naive_reference_repulsion(Y, R, dof)
        out, zf = fft_reference(FFTReferenceRepulsion(R), Y, dof)
        force, force_f = r / z[:, None], out / zf[:, None]
        assert np.linalg.norm(force_f - force) <= 2e-2 * np.linalg.norm(force)
        assert np.linalg.norm(zf - z) <= 1e-2 * np.linalg.norm(z)


def test_reference_grid_cache_matches_fresh_objects():
    R = blobs(800, 2, 20.0, seed=70)
    lo, hi = R.min(axis=0), R.max(axis=0)
    rng = np.random.default_rng(71)
    Y1 = np.ascontiguousarray(lo + (hi - lo) * rng.uniform(0.1, 0.9, size=(100, 2)))
    Y2 = np.ascontiguousarray(Y1 + rng.normal(scale=0.3, size=Y1.shape))  # still inside
    Y3 = np.ascontiguousarray(Y1 + 0.5 * (hi - lo))  # many leave the box: a new grid
    f = FFTReferenceRepulsion(R)
    fft_reference(f, Y1, 1.0)
    grid_id, phi = f._grid_id, f._phi
    a = fft_reference(f, Y2, 1.0)
    assert f._grid_id == grid_id and f._phi is phi  # the potentials were reused
    b = fft_reference(FFTReferenceRepulsion(R), Y2, 1.0)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    a = fft_reference(f, Y3, 1.0)
    assert f._grid_id == grid_id + 1
    b = fft_reference(FFTReferenceRepulsion(R), Y3, 1.0)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    # a new dof recomputes the potentials on the same grid
    c = fft_reference(f, Y3, 2.0)
    r, z = naive_reference_repulsion(Y3, R, 2.0)
    assert np.linalg.norm(c[1] - z) <= 1e-2 * np.linalg.norm(z)


@pytest.mark.parametrize("d", [2, 3])
@pytest.mark.parametrize("dof", [0.7, 100.0])
def test_reference_thread_count_does_not_change_result(d, dof):
    R = blobs(1500, d, SIDES[d], seed=80 + d)
    Y = new_points(R, 1200, seed=d)
    results = []
    for n_threads in (1, 2):
        with thread_limit(n_threads):
            results.append(fft_reference(FFTReferenceRepulsion(R), Y, dof))
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])


def test_reference_registry_and_validation():
    R = blobs(100, 2, 10.0)
    f = make_repulsion("fft", reference=R, n_interpolation_points=4)
    assert isinstance(f, FFTReferenceRepulsion) and f.n_interpolation_points == 4
    with pytest.raises(ValueError, match="reference embedding has 2"):
        f(np.zeros((3, 3)), 1.0, np.empty((3, 3)), np.empty(3))
    with pytest.raises(ValueError, match="negative_gradient_method"):
        FFTReferenceRepulsion(np.zeros((5, 4)))
    with pytest.raises(ValueError, match="NaN or inf"):
        f(np.full((3, 2), np.nan), 1.0, np.empty((3, 2)), np.empty(3))
    # an empty reference repels nothing
    out, z = fft_reference(FFTReferenceRepulsion(np.zeros((0, 2))), R[:5], 1.0)
    assert np.all(out == 0) and np.all(z == 0)


# ---------------------------------------------------------------------------------------
# wide embeddings: capped grid plus direct near field
# ---------------------------------------------------------------------------------------
def test_wide_3d_embedding_near_far_split_accurate():
    # a realistic 3-D extent (~150 units): the grid is capped, boxes ~6 units wide, and
    # pairs closer than NEAR_FIELD_RADIUS boxes are summed directly (measured ~1e-3)
    rng = np.random.default_rng(90)
    centres = rng.uniform(-65, 65, size=(10, 3))
    Y = np.ascontiguousarray(centres[rng.integers(0, 10, 2500)] + rng.normal(scale=2.5, size=(2500, 3)))
    assert np.ptp(Y, axis=0).max() > 130
    for dof in (0.5, 1.0, 100.0):
        r, Z = exact(Y, dof)
        f = FFTRepulsion()
        out = np.empty_like(Y)
        Zf = f(Y, dof, out)
        assert f._layout.n_boxes < 40 and f._near_key is not None  # capped and split
        assert np.linalg.norm(out / Zf - r / Z) <= 1e-2 * np.linalg.norm(r / Z)
        assert abs(Zf - Z) <= 1e-2 * Z
    with thread_limit(1):
        a = np.empty_like(Y)
        Za = FFTRepulsion()(Y, 1.0, a)
    with thread_limit(2):
        b = np.empty_like(Y)
        Zb = FFTRepulsion()(Y, 1.0, b)
    assert Za == Zb and np.array_equal(a, b)


def test_3d_fit_with_split_matches_barnes_hut(monkeypatch):
    from conftest import make_clusters
    from turbotsne import TSNE
    import turbotsne.gradients.fft as fft_module

    # a small cap (10 boxes) makes the near/far split carry the whole run, and keeps it fast
    monkeypatch.setitem(fft_module.MAX_GRID_NODES, 3, 2 ** 18)
    X, _ = make_clusters(1000, n_features=10, n_clusters=6, seed=3)
    kw = dict(n_components=3, random_state=0, n_iter=300, early_exaggeration_iter=150)
    fft_fit = TSNE(negative_gradient_method="fft", **kw).fit(X)
    bh_fit = TSNE(negative_gradient_method="bh", **kw).fit(X)
    assert np.ptp(fft_fit.embedding_, axis=0).max() > 15  # beyond the 10-box grid's width
    assert abs(fft_fit.kl_divergence_ - bh_fit.kl_divergence_) <= 0.02 * bh_fit.kl_divergence_


@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("dof", [0.5, 1.0, 100.0])
@pytest.mark.parametrize("batch", [None, 37])
def test_near_field_matches_dense_sum(monkeypatch, d, dof, batch):
    # the direct part K - P of the split, against a dense NumPy sum over all pairs; with a
    # 37-point buffer every cell sweeps its neighbourhood in many batches, some of them
    # ending inside a run
    import turbotsne.gradients.fft as fft_module
    from turbotsne.gradients.fft import _far_coefficients

    if batch is not None:
        monkeypatch.setattr(fft_module, "NEAR_FIELD_BATCH", batch)
    Y = blobs(700, d, 12.0, seed=40 + d)
    lo = Y.min(axis=0)
    extent = float(np.ptp(Y, axis=0).max())
    s_cut = 2.3 ** 2
    coef = _far_coefficients(dof, s_cut)
    out = np.ones_like(Y)  # the near field adds to what is there
    z = FFTRepulsion()._near(Y, lo, extent, dof, s_cut, coef, out)

    diff = Y[:, None, :] - Y[None, :, :]
    s = np.sum(diff ** 2, axis=2)
    u = s - s_cut
    q = 1.0 + s / dof
    k1 = q ** -dof
    k2 = k1 / q
    inside = (s < s_cut) & ~np.eye(len(Y), dtype=bool)
    f = np.where(inside, k2 - (coef[3] + u * (coef[4] + u * coef[5])), 0.0)
    g = np.where(inside, k1 - (coef[0] + u * (coef[1] + u * coef[2])), 0.0)
    assert inside.sum() > 20 * len(Y)  # the cells hold many pairs within the cut
    # the pair terms are single precision (measured: <= 5e-6 of the largest force, Z to 4e-7),
    # far below the split's interpolation error (~1e-3)
    expected = np.einsum("ij,ijk->ik", f, diff)
    assert np.abs(out - 1.0 - expected).max() <= 2e-5 * np.abs(expected).max()
    assert z == pytest.approx(g.sum(), rel=1e-5)


@pytest.mark.parametrize("d", [1, 2])
def test_capped_grid_split_in_one_and_two_dims(monkeypatch, d):
    # the near/far split also serves 1-D and 2-D embeddings wider than their cap
    import turbotsne.gradients.fft as fft_module

    monkeypatch.setitem(fft_module.MAX_GRID_NODES, d, (2 * 3 * 12) ** d)  # 12 boxes at most
    Y = blobs(2000, d, 60.0, seed=50 + d)
    f = FFTRepulsion()
    out = np.empty_like(Y)
    Zf = f(Y, 1.0, out)
    assert f._layout.n_boxes <= 12 and f._near_key is not None  # capped and split
    r, Z = exact(Y, 1.0)
    assert np.linalg.norm(out / Zf - r / Z) <= 1e-2 * np.linalg.norm(r / Z)
    assert abs(Zf - Z) <= 1e-3 * Z
