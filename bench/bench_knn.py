"""Time turbotsne's nearest-neighbour indexes, and candidate libraries, against openTSNE's default kNN.

    python bench/bench_knn.py --data ../shared/data/mnist70k.npz --n 70000 --pca 50 --n-jobs 2
    python bench/bench_knn.py --data mnist70k --isolate --repeat 2 --determinism \\
        --indexes voyager faiss-hnsw faiss-ivf usearch hnsw

Every index builds the k = 90 neighbour lists of the whole data set (what t-SNE's
perplexity 30 needs); recall@k is measured against exact neighbours of a random
subsample of ``--n-query`` points (cheap), and each time is also given as a ratio
to openTSNE's default (``Annoy`` from ``openTSNE.nearest_neighbors``). One JSON
line per run on stdout. ``--data`` is an .npz file with an array ``X`` or a set of
``bench/common.py`` (``mnist70k``, ``mnist1m``: already PCA-50).

An index spec is ``name`` or ``name:param=value,...`` (e.g. ``annoy:n_trees=20``,
``voyager:deterministic=0``). Names: turbotsne's indexes (``get_knn_index``) and
the candidates defined here through the same refinement (:class:`FaissHNSW`,
:class:`FaissIVF`, :class:`USearch`). A small warm-up build (numba compilation,
reported as ``warmup_s``) precedes each timed one. ``graph_s`` is the part of
the build spent making the index (the rest is the search of every point).

``--isolate`` runs each spec in a new process, which also reports the import
time of its library (``import_s`` after turbotsne's imports, ``fresh_import_s`` in a
new ``python -c``), ``cpu_s`` (user + system time of the build), and
``rss_delta_mb`` (peak resident memory during the build less the resident
memory before it). ``--determinism`` (implies ``--isolate``) builds each spec
again in a second new process and with ``--n-jobs 1`` and says whether the
neighbour lists are identical (``same_twice``, ``same_n_jobs_1``). ``--repeat``
alternates the specs that many times (the machine may be shared: report its
load, printed in the setup line).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "src"))
sys.path.insert(0, HERE)

from turbotsne._config import effective_n_jobs  # noqa: E402
from turbotsne.neighbors import Exact, get_knn_index  # noqa: E402
from turbotsne.neighbors.approximate import ApproximateIndex  # noqa: E402
from turbotsne.neighbors.base import canonical, check_data, check_k, seed  # noqa: E402

DEFAULT_SPECS = ["voyager", "hnsw", "annoy", "pynndescent", "auto"]


# --------------------------------------------------------------------------- #
# Candidate libraries, through ApproximateIndex's self removal and refinement
# (euclidean / sqeuclidean only)
# --------------------------------------------------------------------------- #
class _Candidate(ApproximateIndex):
    requires = None
    accepts_metric_params = False

    @classmethod
    def valid_metrics(cls, sparse=False):
        return frozenset() if sparse else frozenset({"euclidean", "sqeuclidean"})

    @classmethod
    def supports(cls, metric, sparse=False):
        return not sparse and not callable(metric) and canonical(metric) in ("euclidean", "sqeuclidean")

    def build(self, X, k):
        self.require()
        X = check_data(X, accept_sparse=False)
        self._check_metric(False)
        k = check_k(k, X.shape[0], build=True)
        self.n_samples_fit_, self.n_features_in_ = X.shape
        self._ref = X
        Xt = np.ascontiguousarray(X, dtype=np.float32)
        n_jobs = effective_n_jobs(self.n_jobs)
        self._index = self._make_graph(Xt, n_jobs)
        return self._chunked(lambda s, e: self._search(Xt[s:e], k + 1, n_jobs), X, k, exclude_self=True)

    def query(self, X_new, k):
        self._check_fitted()
        X_new = self._check_query(X_new)
        k = check_k(k, self.n_samples_fit_, build=False)
        Xt = np.ascontiguousarray(X_new, dtype=np.float32)
        n_jobs = effective_n_jobs(self.n_jobs)
        return self._chunked(lambda s, e: self._search(Xt[s:e], k, n_jobs), X_new, k, exclude_self=False)


class FaissHNSW(_Candidate):
    """faiss ``IndexHNSWFlat`` (faiss >= 1.15.1 builds its graph deterministically in parallel)."""

    name = "faiss-hnsw"
    requires = "faiss"

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 M=12, ef_construction=64, ef=120):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.M, self.ef_construction, self.ef = M, ef_construction, ef

    def _make_graph(self, Xt, n_jobs):
        import faiss

        faiss.omp_set_num_threads(n_jobs)
        index = faiss.IndexHNSWFlat(Xt.shape[1], self.M)
        index.hnsw.efConstruction = self.ef_construction
        index.add(Xt)
        return index

    def _search(self, Xq, k, n_jobs):
        import faiss

        faiss.omp_set_num_threads(n_jobs)
        self._index.hnsw.efSearch = max(self.ef, k)
        dist, ind = self._index.search(Xq, k)
        return ind, dist


class FaissIVF(_Candidate):
    """faiss ``IndexIVFFlat``: seeded k-means into ``nlist`` lists (default 4 sqrt(N)); a
    query scans its ``nprobe`` nearest lists exactly."""

    name = "faiss-ivf"
    requires = "faiss"

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 nlist=None, nprobe=16):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.nlist, self.nprobe = nlist, nprobe

    def _make_graph(self, Xt, n_jobs):
        import faiss

        faiss.omp_set_num_threads(n_jobs)
        nlist = self.nlist or max(1, int(4 * np.sqrt(Xt.shape[0])))
        index = faiss.IndexIVFFlat(faiss.IndexFlatL2(Xt.shape[1]), Xt.shape[1], int(nlist))
        index.cp.seed = seed(self.random_state)
        index.train(Xt)
        index.add(Xt)
        self._quantizer = index.quantizer  # the IVF index does not own it
        return index

    def _search(self, Xq, k, n_jobs):
        import faiss

        faiss.omp_set_num_threads(n_jobs)
        self._index.nprobe = self.nprobe
        dist, ind = self._index.search(Xq, k)
        return ind, dist


class USearch(_Candidate):
    """usearch's HNSW (``connectivity`` M, ``expansion_add`` ef_construction, ``expansion_search`` ef)."""

    name = "usearch"
    requires = "usearch"

    def __init__(self, metric="euclidean", metric_params=None, n_jobs=1, random_state=None,
                 M=12, ef_construction=64, ef=120):
        super().__init__(metric, metric_params, n_jobs, random_state)
        self.M, self.ef_construction, self.ef = M, ef_construction, ef

    def _make_graph(self, Xt, n_jobs):
        from usearch.index import Index

        index = Index(ndim=Xt.shape[1], metric="l2sq", dtype="f32", connectivity=self.M,
                      expansion_add=self.ef_construction, expansion_search=self.ef)
        index.add(np.arange(Xt.shape[0]), Xt, threads=n_jobs)
        return index

    def _search(self, Xq, k, n_jobs):
        self._index.expansion_search = max(self.ef, k)
        matches = self._index.search(Xq, k, threads=n_jobs)
        return np.asarray(matches.keys, dtype=np.int64), np.asarray(matches.distances)


