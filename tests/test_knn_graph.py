"""The search of voyager's bottom layer for the graph's own points (neighbors/graph.py): the
beam-search kernel against brute force, short rows, independence of the blocks and of which
points are searched together, the reading of voyager's index and its fallbacks."""
import numpy as np
import pytest
from scipy.spatial.distance import cdist

from conftest import make_clusters
from turbotsne.neighbors import Exact, Voyager
from turbotsne.neighbors import approximate
from turbotsne.neighbors.graph import Level0Graph
from turbotsne.neighbors.kernels import graph_search_rows

pytest.importorskip("voyager")


def complete_links(n):
    """Every point linked to every other point."""
    links = np.array([np.delete(np.arange(n), i) for i in range(n)], dtype=np.int64)
    return np.full(n, n - 1, dtype=np.int32), links


def sq32(X):
    X = X.astype(np.float32)
    return ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)


def test_graph_search_on_a_complete_graph_is_exact():
    X = np.random.default_rng(0).normal(size=(120, 7))
    count, links = complete_links(len(X))
    graph = Level0Graph(X.astype(np.float32), count, links)
    ind, dist = graph.search(np.arange(len(X)), 12, 12, n_jobs=2)
    D = sq32(X)
    ref = np.argsort(D, axis=1, kind="stable")[:, :12]
    np.testing.assert_array_equal(ind[:, 0], np.arange(len(X)))  # the point itself first, at 0
    np.testing.assert_array_equal(np.sort(ind, axis=1), np.sort(ref, axis=1))
    np.testing.assert_allclose(dist, np.take_along_axis(D, ind, axis=1), rtol=1e-5, atol=1e-6)
    assert np.all(np.diff(dist, axis=1) >= 0)


def test_graph_search_marks_rows_that_reach_too_few_points():
    """Two components of 10 points: a search for 15 finds the 10 of its own component, then
    -1 / inf."""
    X = np.random.default_rng(1).normal(size=(20, 3)).astype(np.float32)
    links = np.zeros((20, 9), dtype=np.int64)
    for part in (np.arange(10), np.arange(10, 20)):
        for i in part:
            links[i] = part[part != i]
    graph = Level0Graph(X, np.full(20, 9, dtype=np.int32), links)
    ind, dist = graph.search(np.arange(20), 15, 20)
    for i in range(20):
        own = np.arange(10) if i < 10 else np.arange(10, 20)
        np.testing.assert_array_equal(np.sort(ind[i, :10]), own)
        np.testing.assert_array_equal(ind[i, 10:], -1)
        assert np.all(np.isinf(dist[i, 10:])) and np.all(np.isfinite(dist[i, :10]))


def test_graph_search_does_not_depend_on_blocks_or_companions():
    X, _ = make_clusters(n=800, n_features=10, n_clusters=5, seed=2)
    index = Voyager(random_state=0)
    index.build(X, 10)
    graph = Level0Graph.from_voyager(index._index, np.ascontiguousarray(X, dtype=np.float32), index.M)
    assert graph is not None
    every_i, every_d = graph.search(np.arange(len(X)), 11, 41, n_jobs=1)
    for n_jobs in (2, 3):
        i2, d2 = graph.search(np.arange(len(X)), 11, 41, n_jobs=n_jobs)
        np.testing.assert_array_equal(i2, every_i)
        np.testing.assert_array_equal(d2, every_d)
    some = np.random.default_rng(3).choice(len(X), 50, replace=False)
    si, sd = graph.search(some, 11, 41, n_jobs=2)
    np.testing.assert_array_equal(si, every_i[some])
    np.testing.assert_array_equal(sd, every_d[some])
    # the kernel on its own, any block count, queries in any order
    queries = np.ascontiguousarray(graph.rank[some][::-1], dtype=np.int32)
    results = []
    for blocks in (1, 4, 50):
        out_i = np.empty((50, 11), dtype=np.int32)
        out_d = np.empty((50, 11), dtype=np.float32)
        n = graph.n
        for b in range(blocks):
            graph_search_rows(graph.X, graph.count, graph.links, queries, 41, out_i, out_d,
                              50 * b // blocks, 50 * (b + 1) // blocks, np.zeros(n, dtype=np.int32),
                              np.empty(n, dtype=np.float32), np.empty(n, dtype=np.int32),
                              np.empty(42, dtype=np.float32), np.empty(42, dtype=np.int32))
        results.append(graph.order[out_i])
    for r in results[1:]:
        np.testing.assert_array_equal(r, results[0])
    np.testing.assert_array_equal(results[0], every_i[some][::-1])


def test_level0_graph_reads_voyager_and_is_exact_at_full_breadth():
    X, _ = make_clusters(n=400, n_features=8, n_clusters=4, seed=4)
    Xt = np.ascontiguousarray(X, dtype=np.float32)
    index = Voyager(random_state=0)
    index.build(X, 10)
    graph = Level0Graph.from_voyager(index._index, Xt, index.M)
    assert graph is not None
    assert np.all(graph.count >= 1) and np.all(graph.count <= 2 * index.M)
    np.testing.assert_array_equal(np.sort(graph.order), np.arange(len(X)))
    np.testing.assert_array_equal(graph.X, Xt[graph.order])
    ind, dist = graph.search(np.arange(len(X)), 11, len(X))  # breadth n: everything reachable
    ref = np.argsort(sq32(X), axis=1, kind="stable")[:, :11]
    np.testing.assert_array_equal(np.sort(ind, axis=1), np.sort(ref, axis=1))


