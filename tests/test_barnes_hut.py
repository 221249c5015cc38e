"""Barnes-Hut repulsion against the exact kernel and the naive NumPy references."""
import numpy as np
import pytest
import scipy.sparse as sp

import reference
from conftest import make_clusters
from turbotsne._config import thread_limit
from turbotsne.gradients import make_backend, make_repulsion
from turbotsne.gradients.barnes_hut import BarnesHutReferenceRepulsion, BarnesHutRepulsion
from turbotsne.gradients.exact import ExactReferenceRepulsion, exact_reference_repulsion, exact_repulsion

DIMS = (1, 2, 3)
DOFS = (0.5, 1.0, 100.0)

# Tolerances at theta = 0.5 are about twice the largest error the second-order cell
# summaries (centre of mass + covariance) make over each test's cases, so that a
# monopole summary (centre of mass only) fails them. The bound 1e-2 on the per-point
# normaliser z of new points is kept: the second-order summaries nearly reach it.


def rel(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


def exact(Y, dof):
    out = np.empty_like(Y)
    Z = exact_repulsion(Y, float(dof), out, np.empty(Y.shape[0]))
    return out, Z


def bh(Y, dof, theta):
    out = np.full_like(Y, np.nan)  # every entry must be overwritten
    Z = BarnesHutRepulsion(theta)(Y, dof, out)
    return out, Z


def embedding(n, d, seed=0, scale=20.0):
    """Clustered points at a realistic t-SNE extent."""
    X, _ = make_clusters(n=n, n_features=d, n_clusters=6, seed=seed, spread=0.6)
    return np.ascontiguousarray(X * (scale / X.std()))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dof", DOFS)
def test_theta_zero_matches_naive_reference(d, dof):
    Y = embedding(800, d, seed=d)
    r_ref, Z_ref = reference.repulsion(Y, dof)
    r, Z = bh(Y, dof, 0.0)
    assert rel(r, r_ref) <= 1e-10
    assert abs(Z - Z_ref) <= 1e-10 * Z_ref


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dof", DOFS)
def test_theta_zero_matches_exact_kernel(d, dof, rng):
    Y = rng.normal(scale=25.0, size=(2000, d))
    r_ex, Z_ex = exact(Y, dof)
    r, Z = bh(Y, dof, 0.0)
    assert rel(r, r_ex) <= 1e-10
    assert abs(Z - Z_ex) <= 1e-10 * Z_ex


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dof", DOFS)
@pytest.mark.parametrize("data", ["normal", "clusters"])
def test_theta_half_is_accurate(d, dof, data, rng):
    if data == "normal":
        Y = rng.normal(scale=25.0, size=(1500, d))
    else:
        Y = embedding(1500, d, seed=3)
    r_ex, Z_ex = exact(Y, dof)
    r, Z = bh(Y, dof, 0.5)
    assert np.all(np.isfinite(r))
    assert rel(r, r_ex) <= 1.2e-2
    assert abs(Z - Z_ex) <= 8e-4 * Z_ex
    assert rel(r / Z, r_ex / Z_ex) <= 1.2e-2


def test_theta_half_summarises_and_error_grows_with_theta(rng):
    # theta > 0 must really approximate (not silently fall back to exact), and
    # a larger opening angle must cost accuracy.
    Y = rng.normal(scale=25.0, size=(2000, 2))
    r_ex, Z_ex = exact(Y, 1.0)
    errors = [rel(bh(Y, 1.0, theta)[0], r_ex) for theta in (0.25, 0.5, 1.0)]
    assert errors[0] > 1e-12
    assert errors[0] < errors[1] < errors[2]


@pytest.mark.parametrize("d", DIMS)
def test_duplicate_points(d, rng):
    base = rng.normal(scale=10.0, size=(400, d))
    Y = np.ascontiguousarray(np.repeat(base, 4, axis=0))  # every point four times
    r_ex, Z_ex = exact(Y, 1.0)
    r, Z = bh(Y, 1.0, 0.5)
    assert np.all(np.isfinite(r)) and np.isfinite(Z)
    assert rel(r, r_ex) <= 5e-3
    assert abs(Z - Z_ex) <= 3e-4 * Z_ex
    r0, Z0 = bh(Y, 1.0, 0.0)
    assert rel(r0, r_ex) <= 1e-10


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dof", DOFS)
def test_identical_points(d, dof):
    n = 300
    Y = np.full((n, d), 3.5)
    r, Z = bh(Y, dof, 0.5)
    np.testing.assert_array_equal(r, 0.0)
    assert Z == pytest.approx(n * (n - 1), rel=1e-12)


def test_near_duplicates_grow_the_tree(rng):
    # pairs 1e-9 apart make chains of single-child cells down to the depth cap,
    # more nodes than the initial capacity: the build must grow and stay exact.
    base = rng.normal(scale=20.0, size=(500, 2))
    Y = np.concatenate([base, base + 1e-9])
    rep = BarnesHutRepulsion(0.0)
    out = np.empty_like(Y)
    Z = rep(Y, 1.0, out)
    r_ex, Z_ex = exact(Y, 1.0)
    assert rep._capacity > 2 * Y.shape[0] + 64
    assert rel(out, r_ex) <= 1e-10
    assert abs(Z - Z_ex) <= 1e-10 * Z_ex


def test_reused_object_changes_size(rng):
    rep = BarnesHutRepulsion(0.5)
    for n, d in [(700, 2), (1200, 3), (700, 2), (50, 1)]:
        Y = rng.normal(scale=15.0, size=(n, d))
        out = np.empty_like(Y)
        Z = rep(Y, 1.0, out)
        r_ex, Z_ex = exact(Y, 1.0)
        assert rel(out, r_ex) <= 5e-3
        assert abs(Z - Z_ex) <= 5e-4 * Z_ex


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dof", [0.5, 1.0])
def test_thread_count_does_not_change_result(d, dof):
    Y = embedding(3000, d, seed=5)
    results = []
    for n_jobs in (1, 2):
        with thread_limit(n_jobs):
            out = np.empty_like(Y)
            Z = BarnesHutRepulsion(0.5)(Y, dof, out)
        results.append((out, Z))
    assert np.array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


# The fit's 2-D traversal walks the tree once per group of points (a cell of at most
# barnes_hut._GROUP points) and summarises a cell only where the opening criterion holds from
# the group's whole bounding box. Groups of one point are the per-point criterion itself, so
# they must reproduce the per-point traversal (the generic kernel, which 1-D and 3-D use); one
# group of all points opens every cell down to its leaves: the exact sum.
@pytest.mark.parametrize("dof", [0.5, 1.0, 3.0])
def test_groups_of_one_point_are_the_per_point_traversal(dof, monkeypatch):
    from turbotsne.gradients import barnes_hut

    Y = embedding(2000, 2, seed=3)
    tree = BarnesHutRepulsion(0.5)
    tree.build(Y)
    per_point = np.empty_like(Y)
    Z_ref = barnes_hut._traverse(tree._Ys, tree._order, True, tree._Ys, tree._node_i, tree._node_f, dof, 0.5,
                                 per_point, np.empty(len(Y)))
    monkeypatch.setattr(barnes_hut, "_GROUP", 1)
    r, Z = bh(Y, dof, 0.5)
    np.testing.assert_allclose(r, per_point, rtol=1e-9, atol=1e-12 * np.abs(per_point).max())
    assert Z == pytest.approx(Z_ref, rel=1e-11)


@pytest.mark.parametrize("dof", [0.5, 1.0, 3.0])
def test_one_group_of_all_points_is_exact(dof, monkeypatch):
    from turbotsne.gradients import barnes_hut

    Y = embedding(600, 2, seed=4)
    monkeypatch.setattr(barnes_hut, "_GROUP", len(Y))
    r, Z = bh(Y, dof, 0.5)
    r_ex, Z_ex = exact(Y, dof)
    assert rel(r, r_ex) <= 1e-12
    assert Z == pytest.approx(Z_ex, rel=1e-12)


def test_groups_are_more_accurate_than_per_point(monkeypatch):
    # the group criterion only refines the per-point one: on a clustered embedding the default
    # groups err less than groups of one point (measured 5e-4 against 2e-3 on a 5,000-point
    # MNIST embedding)
    from turbotsne.gradients import barnes_hut

    Y = embedding(4000, 2, seed=6)
    r_ex, _ = exact(Y, 1.0)
    r_group, _ = bh(Y, 1.0, 0.5)
    monkeypatch.setattr(barnes_hut, "_GROUP", 1)
    r_point, _ = bh(Y, 1.0, 0.5)
    assert rel(r_group, r_ex) < rel(r_point, r_ex)


def test_tiny_inputs():
    out = np.full((1, 2), np.nan)
    assert BarnesHutRepulsion(0.5)(np.zeros((1, 2)), 1.0, out) == 0.0
    np.testing.assert_array_equal(out, 0.0)
    Y = np.array([[0.0, 0.0], [1.0, 0.0]])
    r, Z = bh(Y, 1.0, 0.5)
    assert Z == pytest.approx(1.0)  # w = 1/2 for each ordered pair
    np.testing.assert_allclose(r, [[-0.25, 0.0], [0.25, 0.0]])


def test_rejects_bad_input():
    rep = BarnesHutRepulsion(0.5)
    with pytest.raises(ValueError, match="1, 2 or 3 dimensions"):
        rep(np.zeros((10, 4)), 1.0, np.empty((10, 4)))
    Y = np.zeros((10, 2))
    Y[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        rep(Y, 1.0, np.empty((10, 2)))
    with pytest.raises(ValueError, match="'theta' parameter"):
        BarnesHutRepulsion(-0.1)


def test_make_repulsion_bh():
    assert isinstance(make_repulsion("bh", theta=0.5, n_components=2), BarnesHutRepulsion)
    with pytest.raises(ValueError, match="negative_gradient_method.*'exact'"):
        make_repulsion("bh", theta=0.5, n_components=4)


@pytest.mark.parametrize("dof", [1.0, 0.5])
def test_bh_backend_gradient_matches_reference(dof, rng):
    n, k = 1000, 15
    Y = embedding(n, 2, seed=7, scale=10.0)
    cols = rng.integers(0, n - 1, size=(n, k))
    cols += cols >= np.arange(n)[:, None]  # no self-loops
    P = sp.csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), cols.ravel())), shape=(n, n))
    P = P + P.T
    P = (P / P.sum()).tocsr()
    backend = make_backend("bh", P, theta=0.5)
    assert backend.name == "bh"
    out = np.empty_like(Y)
    backend.gradient(Y, P, dof, 12.0, out)
    expected = reference.gradient(Y, P, dof=dof, exaggeration=12.0)
    assert rel(out, expected) <= 7e-4


