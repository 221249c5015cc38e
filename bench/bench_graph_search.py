"""The search of a voyager graph's own points: voyager's search against turbotsne's, on one graph.

    python bench/bench_graph_search.py --data mnist70k --repeat 3 --n-jobs 2

Builds one voyager graph (``M``, ``ef_construction`` as ``Voyager``'s defaults, one thread,
seed 0) over the data (PCA-50 sets of ``common.load``), then alternates, ``--repeat`` times:
voyager's own search of every point (``k + 1`` neighbours, breadth ``k + 31``, in chunks of
``ApproximateIndex.CHUNK`` rows, as ``Voyager`` searched before 2026-12-04 session 4);
``Level0Graph.search`` of the same points on the renumbered graph and on the graph as voyager
numbers it; and the float64 refinement of the found neighbours (``brute.recompute``, chunk by
chunk as ``ApproximateIndex._chunked``) with the reference rows in their own order and in the
graph's breadth-first order (the copy included). Wall seconds per
variant and run, and recall@k (self excluded) on ``--n-query`` random points against brute
force. One JSON line per measurement.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

from turbotsne.neighbors import Voyager  # noqa: E402
from turbotsne.neighbors.approximate import ApproximateIndex  # noqa: E402
from turbotsne.neighbors.brute import recompute  # noqa: E402
from turbotsne.neighbors.graph import Level0Graph  # noqa: E402


def recall(ind, truth, rows):
    found = [r[r != i][:truth.shape[1]] for r, i in zip(ind[rows], rows)]
    return float(np.mean([len(np.intersect1d(f, t)) / truth.shape[1] for f, t in zip(found, truth)]))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k")
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--k", type=int, default=90)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--n-query", type=int, default=2000)
    p.add_argument("--n-jobs", type=int, default=2)
    args = p.parse_args(argv)
    import voyager
    from sklearn.metrics import pairwise_distances

    X = np.ascontiguousarray(common.load(args.data, args.data_dir)[0], dtype=np.float64)
    Xt = np.ascontiguousarray(X, dtype=np.float32)
    n, k, m = X.shape[0], args.k, args.k + 1
    defaults = Voyager()
    ef = max(m + Voyager.EF_MARGIN, 50)
    t0 = time.perf_counter()
    index = voyager.Index(voyager.Space.Euclidean, X.shape[1], M=defaults.M,
                          ef_construction=defaults.ef_construction, random_seed=0, max_elements=n)
    index.add_items(Xt, num_threads=1)
    graph_s = time.perf_counter() - t0
    renumbered = Level0Graph.from_voyager(index, Xt, defaults.M)
    plain = Level0Graph.from_voyager(index, Xt, defaults.M, renumber=False)
    rows = np.sort(np.random.default_rng(0).choice(n, min(args.n_query, n), replace=False))
    D = pairwise_distances(X[rows], X)
    D[np.arange(rows.size), rows] = np.inf
    truth = np.argsort(D, axis=1)[:, :k]
    print(json.dumps({"data": args.data, "n": n, "k": k, "ef": ef, "n_jobs": args.n_jobs,
                      "graph_s": round(graph_s, 2), "load": os.getloadavg()}), flush=True)
    chunk = ApproximateIndex.CHUNK
    renumbered.search(np.arange(min(n, 100)), m, ef, args.n_jobs)  # compilation / cache load

    def voyager_search():
        return np.concatenate([index.query(Xt[s:s + chunk], m, num_threads=args.n_jobs, query_ef=ef)[0]
                               for s in range(0, n, chunk)]).astype(np.int64)

    def ours(graph):
        return lambda: np.concatenate([graph.search(np.arange(s, min(n, s + chunk)), m, ef, args.n_jobs)[0]
                                       for s in range(0, n, chunk)])

    found = {}
    for run in range(args.repeat):
        for name, search in (("voyager", voyager_search), ("turbotsne renumbered", ours(renumbered)),
                             ("turbotsne plain", ours(plain))):
            t0 = time.perf_counter()
            found[name] = search()
            print(json.dumps({"run": run, "search": name, "s": round(time.perf_counter() - t0, 2),
                              "recall": round(recall(found[name], truth, rows), 4)}), flush=True)
        ind = found["turbotsne renumbered"][:, 1:]  # self first: k neighbours to refine
        t0 = time.perf_counter()
        plain_d = np.concatenate([recompute("euclidean", X[s:s + chunk], X, ind[s:s + chunk], n_jobs=args.n_jobs)
                                  for s in range(0, n, chunk)])
        in_place = time.perf_counter() - t0
        t0 = time.perf_counter()  # the copy in graph order included, as Voyager.build makes it
        Xo, rank = X[renumbered.order], renumbered.rank
        ordered_d = np.concatenate([recompute("euclidean", X[s:s + chunk], Xo, rank[ind[s:s + chunk]],
                                              n_jobs=args.n_jobs) for s in range(0, n, chunk)])
        ordered = time.perf_counter() - t0
        print(json.dumps({"run": run, "refinement_own_order_s": round(in_place, 2),
                          "refinement_graph_order_s": round(ordered, 2),
                          "identical": bool(np.array_equal(plain_d, ordered_d))}), flush=True)


if __name__ == "__main__":
    main()
