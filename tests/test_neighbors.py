"""Nearest-neighbour indexes against a brute-force NumPy/SciPy reference."""
import importlib.util
import os
import pickle
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist

from conftest import make_clusters
from turbotsne.neighbors.base import INDEXES
from turbotsne.neighbors import (
    AutoIndex, Exact, HNSW, KNNIndex, Precomputed, PyNNDescent, get_knn_index,
)

HAVE_ANNOY = importlib.util.find_spec("annoy") is not None
HAVE_HNSW = importlib.util.find_spec("hnswlib") is not None
HAVE_VOYAGER = importlib.util.find_spec("voyager") is not None
needs_annoy = pytest.mark.skipif(not HAVE_ANNOY, reason="annoy (extra 'ann') not installed")
needs_hnsw = pytest.mark.skipif(not HAVE_HNSW, reason="hnswlib (extra 'ann') not installed")
needs_voyager = pytest.mark.skipif(not HAVE_VOYAGER, reason="voyager not installed")

APPROX = [
    pytest.param("voyager", marks=needs_voyager),
    pytest.param("annoy", marks=needs_annoy),
    pytest.param("hnsw", marks=needs_hnsw),
    "pynndescent",
]


def reference_knn(Xq, Xr, k, metric, exclude_self, **kw):
    """cdist + stable argsort: the obviously correct answer."""
    D = cdist(Xq, Xr, metric, **kw)
    if exclude_self:
        np.fill_diagonal(D, np.inf)
    order = np.argsort(D, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(D, order, axis=1), D


def assert_same_knn(ind, dist, ref_dist, D_full, rtol=1e-9, atol=1e-12):
    """Distances equal the reference; each index really is at its reported distance.

    Indices themselves may differ where distances tie (duplicates), so they are
    checked through the full distance matrix instead of column by column.
    """
    assert ind.dtype == np.int64 and dist.dtype == np.float64
    np.testing.assert_allclose(dist, ref_dist, rtol=rtol, atol=atol)
    np.testing.assert_allclose(np.take_along_axis(D_full, ind, axis=1), dist, rtol=rtol, atol=atol)
    assert np.all(np.diff(dist, axis=1) >= 0)
    # no repeated neighbours in a row
    s = np.sort(ind, axis=1)
    assert not np.any(s[:, 1:] == s[:, :-1])


@pytest.fixture
def data_dups():
    """Clustered data with exact duplicate rows (and a triplicate)."""
    X, _ = make_clusters(n=300, n_features=6, seed=1)
    X[10] = X[3]
    X[11] = X[3]
    X[50] = X[40]
    return X


# --------------------------------------------------------------------------- #
# Exact
# --------------------------------------------------------------------------- #
@pytest.mark.parametrize("metric, kw", [
    ("euclidean", {}), ("sqeuclidean", {}), ("cosine", {}), ("correlation", {}),  # BLAS path
    ("cityblock", {}), ("chebyshev", {}), ("canberra", {}), ("braycurtis", {}),   # sklearn path
    ("minkowski", {"p": 3}), ("seuclidean", "V"),
])
def test_exact_matches_reference(data_dups, metric, kw):
    # braycurtis is a metric for non-negative data only (scipy and scikit-learn differ otherwise)
    X = np.abs(data_dups) if metric == "braycurtis" else data_dups
    if kw == "V":
        kw = {"V": X.var(axis=0) + 0.5}
    k = 12
    index = get_knn_index("exact", metric, kw or None, n_jobs=2, random_state=0)
    ind, dist = index.build(X, k)
    _, ref_dist, D = reference_knn(X, X, k, metric, True, **kw)
    np.fill_diagonal(D, np.inf)
    assert_same_knn(ind, dist, ref_dist, D)
    # self excluded by index, duplicates found at distance 0
    assert not np.any(ind == np.arange(len(X))[:, None])
    assert {10, 11} <= set(ind[3, :2]) and {3, 11} <= set(ind[10, :2])
    assert ind[40, 0] == 50 and ind[50, 0] == 40
    if metric in ("euclidean", "sqeuclidean", "cityblock", "chebyshev"):
        assert dist[3, 0] == 0.0 and dist[3, 1] == 0.0
    # query with new points
    Xn = X[:7] + 0.05
    qi, qd = index.query(Xn, k)
    _, ref_qd, Dq = reference_knn(Xn, X, k, metric, False, **kw)
    assert_same_knn(qi, qd, ref_qd, Dq)


def test_exact_pynndescent_only_metric(data_dups):
    """A metric only pynndescent knows goes through the numba brute-force kernel."""
    X = np.abs(data_dups) + 0.01
    index = Exact("hellinger", n_jobs=2)
    ind, dist = index.build(X, 5)
    assert index.path_ == "numba"
    from pynndescent.distances import hellinger

    D = np.array([[hellinger(a, b) for b in X] for a in X])
    np.fill_diagonal(D, np.inf)
    ref = np.sort(D, axis=1)[:, :5]
    np.testing.assert_allclose(dist, ref, rtol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(D, ind, axis=1), dist, rtol=1e-12)


def test_exact_callable_metric(data_dups):
    X = data_dups[:80]

    def l1(a, b):
        return np.abs(a - b).sum()

    ind, dist = Exact(l1).build(X, 4)
    _, ref_dist, D = reference_knn(X, X, 4, "cityblock", True)
    np.fill_diagonal(D, np.inf)
    assert_same_knn(ind, dist, ref_dist, D)


def test_exact_numba_callable_metric(data_dups):
    import numba

    @numba.njit
    def chebyshev(a, b):
        out = 0.0
        for i in range(a.shape[0]):
            out = max(out, abs(a[i] - b[i]))
        return out

    index = get_knn_index("exact", chebyshev, None, 2, 0)
    ind, dist = index.build(data_dups, 6)
    assert index.path_ == "numba"
    _, ref_dist, D = reference_knn(data_dups, data_dups, 6, "chebyshev", True)
    np.fill_diagonal(D, np.inf)
    assert_same_knn(ind, dist, ref_dist, D)
    assert get_knn_index("approx", chebyshev).choose(5000, False) == "pynndescent"


def test_exact_euclidean_no_cancellation():
    """Far from the origin, |x|^2 + |y|^2 - 2xy loses every digit; recomputation keeps them."""
    r = np.random.default_rng(3)
    X = 1e6 + r.normal(scale=1e-3, size=(200, 4))
    ind, dist = Exact("euclidean").build(X, 5)
    _, ref_dist, D = reference_knn(X, X, 5, "euclidean", True)
    np.fill_diagonal(D, np.inf)
    assert_same_knn(ind, dist, ref_dist, D, rtol=1e-6)


def test_exact_small_blocks_and_threads(data_dups, monkeypatch):
    """Many small blocks over 2 threads give the one-block, 1-thread answer."""
    import turbotsne.neighbors.brute as brute

    X = data_dups
    ind1, dist1 = Exact("euclidean", n_jobs=1).build(X, 9)
    monkeypatch.setattr(brute, "BLOCK_BYTES", 8 * 300 * 7)  # 7 rows per block
    ind2, dist2 = Exact("euclidean", n_jobs=2).build(X, 9)
    np.testing.assert_array_equal(ind1, ind2)
    np.testing.assert_array_equal(dist1, dist2)


def test_cosine_zero_rows_like_sklearn():
    from sklearn.metrics.pairwise import cosine_distances

    r = np.random.default_rng(0)
    X = r.normal(size=(40, 5))
    X[5] = 0.0
    ind, dist = Exact("cosine").build(X, 6)
    D = cosine_distances(X)
    np.fill_diagonal(D, np.inf)
    np.testing.assert_allclose(dist, np.sort(D, axis=1)[:, :6], atol=1e-12)
    np.testing.assert_allclose(dist[5], 1.0)


# --------------------------------------------------------------------------- #
# Sparse X
# --------------------------------------------------------------------------- #
def sparse_data(n=250, d=30, seed=0):
    r = np.random.default_rng(seed)
    X = r.random((n, d)) * (r.random((n, d)) < 0.3)
    X[7] = X[2]
    return X


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine", "manhattan"])
def test_sparse_exact_equals_dense(metric):
    X = sparse_data()
    k = 8
    di, dd = Exact(metric).build(X, k)
    idx = Exact(metric)
    si, sd = idx.build(sp.csr_matrix(X), k)
    np.testing.assert_allclose(sd, dd, atol=1e-12)
    _, _, D = reference_knn(X, X, k, "cityblock" if metric == "manhattan" else metric, True)
    np.testing.assert_allclose(np.take_along_axis(D, si, axis=1), sd, atol=1e-12)
    qi, qd = idx.query(sp.csr_matrix(X[:5] * 0.9), k)
    np.testing.assert_allclose(qd, _exact_query(X, X[:5] * 0.9, k, metric)[1], atol=1e-12)


@pytest.mark.skipif(not os.environ.get("TURBOTSNE_SLOW_TESTS"),
                    reason="compiles pynndescent's sparse kernels (~20 s); set TURBOTSNE_SLOW_TESTS=1")
def test_sparse_pynndescent_equals_dense():
    X = sparse_data(n=600, d=30)
    k = 8
    ref_ind, ref_dist = Exact("euclidean").build(X, k)
    index = PyNNDescent("euclidean", n_jobs=2, random_state=0)
    ind, dist = index.build(sp.csr_matrix(X), k)
    assert recall(ind, ref_ind) >= 0.95
    _, _, D = reference_knn(X, X, k, "euclidean", True)
    np.testing.assert_allclose(np.take_along_axis(D, ind, axis=1), dist, atol=1e-12)
    Xn = sp.csr_matrix(X[:100] * 0.9)
    qi, qd = index.query(Xn, k)
    assert recall(qi, _exact_query(X, X[:100] * 0.9, k, "euclidean")[0]) >= 0.95
    clone = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(clone.query(Xn, k)[0], qi)


def test_sparse_unsupported_metric_message():
    X = sp.csr_matrix(sparse_data())
    with pytest.raises(ValueError, match="does not support metric='correlation' on sparse input.*pynndescent"):
        Exact("correlation").build(X, 5)


# --------------------------------------------------------------------------- #
# Approximate indexes: recall, pickling, transforms of the metric
# --------------------------------------------------------------------------- #
@pytest.fixture(scope="module")
def clustered():
    X, _ = make_clusters(n=2000, n_features=20, n_clusters=8, seed=2, spread=1.0)
    return X


def _exact_query(X, Xn, k, metric):
    index = Exact(metric)
    index.build(X, k)
    return index.query(Xn, k)


def recall(ind, ref):
    return np.mean([len(np.intersect1d(a, b)) / len(b) for a, b in zip(ind, ref)])


@pytest.mark.parametrize("method", APPROX)
@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_approx_recall_and_pickle(clustered, method, metric):
    X = clustered
    k = 15
    index = get_knn_index(method, metric, None, n_jobs=2, random_state=0)
    ind, dist = index.build(X, k)
    ref_ind, ref_dist = Exact(metric).build(X, k)
    assert ind.shape == (len(X), k) and ind.dtype == np.int64 and dist.dtype == np.float64
    assert recall(ind, ref_ind) >= 0.95
    assert not np.any(ind == np.arange(len(X))[:, None])
    assert np.all(np.diff(dist, axis=1) >= 0)
    # distances are the metric's (refined in float64), not squared or angular
    D = cdist(X, X, metric)
    np.testing.assert_allclose(np.take_along_axis(D, ind, axis=1), dist, rtol=1e-9, atol=1e-12)

    Xn = X[:50] + 0.01
    qi, qd = index.query(Xn, k)
    assert recall(qi, _exact_query(X, Xn, k, metric)[0]) >= 0.95
    clone = pickle.loads(pickle.dumps(index))
    qi2, qd2 = clone.query(Xn, k)
    np.testing.assert_array_equal(qi, qi2)
    np.testing.assert_array_equal(qd, qd2)


@pytest.mark.parametrize("method", [pytest.param("voyager", marks=needs_voyager),
                                    pytest.param("annoy", marks=needs_annoy),
                                    pytest.param("hnsw", marks=needs_hnsw)])
@pytest.mark.parametrize("metric", ["sqeuclidean", "correlation"])
def test_ann_metric_transforms(data_dups, method, metric):
    X = data_dups
    ind, dist = get_knn_index(method, metric, None, 1, 0).build(X, 10)
    ref_ind, ref_dist = Exact(metric).build(X, 10)
    assert recall(ind, ref_ind) >= 0.95
    np.testing.assert_allclose(dist[:, 0], ref_dist[:, 0], atol=1e-9)
    # duplicates still find each other, self excluded by index
    assert {10, 11} <= set(ind[3, :2]) and not np.any(ind == np.arange(len(X))[:, None])


@pytest.mark.parametrize("method", APPROX)
@pytest.mark.parametrize("metric", ["euclidean", "correlation"])
def test_approx_chunked_search_equals_one_chunk(data_dups, method, metric, monkeypatch):
    """Searching, dropping self and refining in chunks of rows (chunk 37: uneven, self at
    offset ids) gives the same neighbours as one chunk; the chunks write into one output."""
    X = data_dups
    Xn = X[:90] + 0.01
    whole = get_knn_index(method, metric, None, n_jobs=1, random_state=0)  # hnswlib builds
    # its graph identically only on one thread
    wi, wd = whole.build(X, 12)
    qi, qd = whole.query(Xn, 12)
    monkeypatch.setattr(type(whole), "CHUNK", 37)
    chunked = get_knn_index(method, metric, None, n_jobs=1, random_state=0)
    ci, cd = chunked.build(X, 12)
    np.testing.assert_array_equal(ci, wi)
    np.testing.assert_array_equal(cd, wd)
    assert not np.any(ci == np.arange(len(X))[:, None])
    np.testing.assert_allclose(np.take_along_axis(cdist(X, X, metric), ci, axis=1), cd, rtol=1e-9, atol=1e-12)
    ci, cd = chunked.query(Xn, 12)
    np.testing.assert_array_equal(ci, qi)
    np.testing.assert_array_equal(cd, qd)


def test_pickle_exact_and_precomputed(data_dups):
    X = data_dups
    for index, data, new in [(Exact("euclidean"), X, X[:5] + 0.1),
                             (Exact("chebyshev"), X, X[:5] + 0.1),
                             (Precomputed(), cdist(X, X), cdist(X[:5] + 0.1, X))]:
        index.build(data, 6)
        clone = pickle.loads(pickle.dumps(index))
        for a, b in zip(index.query(new, 6), clone.query(new, 6)):
            np.testing.assert_array_equal(a, b)


# --------------------------------------------------------------------------- #
# Precomputed distances
# --------------------------------------------------------------------------- #
def test_precomputed_dense_and_sparse_match_raw(data_dups):
    X = data_dups
    k = 10
    raw_ind, raw_dist = Exact("euclidean").build(X, k)
    D = cdist(X, X)
    index = get_knn_index("auto", "precomputed")
    assert isinstance(index, Precomputed)
    p_ind, p_dist = index.build(D, k)
    np.testing.assert_allclose(p_dist, raw_dist, atol=1e-12)
    np.fill_diagonal(D, np.inf)
    np.testing.assert_allclose(np.take_along_axis(D, p_ind, axis=1), raw_dist, atol=1e-12)
    # rows without ties at the k-th distance have identical neighbour sets
    no_tie = np.sort(D, axis=1)[:, k] > raw_dist[:, -1] + 1e-9
    np.testing.assert_array_equal(np.sort(p_ind[no_tie], 1), np.sort(raw_ind[no_tie], 1))
    np.fill_diagonal(D, 0.0)

    # a kNN graph with more than k neighbours stored per row, self included, unsorted
    big_ind, big_dist = Exact("euclidean").build(X, k + 5)
    n = len(X)
    rows = np.repeat(np.arange(n), k + 6)
    cols = np.column_stack([np.arange(n), big_ind[:, ::-1]]).ravel()
    vals = np.column_stack([np.zeros(n), big_dist[:, ::-1]]).ravel()
    G = sp.csr_matrix((vals, (rows, cols)), shape=(n, n))
    G.data[G.data == 0] = 0.0  # keep explicit zeros (duplicates) stored
    s_ind, s_dist = get_knn_index("exact", "precomputed").build(G, k)
    np.testing.assert_allclose(s_dist, raw_dist, atol=1e-12)
    np.testing.assert_allclose(np.take_along_axis(D, s_ind, axis=1), raw_dist, atol=1e-12)

    # queries: distances from new points to the reference
    Xn = X[:4] + 0.2
    q_ind, q_dist = index.query(cdist(Xn, X), k)
    np.testing.assert_allclose(q_dist, _exact_query(X, Xn, k, "euclidean")[1], atol=1e-12)
    q_ind2, q_dist2 = index.query(sp.csr_matrix(cdist(Xn, X)), k)
    np.testing.assert_array_equal(q_ind2, q_ind)


def test_precomputed_validation():
    D = cdist(np.arange(6.0)[:, None], np.arange(6.0)[:, None])
    with pytest.raises(ValueError, match="square"):
        Precomputed().build(D[:, :5], 2)
    with pytest.raises(ValueError, match="non-negative"):
        Precomputed().build(-D, 2)
    bad = D + np.eye(6)
    with pytest.raises(ValueError, match="zero diagonal"):
        Precomputed().build(bad, 2)
    G = sp.csr_matrix(np.where(D <= 1, D, 0.0))  # rows 0 and 5 store a single neighbour
    with pytest.raises(ValueError, match="Row 0 of the precomputed sparse distance graph stores 1 neighbours"):
        Precomputed().build(G, 2)
    index = Precomputed()
    index.build(D, 2)
    with pytest.raises(ValueError, match="distances to the 6 reference points"):
        index.query(D[:, :4], 2)


# --------------------------------------------------------------------------- #
# Choice of index, parameters, errors
# --------------------------------------------------------------------------- #
def test_auto_and_approx_choice(data_dups):
    auto = get_knn_index("auto", "euclidean")
    assert isinstance(auto, AutoIndex)
    assert auto.choose(999, False) == "exact"
    assert auto.choose(5000, True) == "pynndescent"
    approx = get_knn_index("approx", "euclidean")
    dense_choice = approx.choose(500, False)
    assert dense_choice == "voyager"
    assert get_knn_index("approx", "hellinger").choose(5000, False) == "pynndescent"
    assert get_knn_index("approx", "chebyshev").choose(5000, False) == "pynndescent"

    def pyfunc(a, b):
        return np.abs(a - b).max()

    assert get_knn_index("approx", pyfunc).choose(5000, False) == "exact"
    ind, _ = auto.build(data_dups, 5)
    assert isinstance(auto.index_, Exact) and ind.shape == (300, 5)
    q = auto.query(data_dups[:3], 5)
    assert q[0].shape == (3, 5)
    clone = pickle.loads(pickle.dumps(auto))
    np.testing.assert_array_equal(clone.query(data_dups[:3], 5)[0], q[0])
    if HAVE_VOYAGER:
        approx.build(data_dups, 5)
        assert isinstance(approx.index_, INDEXES[dense_choice])
        clone = pickle.loads(pickle.dumps(approx))
        np.testing.assert_array_equal(clone.query(data_dups[:3], 5)[0], approx.query(data_dups[:3], 5)[0])


@pytest.mark.parametrize("method, metric, match", [
    pytest.param("annoy", "chebyshev", "'annoy' nearest-neighbour index does not support metric='chebyshev'.*"
                                       "neighbors='exact'", marks=needs_annoy),
    pytest.param("hnsw", "hellinger", "'hnsw'.*does not support metric='hellinger'.*pynndescent", marks=needs_hnsw),
])
def test_unsupported_metric_errors_optional_indexes(method, metric, match):
    with pytest.raises(ValueError, match=match):
        get_knn_index(method, metric)


def test_unsupported_metric_errors():
    with pytest.raises(ValueError, match="'exact'.*does not support metric='nonsense'"):
        get_knn_index("exact", "nonsense")
    with pytest.raises(ValueError, match="The 'neighbors' parameter must be a KNNIndex or one of"):
        get_knn_index("kdtree", "euclidean")
    if HAVE_HNSW:
        with pytest.raises(ValueError, match="does not support metric='euclidean' on sparse input"):
            HNSW("euclidean").build(sp.csr_matrix(np.eye(5)), 2)


def test_k_and_fit_errors(data_dups):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(ValueError, match="only 299 other points are available"):
        Exact().build(data_dups, 300)
    with pytest.raises(ValueError, match="positive integer"):
        Exact().build(data_dups, 0)
    with pytest.raises(NotFittedError, match="not built yet"):
        Exact().query(data_dups, 3)
    index = Exact()
    index.build(data_dups, 3)
    with pytest.raises(ValueError, match="X_new has 2 features, but the index was built on 6"):
        index.query(data_dups[:, :2], 3)
    X = data_dups.copy()
    X[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        Exact().build(X, 3)


@pytest.mark.parametrize("module, method", [("annoy", "annoy"), ("hnswlib", "hnsw")])
def test_missing_optional_package_names_the_extra(monkeypatch, module, method):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    import turbotsne.neighbors.base as base

    monkeypatch.setattr(base, "installed", lambda name: name != module)
    with pytest.raises(ImportError, match=r"pip install 'turbotsne\[ann\]'"):
        get_knn_index(method, "euclidean")
    index = base.INDEXES[method]("euclidean")
    with pytest.raises(ImportError, match=r"pip install 'turbotsne\[ann\]'"):
        index.build(np.eye(5), 2)
    # "approx" quietly moves on to an installed index
    assert get_knn_index("approx", "euclidean").choose(5000, False) != method


def test_registered_indexes_are_the_neighbors_methods():
    """Every index registered by name is a value of ``neighbors`` and vice versa; "approx"
    only prefers registered indexes."""
    import turbotsne.neighbors as nb

    assert set(nb.NEIGHBORS_METHODS) == {"auto", "approx"} | set(nb.INDEXES)
    assert set(nb.APPROX_ORDER) <= set(nb.INDEXES) - {"exact"}
    assert all(issubclass(c, nb.ApproximateIndex) and c.requires for n, c in nb.INDEXES.items() if n != "exact")


def test_instance_passes_through_and_params_stored():
    index = PyNNDescent("cosine", None, n_jobs=-1, random_state=3)
    assert get_knn_index(index) is index
    assert isinstance(index, KNNIndex)
    made = get_knn_index("exact", "cosine", {"a": 1}, -1, 7)
    assert (made.metric, made.metric_params, made.n_jobs, made.random_state) == ("cosine", {"a": 1}, -1, 7)


@pytest.mark.parametrize("method", [pytest.param("voyager", marks=needs_voyager),
                                    pytest.param("annoy", marks=needs_annoy),
                                    pytest.param("hnsw", marks=needs_hnsw)])
def test_random_state_reproducible(clustered, method):
    X = clustered[:800]
    a = get_knn_index(method, "euclidean", None, 1, 5).build(X, 10)
    b = get_knn_index(method, "euclidean", None, 1, 5).build(X, 10)
    np.testing.assert_array_equal(a[0], b[0])


@pytest.mark.parametrize("method", APPROX)
def test_approx_compact_outputs_from_threshold(data_dups, method, monkeypatch):
    """From COMPACT_KNN_FROM_ENTRIES kNN entries on the approximate indexes return int32 indices
    and float32 distances (the same neighbours, distances rounded), each the front of a buffer of
    2 n k entries (room for the symmetric P); below it int64 / float64."""
    import turbotsne.neighbors.base as base

    X = data_dups
    full_i, full_d = get_knn_index(method, "euclidean", None, n_jobs=1, random_state=0).build(X, 12)
    assert full_i.dtype == np.int64 and full_d.dtype == np.float64
    monkeypatch.setattr(base, "COMPACT_KNN_FROM_ENTRIES", X.shape[0] * 12)
    ci, cd = get_knn_index(method, "euclidean", None, n_jobs=1, random_state=0).build(X, 12)
    assert ci.dtype == np.int32 and cd.dtype == np.float32
    assert ci.base.size == cd.base.size == 2 * ci.size
    assert ci.ctypes.data == ci.base.ctypes.data and cd.ctypes.data == cd.base.ctypes.data  # the fronts
    np.testing.assert_array_equal(np.sort(ci, axis=1), np.sort(full_i, axis=1))
    np.testing.assert_allclose(cd, full_d, rtol=1e-6)


def test_neighbours_an_index_could_not_find_are_searched_exactly():
    # pynndescent marks neighbours it could not find with -1 (distance inf); such an entry must never
    # reach P (after the distance refinement -1 would silently mean "the last point")
    from turbotsne.neighbors.approximate import ApproximateIndex

    class Holey(ApproximateIndex):
        name = "holey"

        def build(self, X, k):
            self._ref = X = np.asarray(X, dtype=np.float64)
            self.n_samples_fit_, self.n_features_in_ = X.shape
            full_i, full_d = Exact().fit(X).query(X, k + 1)  # self included, as libraries return it

            def search(s, e):
                ind, dist = full_i[s:e].copy(), full_d[s:e].copy()
                ind[::7, -3:] = -1
                dist[::7, -3:] = np.inf
                return ind, dist

            return self._chunked(search, X, k, exclude_self=True)

        def query(self, X_new, k):
            raise NotImplementedError

    X = np.random.default_rng(4).normal(size=(200, 5))
    ind, dist = Holey().build(X, 12)
    ref_i, ref_d = Exact().build(X, 12)
    assert ind.min() >= 0
    np.testing.assert_array_equal(ind, ref_i)
    np.testing.assert_allclose(dist, ref_d, rtol=1e-12)