def test_level0_graph_returns_none_for_other_data_or_layout():
    X, _ = make_clusters(n=300, n_features=6, n_clusters=3, seed=5)
    Xt = np.ascontiguousarray(X, dtype=np.float32)
    index = Voyager(random_state=0)
    index.build(X, 10)
    assert Level0Graph.from_voyager(index._index, Xt + 1.0, index.M) is None  # not the data it holds
    assert Level0Graph.from_voyager(index._index, Xt, index.M + 1) is None  # another layout

    class Garbled:
        def save(self, stream):
            stream.write(b"\x00" * 4096)

    assert Level0Graph.from_voyager(Garbled(), Xt, index.M) is None


def test_voyager_without_the_graph_reader_falls_back_to_its_own_search(monkeypatch):
    X, _ = make_clusters(n=1500, n_features=12, n_clusters=6, seed=6)
    ref_i, _ = Exact().build(X, 20)
    with_graph = Voyager(n_jobs=2, random_state=0).build(X, 20)
    monkeypatch.setattr(approximate.Level0Graph, "from_voyager", classmethod(lambda cls, *a, **kw: None))
    without = Voyager(n_jobs=2, random_state=0).build(X, 20)
    for ind, dist in (with_graph, without):
        assert np.mean([len(np.intersect1d(a, b)) / 20 for a, b in zip(ind, ref_i)]) >= 0.99
        np.testing.assert_allclose(dist, np.take_along_axis(cdist(X, X), ind, axis=1), rtol=1e-10)


def test_voyager_searches_short_rows_with_voyager(monkeypatch):
    """Rows the bottom-layer search leaves short (-1) are searched by voyager, so the
    neighbour lists stay complete and exact in their distances."""
    X, _ = make_clusters(n=600, n_features=5, n_clusters=3, seed=7)
    search = Level0Graph.search

    def short_search(self, nodes, m, ef, n_jobs=1):
        ind, dist = search(self, nodes, m, ef, n_jobs)
        ind[::3, -4:] = -1
        dist[::3, -4:] = np.inf
        return ind, dist

    monkeypatch.setattr(Level0Graph, "search", short_search)
    ind, dist = Voyager(n_jobs=2, random_state=0).build(X, 15)
    assert np.all(ind >= 0) and not np.any(ind == np.arange(len(X))[:, None])
    np.testing.assert_allclose(dist, np.take_along_axis(cdist(X, X), ind, axis=1), rtol=1e-10)
    ref_i, _ = Exact().build(X, 15)
    assert np.mean([len(np.intersect1d(a, b)) / 15 for a, b in zip(ind, ref_i)]) >= 0.99


def test_level0_graph_of_the_cosine_space():
    """voyager's cosine space holds the rows at unit length: the graph keeps those, its search
    at full breadth finds the exact cosine neighbours, and a zero row (no direction) makes the
    reader decline."""
    import voyager

    X, _ = make_clusters(n=300, n_features=6, n_clusters=3, seed=8)
    Xt = np.ascontiguousarray(X, dtype=np.float32)

    def cosine_index(data):
        index = voyager.Index(voyager.Space.Cosine, data.shape[1], M=12, ef_construction=40, random_seed=1,
                              max_elements=len(data))
        index.add_items(data, num_threads=1)
        return index

    graph = Level0Graph.from_voyager(cosine_index(Xt), Xt, 12, unit=True)
    assert graph is not None
    np.testing.assert_allclose(np.linalg.norm(graph.X, axis=1), 1.0, rtol=1e-6)
    ind, _ = graph.search(np.arange(len(X)), 11, len(X))
    ref = np.argsort(cdist(X, X, "cosine"), axis=1, kind="stable")[:, :11]
    assert np.mean([len(np.intersect1d(a, b)) for a, b in zip(ind, ref)]) >= 10.95  # ties at 1e-7 aside
    assert Level0Graph.from_voyager(cosine_index(Xt), Xt, 12) is None  # not the raw rows
    Xz = Xt.copy()
    Xz[5] = 0.0
    assert Level0Graph.from_voyager(cosine_index(Xz), Xz, 12, unit=True) is None


def test_graph_without_renumbering_finds_the_same_neighbours():
    """``renumber=False`` (compact outputs: no reordered copy of the data) searches the same
    graph in the same way: the same neighbours and distances as the renumbered graph."""
    X, _ = make_clusters(n=900, n_features=8, n_clusters=5, seed=10)
    Xt = np.ascontiguousarray(X, dtype=np.float32)
    index = Voyager(random_state=0)
    index.build(X, 10)
    renumbered = Level0Graph.from_voyager(index._index, Xt, index.M)
    plain = Level0Graph.from_voyager(index._index, Xt, index.M, renumber=False)
    assert plain.order is None and plain.X is Xt  # no copy of the data
    nodes = np.random.default_rng(4).permutation(len(X))[:300]
    i1, d1 = renumbered.search(nodes, 11, 41, n_jobs=2)
    i2, d2 = plain.search(nodes, 11, 41, n_jobs=2)
    np.testing.assert_array_equal(i2, i1)
    np.testing.assert_array_equal(d2, d1)
