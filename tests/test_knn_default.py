"""The default neighbour index (voyager): exact distances, the "auto" / "approx" rule, and
bit-identical neighbours and embeddings for a fixed random_state in new processes and for any
n_jobs."""
import json
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.spatial.distance import cdist

from conftest import make_clusters
from turbotsne.neighbors import AUTO_EXACT_MAX_N, Exact, Voyager, get_knn_index

pytest.importorskip("voyager")  # a core dependency; absent only from a partial install

SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture(scope="module")
def clustered():
    X, _ = make_clusters(n=3000, n_features=30, n_clusters=10, seed=3, spread=1.0)
    return X


def recall(ind, ref):
    return np.mean([len(np.intersect1d(a, b)) / len(b) for a, b in zip(ind, ref)])


@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean", "cosine", "correlation"])
def test_voyager_against_brute_force(clustered, metric):
    X = clustered
    k = 30
    ind, dist = Voyager(metric, n_jobs=2, random_state=0).build(X, k)
    ref_ind, ref_dist = Exact(metric).build(X, k)
    assert ind.shape == (len(X), k) and ind.dtype == np.int64 and dist.dtype == np.float64
    assert recall(ind, ref_ind) >= 0.99
    assert not np.any(ind == np.arange(len(X))[:, None])
    # the metric's own distances, recomputed exactly, sorted by (distance, index)
    D = cdist(X, X, metric)
    np.testing.assert_allclose(dist, np.take_along_axis(D, ind, axis=1), rtol=1e-10, atol=1e-12)
    assert np.all((np.diff(dist, axis=1) > 0) | ((np.diff(dist, axis=1) == 0) & (np.diff(ind, axis=1) > 0)))


def test_voyager_query_and_pickle(clustered):
    X = clustered
    index = Voyager("euclidean", n_jobs=2, random_state=0)
    index.build(X, 15)
    Xn = X[:200] + 0.05
    qi, qd = index.query(Xn, 15)
    ref_i, ref_d = Exact().fit(X).query(Xn, 15)
    assert recall(qi, ref_i) >= 0.99
    np.testing.assert_allclose(qd, np.take_along_axis(cdist(Xn, X), qi, axis=1), rtol=1e-10)
    clone = pickle.loads(pickle.dumps(index))
    ci, cd = clone.query(Xn, 15)
    np.testing.assert_array_equal(ci, qi)
    np.testing.assert_array_equal(cd, qd)
    with pytest.raises(ValueError, match="X_new has 3 features, but the index was built on 30"):
        index.query(Xn[:, :3], 5)


def test_voyager_memory_order_does_not_matter(clustered):
    """Fortran-ordered and strided input give the neighbours of the C-ordered array (voyager
    itself reads the rows of an array as if it were C-ordered)."""
    X = clustered[:1500]
    index = Voyager(n_jobs=2, random_state=0)
    ind, dist = index.build(X, 15)
    Xn = X[:100] + 0.05
    qi, qd = index.query(Xn, 15)
    assert recall(ind, Exact().build(X, 15)[0]) >= 0.99
    wide = np.repeat(X, 2, axis=1)
    for other in (np.asfortranarray(X), wide[:, ::2]):
        index = Voyager(n_jobs=2, random_state=0)
        oi, od = index.build(other, 15)
        np.testing.assert_array_equal(oi, ind)
        np.testing.assert_array_equal(od, dist)
        np.testing.assert_array_equal(index.query(np.asfortranarray(Xn), 15)[0], qi)


def test_voyager_compact_outputs(clustered, monkeypatch):
    """From COMPACT_KNN_FROM_ENTRIES entries on: int32 / float32 at the fronts of buffers of 2 n k."""
    import turbotsne.neighbors.base as base

    X = clustered[:1000]
    full_i, full_d = Voyager(random_state=0).build(X, 12)
    monkeypatch.setattr(base, "COMPACT_KNN_FROM_ENTRIES", X.shape[0] * 12)
    ci, cd = Voyager(random_state=0).build(X, 12)
    assert ci.dtype == np.int32 and cd.dtype == np.float32
    assert ci.base.size == cd.base.size == 2 * ci.size
    assert ci.ctypes.data == ci.base.ctypes.data and cd.ctypes.data == cd.base.ctypes.data
    np.testing.assert_array_equal(ci, full_i)
    np.testing.assert_array_equal(cd, full_d.astype(np.float32))


def test_voyager_same_for_every_n_jobs_and_seeded(clustered):
    X = clustered
    runs = [Voyager(n_jobs=j, random_state=7).build(X, 20) for j in (1, 2, -1)]
    for ind, dist in runs[1:]:
        np.testing.assert_array_equal(ind, runs[0][0])
        np.testing.assert_array_equal(dist, runs[0][1])
    # the graph itself is a function of the seed: equal for equal seeds, different for another

    def graph(random_state):
        index = Voyager(n_jobs=2, random_state=random_state)
        index.build(X, 20)
        return index.__getstate__()["_index_bytes"]

    assert graph(7) == graph(7) != graph(8)