def test_leaf_at_the_end_of_a_level_writes_no_children():
    # regression: a one-point node last in its level used to write a child past the node arrays
    # (a segfault) and, mid-level, raced with its neighbour's children; found in a real t-SNE run
    import pathlib

    Y = np.load(pathlib.Path(__file__).parent / "data" / "bh_leaf_ends_level.npy")
    rep = BarnesHutRepulsion(0.5)
    n_nodes = rep.build(Y)
    node_i = rep._node_i[:n_nodes]
    assert np.all(node_i[:, 1] > node_i[:, 0])
    leaves = node_i[:, 3] == 0
    # every point lies in exactly one leaf
    assert (node_i[leaves, 1] - node_i[leaves, 0]).sum() == Y.shape[0]
    out = np.empty_like(Y)
    exact = np.empty_like(Y)
    Z = rep(Y, 1.0, out)
    Z_ex = exact_repulsion(Y, 1.0, exact, np.empty(Y.shape[0]))
    assert abs(Z - Z_ex) / Z_ex < 1e-8
    assert np.linalg.norm(out - exact) / np.linalg.norm(exact) < 4e-6


# ---------------------------------------------------------------------------
# Repulsion of new points by a fixed reference embedding (transform)
# ---------------------------------------------------------------------------


def exact_ref(Y, R, dof):
    out = np.empty_like(Y)
    z = np.empty(Y.shape[0])
    exact_reference_repulsion(Y, R, float(dof), out, z)
    return out, z


