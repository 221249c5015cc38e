"""Gradient kernels against the naive NumPy reference, finite differences and openTSNE."""
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import check_grad

import reference as ref
from turbotsne._config import thread_limit
from turbotsne.gradients import canonical_method, make_backend
from turbotsne.gradients.exact import ExactRepulsion


def random_P(n, seed=0, density=None):
    r = np.random.default_rng(seed)
    A = r.random((n, n))
    if density is not None:
        A *= r.random((n, n)) < density
    A = A + A.T
    np.fill_diagonal(A, 0.0)
    return A / A.sum()


@pytest.mark.parametrize("d", [1, 2, 3, 5])
@pytest.mark.parametrize("dof", [0.5, 1.0, 100.0])
def test_exact_repulsion_matches_reference(d, dof):
    Y = np.random.default_rng(d).normal(scale=3.0, size=(150, d))
    out = np.empty_like(Y)
    Z = ExactRepulsion()(Y, dof, out)
    r_ref, Z_ref = ref.repulsion(Y, dof)
    np.testing.assert_allclose(Z, Z_ref, rtol=1e-12)
    np.testing.assert_allclose(out, r_ref, rtol=1e-10, atol=1e-12 * np.abs(r_ref).max())


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("d", [1, 2, 3])
@pytest.mark.parametrize("dof", [0.5, 1.0, 7.0])
@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
def test_exact_gradient_and_kl_match_reference(dense, d, dof, exaggeration):
    n = 120
    Y = np.random.default_rng(1).normal(size=(n, d))
    P = random_P(n, density=None if dense else 0.1)
    Pm = P if dense else sp.csr_matrix(P)
    backend = make_backend("exact", Pm)
    out = np.empty_like(Y)
    kl = backend.gradient(Y, Pm, dof, exaggeration, out, True)
    g_ref = ref.gradient(Y, P, dof, exaggeration)
    np.testing.assert_allclose(out, g_ref, rtol=1e-9, atol=1e-12 * np.abs(g_ref).max())
    assert kl == pytest.approx(ref.kl_divergence(Y, P, dof), rel=1e-10)
    # iterations without KL take other code paths (no logs; a 2-D Cauchy fast path)
    out[:] = np.nan
    assert backend.gradient(Y, Pm, dof, exaggeration, out, False) is None
    np.testing.assert_allclose(out, g_ref, rtol=1e-9, atol=1e-12 * np.abs(g_ref).max())


@pytest.mark.parametrize("dense", [True, False])
@pytest.mark.parametrize("dof", [0.7, 1.0, 3.0])
def test_exact_gradient_is_a_quarter_of_the_finite_difference_gradient(dense, dof):
    n, d = 40, 2
    P = random_P(n, seed=3, density=None if dense else 0.3)
    Pm = P if dense else sp.csr_matrix(P)
    backend = make_backend("exact", Pm)

    def kl(flat):
        out = np.empty((n, d))
        return backend.gradient(flat.reshape(n, d), Pm, dof, 1.0, out, True)

    def grad(flat):
        out = np.empty((n, d))
        backend.gradient(flat.reshape(n, d), Pm, dof, 1.0, out, False)
        return 4.0 * out.ravel()

    y0 = np.random.default_rng(2).normal(size=n * d)
    err = check_grad(kl, grad, y0, epsilon=1e-7)
    assert err < 1e-5 * np.linalg.norm(grad(y0))


@pytest.mark.parametrize("dense", [True, False])
def test_exact_gradient_identical_across_thread_counts(dense):
    n = 300
    Y = np.random.default_rng(4).normal(size=(n, 2))
    P = random_P(n, density=None if dense else 0.05)
    Pm = P if dense else sp.csr_matrix(P)
    outs = []
    for threads in (1, 2):
        out = np.empty_like(Y)
        with thread_limit(threads):
            kl = make_backend("exact", Pm).gradient(Y, Pm, 1.0, 4.0, out, True)
        outs.append((out, kl))
    assert np.array_equal(outs[0][0], outs[1][0])
    assert outs[0][1] == outs[1][1]


@pytest.mark.parametrize("d", [1, 2, 3, 4])
@pytest.mark.parametrize("dof", [0.5, 1.0, 7.0])
@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
def test_single_precision_attraction_matches_reference(d, dof, exaggeration):
    """The approximate methods' float32 attraction against the dense float64 reference, on
    empty rows and rows of ~40-75 entries (odd and even lengths: the vector loop's
    remainders), and bit for bit the same under one and two threads."""
    from turbotsne.gradients.attractive import attractive_forces, attractive_forces_single

    n = 300
    rng = np.random.default_rng(d)
    Y = rng.normal(scale=5.0, size=(n, d))
    P = random_P(n, seed=d, density=0.1)
    P[rng.random(n) < 0.05] = 0.0  # some empty rows
    Pm = sp.csr_matrix(P)
    expected = ref.attraction(Y, Y, P, dof, exaggeration)
    outs = []
    for threads in (1, 2):
        out = np.full_like(Y, np.nan)
        with thread_limit(threads):
            attractive_forces_single(Pm.indptr, Pm.indices, Pm.data.astype(np.float32), Y,
                                     Y.astype(np.float32), dof, exaggeration, out)
        outs.append(out)
    assert np.array_equal(outs[0], outs[1])
    np.testing.assert_allclose(outs[0], expected, rtol=0, atol=2e-6 * np.abs(expected).max())
    assert not np.isnan(outs[0]).any()
    # the float64 kernel against the same reference, tightly
    out64 = np.empty_like(Y)
    attractive_forces(Pm.indptr, Pm.indices, Pm.data, Y, Y, dof, exaggeration, out64)
    np.testing.assert_allclose(out64, expected, rtol=1e-10, atol=1e-13 * np.abs(expected).max())


@pytest.mark.parametrize("dof", [0.5, 1.0])
def test_exact_gradient_matches_opentsne(dof):
    tsne = pytest.importorskip("openTSNE.tsne")
    n = 200
    Y = np.random.default_rng(5).normal(size=(n, 2))
    P = sp.csr_matrix(random_P(n, density=0.1))
    kl_o, g_o = tsne.kl_divergence_bh(Y.copy(), P, dof, dict(theta=0.0), should_eval_error=True)
    out = np.empty_like(Y)
    kl = make_backend("exact", P).gradient(Y, P, dof, 1.0, out, True)
    np.testing.assert_allclose(out, g_o, rtol=1e-8, atol=1e-12)
    assert kl == pytest.approx(kl_o, rel=1e-6)


def test_canonical_method_aliases_and_error():
    assert canonical_method("BH") == "bh"
    assert canonical_method("barneshut") == "bh"
    assert canonical_method("interpolation") == "fft"
    assert canonical_method("exact") == "exact"
    with pytest.raises(ValueError, match="'negative_gradient_method' parameter must be one of"):
        canonical_method("fast")


def test_dense_P_requires_exact():
    with pytest.raises(ValueError, match="dense P is only supported by the exact method"):
        make_backend("bh", random_P(10), theta=0.0)
