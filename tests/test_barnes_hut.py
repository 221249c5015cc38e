"""Barnes-Hut repulsion against the exact kernel and the naive NumPy references."""
import numpy as np
import pytest
import scipy.sparse as sp

import reference
from conftest import make_clusters
from turbotsne._config import thread_limit
from turbotsne.gradients import make_backend, make_repulsion
from turbotsne.gradients.barnes_hut import BarnesHutRepulsion
from turbotsne.gradients.exact import exact_repulsion

DIMS = (1, 2, 3)
DOFS = (0.5, 1.0, 100.0)


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
    assert rel(r, r_ex) <= 5e-2
    assert abs(Z - Z_ex) <= 1e-2 * Z_ex
    assert rel(r / Z, r_ex / Z_ex) <= 5e-2


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
    assert rel(r, r_ex) <= 5e-2
    assert abs(Z - Z_ex) <= 1e-2 * Z_ex
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
        assert rel(out, r_ex) <= 5e-2
        assert abs(Z - Z_ex) <= 1e-2 * Z_ex


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
    assert rel(out, expected) <= 5e-2


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
    assert abs(Z - Z_ex) / Z_ex < 1e-2
    assert np.linalg.norm(out - exact) / np.linalg.norm(exact) < 5e-2