def bh_ref(Y, R, dof, theta, rep=None):
    rep = BarnesHutReferenceRepulsion(R, theta) if rep is None else rep
    out = np.full_like(Y, np.nan)  # every entry must be overwritten
    z = np.full(Y.shape[0], np.nan)
    rep(Y, dof, out, z)
    return out, z


def max_rel(a, b):
    """Largest per-entry relative error (0 where both are 0)."""
    scale = np.abs(b)
    diff = np.abs(a - b)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.max(np.where(diff == 0, 0.0, diff / scale)))


def normalised_error(out, z, out_ex, z_ex):
    """rel. error of the per-point normalised forces out / z, over rows with z_ex > 0."""
    ok = z_ex > 0
    assert ok.sum() >= 10  # the comparison must not be vacuous
    return rel(out[ok] / z[ok, None], out_ex[ok] / z_ex[ok, None])


def queries(R, n, rng):
    """New points: around the reference, on reference points, and outside its box."""
    d = R.shape[1]
    ext = R.max(axis=0) - R.min(axis=0)
    centre = R.mean(axis=0)
    around = centre + rng.normal(scale=R.std(), size=(n, d))
    on = R[rng.choice(R.shape[0], size=n // 4, replace=False)]
    signs = rng.choice([-1.0, 1.0], size=(n // 4, d))
    outside = centre + signs * ext * rng.uniform(0.6, 3.0, size=(n // 4, d))
    return np.ascontiguousarray(np.concatenate([around, on, outside]))


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dof", DOFS)
def test_reference_theta_zero_is_exact(d, dof, rng):
    R = embedding(700, d, seed=d)
    Y = queries(R, 200, rng)
    r_np, z_np = reference.reference_repulsion(Y, R, dof)
    r_ex, z_ex = exact_ref(Y, R, dof)
    r, z = bh_ref(Y, R, dof, 0.0)
    assert rel(r, r_np) <= 1e-10 and rel(r, r_ex) <= 1e-10
    assert max_rel(z, z_np) <= 1e-10 and max_rel(z, z_ex) <= 1e-10


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dof", DOFS)
@pytest.mark.parametrize("data", ["normal", "clusters"])
def test_reference_theta_half_is_accurate(d, dof, data, rng):
    if data == "normal":
        R = rng.normal(scale=25.0, size=(1500, d))
    else:
        R = embedding(1500, d, seed=3)
    Y = queries(R, 400, rng)
    r_ex, z_ex = exact_ref(Y, R, dof)
    r, z = bh_ref(Y, R, dof, 0.5)
    assert np.all(np.isfinite(r)) and np.all(np.isfinite(z))
    assert normalised_error(r, z, r_ex, z_ex) <= 4e-3
    assert max_rel(z, z_ex) <= 1e-2  # every point's own normaliser
    r_np, z_np = reference.reference_repulsion(Y, R, dof)
    assert normalised_error(r, z, r_np, z_np) <= 4e-3


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dof", DOFS)
def test_reference_far_and_coinciding_queries(d, dof, rng):
    # new points far outside the reference box (whole subtrees, up to the root, are
    # summarised) and exactly on reference points (distance 0, duplicates included);
    # with dof = 100 a purely geometric opening criterion was off by orders of magnitude here
    R = embedding(1200, d, seed=11)
    R[:40] = R[40:80]  # duplicate reference points
    ext = (R.max(axis=0) - R.min(axis=0)).max()
    direction = rng.normal(size=(60, d))
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    dist = np.repeat([1.0, 2.0, 5.0, 20.0, 100.0, 1000.0], 10)[:, None] * ext
    far = R.mean(axis=0) + direction * dist
    Y = np.ascontiguousarray(np.concatenate([far, R[:100]]))
    r_ex, z_ex = exact_ref(Y, R, dof)
    r, z = bh_ref(Y, R, dof, 0.5)
    assert np.all(np.isfinite(r)) and np.all(np.isfinite(z))
    assert max_rel(z, z_ex) <= 1e-2
    assert normalised_error(r, z, r_ex, z_ex) <= 5e-3
    # per far point too (their forces do not cancel, unlike those of points inside
    # the reference), so that they cannot hide behind the norm of the others
    ok = z_ex[:60] > 0
    f, f_ex = r[:60][ok] / z[:60][ok, None], r_ex[:60][ok] / z_ex[:60][ok, None]
    assert np.all(np.linalg.norm(f - f_ex, axis=1) <= 3e-2 * np.linalg.norm(f_ex, axis=1))


def test_reference_theta_half_summarises_and_error_grows_with_theta(rng):
    R = rng.normal(scale=25.0, size=(2000, 2))
    Y = queries(R, 400, rng)
    r_ex, _ = exact_ref(Y, R, 1.0)
    errors = [rel(bh_ref(Y, R, 1.0, theta)[0], r_ex) for theta in (0.25, 0.5, 1.0)]
    assert errors[0] > 1e-12
    assert errors[0] < errors[1] < errors[2]


def test_reference_tree_is_built_once_and_reused(rng, monkeypatch):
    R = embedding(2000, 2, seed=4)
    rep = BarnesHutReferenceRepulsion(R, 0.5)
    node_i = rep._tree._node_i

    def no_rebuild(Y):
        raise AssertionError("the reference tree was rebuilt")

    monkeypatch.setattr(rep._tree, "build", no_rebuild)
    Y1 = queries(R, 300, rng)
    Y2 = queries(R, 500, rng) + 3.0
    first = bh_ref(Y1, R, 1.0, 0.5, rep)
    second = bh_ref(Y2, R, 0.5, 0.5, rep)
    again = bh_ref(Y1, R, 1.0, 0.5, rep)
    assert rep._tree._node_i is node_i
    for (r, z), (Y, dof) in zip([first, second, again], [(Y1, 1.0), (Y2, 0.5), (Y1, 1.0)]):
        r_fresh, z_fresh = bh_ref(Y, R, dof, 0.5)
        assert np.array_equal(r, r_fresh) and np.array_equal(z, z_fresh)
    assert not np.array_equal(first[1][:10], second[1][:10])


def test_reference_is_copied(rng):
    # the tree keeps its own copy: changing the caller's array later changes nothing
    R = rng.normal(scale=10.0, size=(500, 2))
    Y = queries(R, 100, rng)
    rep = BarnesHutReferenceRepulsion(R, 0.5)
    expected = bh_ref(Y, R, 1.0, 0.5, rep)
    R += 100.0
    got = bh_ref(Y, R, 1.0, 0.5, rep)
    assert np.array_equal(expected[0], got[0]) and np.array_equal(expected[1], got[1])


@pytest.mark.parametrize("d", DIMS)
@pytest.mark.parametrize("dof", DOFS)
def test_reference_thread_count_does_not_change_result(d, dof, rng):
    R = embedding(3000, d, seed=5)
    Y = queries(R, 1500, rng)
    results = []
    for n_jobs in (1, 2):
        with thread_limit(n_jobs):
            results.append(bh_ref(Y, R, dof, 0.5))
    assert np.array_equal(results[0][0], results[1][0])
    assert np.array_equal(results[0][1], results[1][1])


@pytest.mark.parametrize("dof", DOFS)
def test_reference_tiny_and_degenerate(dof):
    kernel = lambda d2: (1.0 + d2 / dof) ** -dof  # noqa: E731
    # one reference point: w = kernel(1), force w^((dof+1)/dof) (y - r)
    r, z = bh_ref(np.array([[1.0, 0.0]]), np.zeros((1, 2)), dof, 0.5)
    w = kernel(1.0)
    np.testing.assert_allclose(z, [w], rtol=1e-12)
    np.testing.assert_allclose(r, [[w ** ((dof + 1) / dof), 0.0]], rtol=1e-12)
    # all reference points identical, queries on them and far away
    R = np.full((300, 3), 2.0)
    Y = np.array([[2.0, 2.0, 2.0], [2.0, 2.0, 5.0], [2.0, 2.0, 1e4]])
    r, z = bh_ref(Y, R, dof, 0.5)
    r_ex, z_ex = exact_ref(Y, R, dof)
    assert np.all(np.isfinite(r)) and np.all(np.isfinite(z))
    np.testing.assert_allclose(z, z_ex, rtol=1e-12)
    np.testing.assert_allclose(r, r_ex, rtol=1e-12, atol=0)
    assert z[0] == 300.0 and np.all(r[0] == 0.0)
    # no new points
    rep = BarnesHutReferenceRepulsion(R, 0.5)
    rep(np.empty((0, 3)), dof, np.empty((0, 3)), np.empty(0))


def test_reference_rejects_bad_input():
    R = np.zeros((10, 2))
    R[:, 0] = np.arange(10)
    rep = BarnesHutReferenceRepulsion(R, 0.5)
    Y = np.zeros((5, 2))
    Y[2, 0] = np.nan
    with pytest.raises(ValueError, match="new points contain NaN or inf"):
        rep(Y, 1.0, np.empty((5, 2)), np.empty(5))
    Y[2, 0] = np.inf
    with pytest.raises(ValueError, match="new points contain NaN or inf"):
        rep(Y, 1.0, np.empty((5, 2)), np.empty(5))
    with pytest.raises(ValueError, match="reference's 2 dimension"):
        rep(np.zeros((5, 3)), 1.0, np.empty((5, 3)), np.empty(5))
    with pytest.raises(ValueError, match="out must have shape"):
        rep(np.zeros((5, 2)), 1.0, np.empty((4, 2)), np.empty(5))
    with pytest.raises(ValueError, match="'dof' parameter"):
        rep(np.zeros((5, 2)), 0.0, np.empty((5, 2)), np.empty(5))
    bad = R.copy()
    bad[4, 1] = np.nan
    with pytest.raises(ValueError, match="reference embedding contains NaN or inf"):
        BarnesHutReferenceRepulsion(bad)
    with pytest.raises(ValueError, match="1, 2 or 3 dimensions"):
        BarnesHutReferenceRepulsion(np.zeros((10, 4)))
    with pytest.raises(ValueError, match="reference embedding is empty"):
        BarnesHutReferenceRepulsion(np.zeros((0, 2)))
    with pytest.raises(ValueError, match="'theta' parameter"):
        BarnesHutReferenceRepulsion(R, theta=-1.0)


def test_make_reference_repulsion_bh(rng):
    R = embedding(1500, 2, seed=8)
    rep = make_repulsion("bh", reference=R, theta=0.5)
    assert isinstance(rep, BarnesHutReferenceRepulsion) and rep.name == "bh" and rep.theta == 0.5
    Y = queries(R, 300, rng)
    r, z = bh_ref(Y, R, 1.0, 0.5, rep)
    r_np, z_np = reference.reference_repulsion(Y, R, 1.0)
    assert normalised_error(r, z, r_np, z_np) <= 4e-3
    assert max_rel(z, z_np) <= 1e-2
    assert isinstance(make_repulsion("bh", reference=R, theta=0.0), ExactReferenceRepulsion)