def test_voyager_metric_errors():
    with pytest.raises(ValueError, match="'voyager' nearest-neighbour index does not support "
                                         "metric='manhattan'.*neighbors='exact'.*Metrics 'voyager' "
                                         "supports on dense input: correlation, cosine, euclidean"):
        get_knn_index("voyager", "manhattan")
    with pytest.raises(ValueError, match="does not support metric='euclidean' on sparse input.*'exact'"):
        Voyager().build(sp.csr_matrix(np.eye(5)), 2)
    with pytest.raises(ValueError, match="The 'voyager' index takes no metric_params"):
        Voyager("euclidean", {"p": 2}).build(np.eye(5), 2)


def test_voyager_many_duplicates():
    """Groups of identical rows larger than M (12): every row still finds its copies first, by
    index, then the exact nearest other groups (a plain graph would isolate each group)."""
    X = np.repeat(np.random.default_rng(1).normal(size=(30, 4)), 20, axis=0)
    X = X[np.random.default_rng(2).permutation(len(X))]
    ind, dist = Voyager(n_jobs=2, random_state=0).build(X, 25)
    ref_ind, ref_dist = Exact().build(X, 25)
    np.testing.assert_allclose(dist, ref_dist, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(dist, np.take_along_axis(cdist(X, X), ind, axis=1), rtol=1e-12, atol=1e-12)
    copies = [np.flatnonzero((X == X[i]).all(axis=1)) for i in range(len(X))]
    for i in range(len(X)):
        np.testing.assert_array_equal(ind[i, :19], copies[i][copies[i] != i])
    assert not np.any(ind == np.arange(len(X))[:, None])
    index = Voyager(random_state=0)
    index.build(X, 25)
    Xn = X[:40] + 1e-3
    qi, qd = index.query(Xn, 30)
    np.testing.assert_allclose(qd, Exact().fit(X).query(Xn, 30)[1], rtol=1e-12)
    clone = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(clone.query(Xn, 30)[0], qi)
    ind, dist = Voyager(random_state=0).build(np.zeros((50, 3)), 10)
    np.testing.assert_array_equal(dist, 0.0)
    np.testing.assert_array_equal(ind[0], np.arange(1, 11))


def test_auto_and_approx_use_voyager_for_dense_input(monkeypatch):
    # the default install: hnswlib and annoy (the ann extra) absent
    from turbotsne.neighbors import HNSW, Annoy

    for cls in (HNSW, Annoy):
        monkeypatch.setattr(cls, "available", classmethod(lambda cls: False))
    auto = get_knn_index("auto", "euclidean")
    assert auto.choose(AUTO_EXACT_MAX_N - 1, False) == "exact"
    for metric in ("euclidean", "sqeuclidean", "l2", "cosine", "correlation"):
        assert get_knn_index("auto", metric).choose(5000, False) == "voyager"
        assert get_knn_index("approx", metric).choose(500, False) == "voyager"
    # sparse input and metrics voyager lacks: pynndescent
    assert auto.choose(5000, True) == "pynndescent"
    assert get_knn_index("approx", "manhattan").choose(5000, False) == "pynndescent"
    assert get_knn_index("approx", "euclidean", {"p": 2}).choose(5000, False) == "pynndescent"
    X, _ = make_clusters(n=1200, n_features=8, seed=4)
    auto.build(X, 10)
    assert isinstance(auto.index_, Voyager)


# --------------------------------------------------------------------------- #
# Acceptance: the default path, new processes
# --------------------------------------------------------------------------- #
FIT = """
import hashlib, json, sys
import numpy as np
from turbotsne import TSNE
r = np.random.default_rng(0)
centers = r.normal(scale=5.0, size=(12, 50))
X = centers[r.integers(0, 12, size=3000)] + r.normal(size=(3000, 50))
tsne = TSNE(random_state=0, n_jobs=int(sys.argv[1])).fit(X)
index = tsne.tsne_embedding_.affinities.knn_index
print(json.dumps(dict(index=type(getattr(index, "index_", index)).__name__,
                      digest=hashlib.sha1(np.ascontiguousarray(tsne.embedding_).tobytes()).hexdigest())))
"""


def _fit_in_new_process(n_jobs):
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", FIT, str(n_jobs)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_default_fit_identical_in_new_processes_and_for_every_n_jobs():
    """TSNE(random_state=0) on 3,000 points through the default index (voyager, whatever else is
    installed): the same embedding, bit for bit, in two new processes with n_jobs=2, and with n_jobs=1 and -1."""
    first = _fit_in_new_process(2)
    assert first["index"] == "Voyager"
    assert _fit_in_new_process(2) == first
    assert _fit_in_new_process(1) == first
    assert _fit_in_new_process(-1) == first


def test_voyager_stays_the_default_where_the_ann_extra_is_installed():
    """Installing hnswlib / annoy does not change what "auto" picks for voyager's metrics (so the
    embedding stays reproducible); they serve the metrics voyager lacks."""
    from turbotsne.neighbors import Annoy

    for metric in ("euclidean", "cosine"):
        assert get_knn_index("auto", metric).choose(5000, False) == "voyager"
        assert get_knn_index("approx", metric).choose(5000, False) == "voyager"
    manhattan = get_knn_index("approx", "manhattan").choose(5000, False)
    assert manhattan == ("annoy" if Annoy.available() else "pynndescent")
