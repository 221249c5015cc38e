"""Time turbotsne's nearest-neighbour indexes against openTSNE's default kNN.

    python bench/bench_knn.py --data ../shared/data/mnist70k.npz --n 70000 --pca 50 --n-jobs 2

Every installed index builds the k = 90 neighbour lists of the whole data set
(what t-SNE's perplexity 30 needs); recall@k is measured against exact
neighbours of a random subsample of ``--n-query`` points (cheap), and each
time is also given as a ratio to openTSNE's default (``Annoy`` from
``openTSNE.nearest_neighbors``, which ``PerplexityBasedNN`` uses for
N >= 1000). One JSON line per run on stdout.

An index spec is ``name`` or ``name:param=value,...`` (e.g. ``annoy:n_trees=20``,
``hnsw:ef_construction=100,M=12``). numba compilation (pynndescent) is
excluded from the timings by a small warm-up run, reported as ``warmup_s``.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))

from turbotsne.neighbors import Exact, get_knn_index  # noqa: E402

DEFAULT_SPECS = ["hnsw", "annoy", "pynndescent", "auto"]


def parse_spec(spec):
    name, _, rest = spec.partition(":")
    params = {}
    for item in filter(None, rest.split(",")):
        key, _, value = item.partition("=")
        try:
            params[key] = int(value)
        except ValueError:
            params[key] = float(value)
    return name, params


def make_index(name, params, metric, n_jobs, seed):
    index = get_knn_index(name, metric, None, n_jobs, seed)
    for key, value in params.items():
        setattr(index, key, value)
    return index


def recall_at_k(indices, ref_indices, rows):
    found = indices[rows]
    return float(np.mean([len(np.intersect1d(a, b)) / len(b) for a, b in zip(found, ref_indices)]))


def exact_reference(X, rows, k, metric, n_jobs):
    """Exact neighbours of X[rows] among all of X, each point itself excluded (by index)."""
    index = Exact(metric, n_jobs=n_jobs).fit(X)
    ind, _ = index.query(X[rows], k + 1)
    out = np.empty((len(rows), k), dtype=np.int64)
    for r, (row, i) in enumerate(zip(ind, rows)):
        row = row[row != i]
        out[r] = row[:k]
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="an .npz file with an array X")
    p.add_argument("--n", type=int, default=None, help="use the first N rows (default all)")
    p.add_argument("--pca", type=int, default=50, help="PCA dimensions; 0 keeps the raw features")
    p.add_argument("--k", type=int, default=90)
    p.add_argument("--metric", default="euclidean")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--n-query", type=int, default=2000, help="points whose recall is measured")
    p.add_argument("--indexes", nargs="*", default=None, help=f"index specs (default {DEFAULT_SPECS})")
    p.add_argument("--no-opentsne", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    X = np.load(args.data)["X"]
    if args.n:
        X = X[:args.n]
    X = np.asarray(X, dtype=np.float64)
    t0 = time.perf_counter()
    if args.pca:
        from sklearn.decomposition import PCA

        X = PCA(args.pca, svd_solver="full", random_state=0).fit_transform(X)
    prep_s = time.perf_counter() - t0
    n, d = X.shape
    rows = np.sort(np.random.default_rng(args.seed).choice(n, size=min(args.n_query, n), replace=False))
    t0 = time.perf_counter()
    ref = exact_reference(X, rows, args.k, args.metric, args.n_jobs)
    exact_query_s = time.perf_counter() - t0
    common = dict(data=os.path.basename(args.data), n=n, d=d, k=args.k, metric=args.metric,
                  n_jobs=args.n_jobs, pca=args.pca)
    print(json.dumps(dict(common, run="setup", pca_s=round(prep_s, 2),
                          exact_on_query_subsample_s=round(exact_query_s, 2), n_query=len(rows))), flush=True)

    baseline = None
    if not args.no_opentsne and importlib.util.find_spec("openTSNE") is not None:
        from openTSNE.nearest_neighbors import Annoy as OTAnnoy

        t0 = time.perf_counter()
        ind, _ = OTAnnoy(X, args.k, metric=args.metric, n_jobs=args.n_jobs, random_state=args.seed).build()
        baseline = time.perf_counter() - t0
        print(json.dumps(dict(common, run="openTSNE.Annoy", build_s=round(baseline, 2),
                              recall=round(recall_at_k(ind, ref, rows), 4), ratio=1.0)), flush=True)

    modules = {"annoy": "annoy", "hnsw": "hnswlib", "pynndescent": "pynndescent"}
    for spec in args.indexes or DEFAULT_SPECS:
        name, params = parse_spec(spec)
        if name in modules and importlib.util.find_spec(modules[name]) is None:
            print(json.dumps(dict(common, run=spec, skipped="not installed")), flush=True)
            continue
        t0 = time.perf_counter()
        make_index(name, params, args.metric, args.n_jobs, args.seed).build(X[:2000], min(args.k, 1999))
        warmup = time.perf_counter() - t0
        index = make_index(name, params, args.metric, args.n_jobs, args.seed)
        t0 = time.perf_counter()
        ind, _ = index.build(X, args.k)
        elapsed = time.perf_counter() - t0
        chosen = getattr(getattr(index, "index_", None), "name", None)
        line = dict(common, run=spec, build_s=round(elapsed, 2), warmup_s=round(warmup, 2),
                    recall=round(recall_at_k(ind, ref, rows), 4))
        if chosen:
            line["chose"] = chosen
        if baseline:
            line["ratio"] = round(elapsed / baseline, 3)
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