CANDIDATES = {c.name: c for c in (FaissHNSW, FaissIVF, USearch)}
#: the module each spec imports
MODULES = {"annoy": "annoy", "hnsw": "hnswlib", "pynndescent": "pynndescent", "voyager": "voyager",
           "faiss-hnsw": "faiss", "faiss-ivf": "faiss", "usearch": "usearch"}


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
    if name in CANDIDATES:
        index = CANDIDATES[name](metric, None, n_jobs, seed)
    else:
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


def digest(indices, distances):
    """A short hash of the neighbour lists and their distances."""
    h = hashlib.sha1(np.ascontiguousarray(indices, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(distances, dtype=np.float64).tobytes())
    return h.hexdigest()[:12]


def load_data(args):
    if args.data in ("mnist70k", "mnist250k", "mnist1m"):
        import common

        X = common.load(args.data)[0]
        pca = 50
    else:
        X = np.load(args.data)["X"]
        pca = args.pca
    if args.n:
        X = X[:args.n]
    X = np.asarray(X, dtype=np.float64)
    if pca and X.shape[1] > pca:
        from sklearn.decomposition import PCA

        X = PCA(pca, svd_solver="full", random_state=0).fit_transform(X)
    return np.ascontiguousarray(X), pca


def cpu_seconds():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def run_spec(spec, X, k, metric, n_jobs, seed_, rows=None, ref=None, measure_memory=False):
    """Build one spec on X (after a warm-up build on 2,000 rows); the JSON record of it."""
    import common

    name, params = parse_spec(spec)
    line = dict(run=spec, n_jobs=n_jobs)
    module = MODULES.get(name)
    if module is not None:
        if importlib.util.find_spec(module) is None:
            return dict(line, skipped="not installed")
        t0 = time.perf_counter()
        __import__(module)
        line["import_s"] = round(time.perf_counter() - t0, 3)
    t0 = time.perf_counter()
    m = min(2000, X.shape[0])
    make_index(name, params, metric, n_jobs, seed_).build(X[:m], min(k, m - 1))
    line["warmup_s"] = round(time.perf_counter() - t0, 2)
    index = make_index(name, params, metric, n_jobs, seed_)
    timer = common.KernelTimes()
    if hasattr(index, "_make_graph"):
        timer.wrap(index, "_make_graph", "graph")
    rss0 = common.reset_peak_rss() if measure_memory else None
    c0, t0 = cpu_seconds(), time.perf_counter()
    ind, dist = index.build(X, k)
    elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - c0
    line.update(build_s=round(elapsed, 2), cpu_s=round(cpu, 2))
    if "graph" in timer.times:
        line["graph_s"] = round(timer.times["graph"], 2)
    if rss0 is not None:
        line["rss_delta_mb"] = round(common.peak_rss_mb() - rss0, 1)
    if rows is not None:
        line["recall"] = round(recall_at_k(ind, ref, rows), 4)
    chosen = getattr(getattr(index, "index_", None), "name", None)
    if chosen:
        line["chose"] = chosen
    line["digest"] = digest(ind, dist)
    return line


def worker(args):
    """One spec in this (new) process; data, reference rows and neighbours from ``--worker-data``."""
    d = np.load(args.worker_data)
    rec = run_spec(args.worker, d["X"], args.k, args.metric, args.n_jobs, args.seed, d["rows"], d["ref"],
                   measure_memory=True)
    print(json.dumps(rec), flush=True)


def fresh_import_s(module, repeat=3):
    """Median seconds that ``import module`` adds to a new ``python -c`` process."""
    def run(code):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        return time.perf_counter() - t0

    base = np.median([run("pass") for _ in range(repeat)])
    return round(float(np.median([run(f"import {module}") for _ in range(repeat)]) - base), 3)


def isolated(spec, data_path, args, n_jobs):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", spec, "--worker-data", data_path,
           "--k", str(args.k), "--metric", args.metric, "--n-jobs", str(n_jobs), "--seed", str(args.seed),
           "--data", "-"]
    out = subprocess.run(cmd, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        return dict(run=spec, n_jobs=n_jobs, failed=out.stderr[-500:])
    return json.loads(lines[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="an .npz file with an array X, or mnist70k / mnist1m")
    p.add_argument("--n", type=int, default=None, help="use the first N rows (default all)")
    p.add_argument("--pca", type=int, default=50, help="PCA dimensions; 0 keeps the raw features")
    p.add_argument("--k", type=int, default=90)
    p.add_argument("--metric", default="euclidean")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--n-query", type=int, default=2000, help="points whose recall is measured")
    p.add_argument("--indexes", nargs="*", default=None, help=f"index specs (default {DEFAULT_SPECS})")
    p.add_argument("--no-opentsne", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--isolate", action="store_true", help="each spec in a new process")
    p.add_argument("--determinism", action="store_true",
                   help="also a second new process, and one with --n-jobs 1: identical lists?")
    p.add_argument("--repeat", type=int, default=1, help="alternate the specs this many times")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--worker-data", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)
    args.isolate = args.isolate or args.determinism

    t0 = time.perf_counter()
    X, pca = load_data(args)
    prep_s = time.perf_counter() - t0
    n, d = X.shape
    rows = np.sort(np.random.default_rng(args.seed).choice(n, size=min(args.n_query, n), replace=False))
    t0 = time.perf_counter()
    ref = exact_reference(X, rows, args.k, args.metric, args.n_jobs)
    exact_query_s = time.perf_counter() - t0
    common = dict(data=os.path.basename(args.data), n=n, d=d, k=args.k, metric=args.metric, pca=pca)
    print(json.dumps(dict(common, run="setup", pca_s=round(prep_s, 2), exact_on_query_subsample_s=round(
        exact_query_s, 2), n_query=len(rows), load=[round(x, 2) for x in os.getloadavg()],
        cpus=os.cpu_count())), flush=True)

    baseline = None
    if not args.no_opentsne and importlib.util.find_spec("openTSNE") is not None:
        from openTSNE.nearest_neighbors import Annoy as OTAnnoy

        t0 = time.perf_counter()
        ind, _ = OTAnnoy(X, args.k, metric=args.metric, n_jobs=args.n_jobs, random_state=args.seed).build()
        baseline = time.perf_counter() - t0
        print(json.dumps(dict(common, run="openTSNE.Annoy", n_jobs=args.n_jobs, build_s=round(baseline, 2),
                              recall=round(recall_at_k(ind, ref, rows), 4), ratio=1.0)), flush=True)

    data_file = None
    if args.isolate:
        data_file = tempfile.NamedTemporaryFile(suffix=".npz", delete=False)
        np.savez(data_file, X=X, rows=rows, ref=ref)
        data_file.close()
    try:
        for _ in range(args.repeat):
            for spec in args.indexes or DEFAULT_SPECS:
                if args.isolate:
                    line = isolated(spec, data_file.name, args, args.n_jobs)
                    module = MODULES.get(parse_spec(spec)[0])
                    if module is not None and "digest" in line:
                        line["fresh_import_s"] = fresh_import_s(module)
                    if args.determinism and "digest" in line:
                        again = isolated(spec, data_file.name, args, args.n_jobs)
                        one = isolated(spec, data_file.name, args, 1)
                        line["same_twice"] = again.get("digest") == line["digest"]
                        line["same_n_jobs_1"] = one.get("digest") == line["digest"]
                        line["build_s_n_jobs_1"] = one.get("build_s")
                else:
                    line = run_spec(spec, X, args.k, args.metric, args.n_jobs, args.seed, rows, ref)
                line = dict(common, **line, load1=round(os.getloadavg()[0], 2))
                if baseline and "build_s" in line:
                    line["ratio"] = round(line["build_s"] / baseline, 3)
                print(json.dumps(line), flush=True)
    finally:
        if data_file is not None:
            os.unlink(data_file.name)


if __name__ == "__main__":
    main()
