"""End to end, side by side: turbotsne vs openTSNE (FFT and BH) vs scikit-learn.

    python bench/bench_tsne.py --data mnist70k --impl turbotsne openTSNE-fft --n-jobs 2
    python bench/bench_tsne.py --data digits --impl turbotsne-exact sklearn-exact --n-jobs 2
    python bench/bench_tsne.py --data mnist70k --n-components 3 --impl turbotsne-fft turbotsne-bh

Each (implementation, data set) runs in its own fresh process (so that peak
RSS is its own; it is counted from when the data set is loaded, so it includes
the input array -- ``input_rss_mb`` -- but not the making of a synthetic set),
one after the other in this invocation, with the same data
(PCA-50), the same threads and ``random_state=0`` (``--seeds 0 1 2``: once per seed, with the
means in the table); each library is first
warmed up on a 2,000-point slice in that process (numba compilation, imports; turbotsne's
"auto" is resolved at the full size first, so the warm-up loads the kernels of the run),
and turbotsne's cold start is reported on its own line with ``--cold``.
Each run prints one JSON line; at the end a table gives every figure and the
time ratios against the first implementation listed.

Stages: ``affinities_s`` (kNN + P), ``early_s`` (early exaggeration),
``optimize_s`` (normal regime), ``total_s``. KL is each library's own report
and ``kl_turbotsne_P``, the KL of the final embedding under turbotsne's P
(one yardstick for all).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

IMPLS = ["turbotsne", "turbotsne-bh", "turbotsne-fft", "turbotsne-exact", "openTSNE-fft", "openTSNE-bh",
         "sklearn-bh", "sklearn-exact", "FItSNE"]


def _run_turbotsne(X, method, n_jobs, n_iter, ee_iter, d=2, seed=0):
    from turbotsne import PerplexityBasedDense, PerplexityBasedNN, TSNEEmbedding
    from turbotsne.engine import NUMBA
    from turbotsne.gradients import canonical_method
    from turbotsne.initialization import pca

    method = canonical_method(method)
    if method == "auto":
        method = NUMBA.auto_method(X.shape[0], d)
    t0 = time.perf_counter()
    if method == "exact":
        aff = PerplexityBasedDense(X, 30, n_jobs=n_jobs)
    else:
        aff = PerplexityBasedNN(X, 30, n_jobs=n_jobs, random_state=seed)
    t1 = time.perf_counter()
    emb = TSNEEmbedding(pca(X, d, random_state=seed), aff, negative_gradient_method=method, n_jobs=n_jobs,
                        random_state=seed)
    emb.optimize(ee_iter, inplace=True, exaggeration=12, momentum=0.8)
    t2 = time.perf_counter()
    emb.optimize(n_iter, inplace=True, exaggeration=1, momentum=0.8)
    t3 = time.perf_counter()
    return np.asarray(emb).copy(), emb.kl_divergence, (t1 - t0, t2 - t1, t3 - t2)


def _run_opentsne(X, method, n_jobs, n_iter, ee_iter, d=2, seed=0):
    from openTSNE import TSNEEmbedding, affinity, initialization

    t0 = time.perf_counter()
    aff = affinity.PerplexityBasedNN(X, 30, n_jobs=n_jobs, random_state=seed)
    t1 = time.perf_counter()
    emb = TSNEEmbedding(initialization.pca(X, n_components=d, random_state=seed), aff,
                        negative_gradient_method=method, n_jobs=n_jobs, random_state=seed)
    emb = emb.optimize(ee_iter, exaggeration=12, momentum=0.8, inplace=True)
    t2 = time.perf_counter()
    emb = emb.optimize(n_iter, exaggeration=1, momentum=0.8, inplace=True)
    t3 = time.perf_counter()
    return np.asarray(emb).copy(), float(emb.kl_divergence), (t1 - t0, t2 - t1, t3 - t2)


def _run_sklearn(X, method, n_jobs, n_iter, ee_iter, d=2, seed=0):
    from sklearn.manifold import TSNE

    method = {"bh": "barnes_hut", "auto": "barnes_hut"}.get(method, method)
    t0 = time.perf_counter()
    tsne = TSNE(n_components=d, method=method, n_jobs=n_jobs, random_state=seed, init="pca", max_iter=max(250, n_iter + ee_iter))
    Y = tsne.fit_transform(X)
    return Y, float(tsne.kl_divergence_), (float("nan"), float("nan"), time.perf_counter() - t0)


def _run_fitsne(X, method, n_jobs, n_iter, ee_iter, d=2, seed=0):
    """FIt-SNE (the ``fitsne`` package, at its defaults with our PCA start). It builds from source
    against FFTW and imports Cython in its setup.py without declaring it, so it is not one of
    our extras: ``apt-get install libfftw3-dev; pip install cython; pip install
    --no-build-isolation fitsne``. FIt-SNE logs on the C++ side: its stdout is captured at
    file-descriptor level, the optimisation time is the sum of its per-50-iteration times,
    "Iteration N (50 iterations in T seconds)" (the first ``ee_iter`` iterations are the early
    phase), and the rest of the wall time is the kNN + affinities. Its KL is left to
    ``kl_turbotsne_P``."""
    import re
    import tempfile

    from fitsne import FItSNE
    from turbotsne.initialization import pca

    init = np.ascontiguousarray(pca(X, d, random_state=seed), dtype=np.float64)
    with tempfile.TemporaryFile() as log:
        sys.stdout.flush()
        saved = os.dup(1)
        os.dup2(log.fileno(), 1)
        try:
            t0 = time.perf_counter()
            Y = FItSNE(np.ascontiguousarray(X, dtype=np.float64), no_dims=d, perplexity=30.0,
                       max_iter=n_iter + ee_iter, stop_early_exag_iter=ee_iter, nthreads=n_jobs,
                       rand_seed=seed, initialization=init)
            wall = time.perf_counter() - t0
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)
        log.seek(0)
        text = log.read().decode(errors="replace")
    blocks = [(int(it), float(t)) for it, t in
              re.findall(r"Iteration (\d+) \(\d+ iterations in ([0-9.]+) seconds\)", text)]
    t_ee = sum(t for it, t in blocks if it <= ee_iter)
    t_opt = sum(t for it, t in blocks if it > ee_iter)
    return np.asarray(Y), float("nan"), (wall - t_ee - t_opt, t_ee, t_opt)


def run_one(impl, X, n_jobs, n_iter, ee_iter, d=2, seed=0):
    lib, _, method = impl.partition("-")
    method = method or "auto"
    fn = {"turbotsne": _run_turbotsne, "openTSNE": _run_opentsne, "sklearn": _run_sklearn,
          "FItSNE": _run_fitsne}[lib]
    return fn(X, method, n_jobs, n_iter, ee_iter, d, seed)


def worker(args):
    X, y = common.load(args.data, args.data_dir)
    if args.n:
        X, y = X[: args.n], y[: args.n]
    import gc

    gc.collect()
    input_mb = common.reset_peak_rss()  # the peak below excludes making the data set
    impl = args.impl
    if impl == "turbotsne":  # resolve "auto" at the full size, so the warm-up runs the same kernels
        from turbotsne.engine import NUMBA

        impl = "turbotsne-" + NUMBA.auto_method(X.shape[0], args.n_components)
    if args.warmup:
        run_one(impl, X[:2000], args.n_jobs, 20, 20, args.n_components)
    Y, kl, (t_aff, t_ee, t_opt) = run_one(impl, X, args.n_jobs, args.n_iter, args.ee_iter,
                                          args.n_components, args.seed)
    rss = common.peak_rss_mb()
    rec = {"impl": args.impl, "data": args.data, "n": int(X.shape[0]), "d": args.n_components, "n_jobs": args.n_jobs,
           "seed": args.seed, "warm": bool(args.warmup), "affinities_s": round(t_aff, 2), "early_s": round(t_ee, 2),
           "optimize_s": round(t_opt, 2), "total_s": round(np.nansum([t_aff, t_ee, t_opt]), 2),
           "peak_rss_mb": round(rss, 1), "kl": round(kl, 4)}
    if input_mb is not None:  # RSS with the data loaded, before the library ran
        rec["input_rss_mb"] = round(input_mb, 1)
    if args.quality:
        from turbotsne import PerplexityBasedNN
        from turbotsne.gradients import make_backend

        P = PerplexityBasedNN(X, 30, n_jobs=args.n_jobs, random_state=0).P
        method = "exact" if X.shape[0] <= 5000 else "fft"
        rec["kl_turbotsne_P"] = round(make_backend(method, P, n_jobs=args.n_jobs).gradient(
            np.ascontiguousarray(Y, dtype=np.float64), P, 1.0, 1.0, np.empty_like(Y, dtype=np.float64), True), 4)
        rec.update(common.quality(X, Y, y, n_jobs=args.n_jobs))
    common.emit(rec)


def main(argv=None):
    p = common.data_parser(__doc__.splitlines()[0], IMPLS, ["turbotsne", "openTSNE-fft", "openTSNE-bh"])
    p.add_argument("--n-iter", type=int, default=500)
    p.add_argument("--ee-iter", type=int, default=250)
    p.add_argument("--n-components", type=int, default=2, choices=[1, 2, 3])
    p.add_argument("--no-quality", dest="quality", action="store_false")
    p.add_argument("--cold", action="store_true", help="also time turbotsne's first run in a fresh process")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="random_state of every library (kNN index, PCA, optimiser); with several, each "
                        "implementation runs once per seed and the table adds the mean of each figure")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--warmup", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl-one", dest="impl_one", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        args.impl = args.impl_one
        return worker(args)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.n_jobs), NUMBA_NUM_THREADS=str(max(args.n_jobs, 1)))
    base = [sys.executable, os.path.abspath(__file__), "--worker", "--data", args.data, "--data-dir",
            args.data_dir, "--n", str(args.n), "--n-jobs", str(args.n_jobs), "--n-iter", str(args.n_iter),
            "--ee-iter", str(args.ee_iter), "--n-components", str(args.n_components)] + ([] if args.quality else ["--no-quality"])
    runs = [(impl, True, seed) for seed in args.seeds for impl in args.impl]
    if args.cold:
        runs.append(("turbotsne", False, args.seeds[0]))
    records = []
    for impl, warm, seed in runs:
        cmd = base + ["--impl-one", impl, "--seed", str(seed)] + (["--warmup"] if warm else [])
        rec = common.run_worker(cmd, impl, env)
        if rec is None:
            continue
        common.emit(rec)
        records.append(rec)
    if not records:
        return 1
    ref = records[0]
    cols = ["affinities_s", "early_s", "optimize_s", "total_s", "peak_rss_mb", "input_rss_mb", "kl", "kl_turbotsne_P",
            "knn_preservation", "trustworthiness", "knn_accuracy"]
    print(f"\n{args.data}, n={ref['n']}, n_jobs={args.n_jobs}; ratio = time / time of {ref['impl']}")
    print("| impl | seed | warm | " + " | ".join(cols) + " | total ratio |")
    print("|" + "---|" * (len(cols) + 4))
    for r in records:
        vals = " | ".join(str(r.get(c, "")) for c in cols)
        print(f"| {r['impl']} | {r['seed']} | {r['warm']} | {vals} | {r['total_s'] / ref['total_s']:.2f} |")
    if len(args.seeds) > 1:  # the mean of each figure over the seeds, per implementation (warm runs)
        means = {}
        for impl in args.impl:
            rows = [r for r in records if r["impl"] == impl and r["warm"]]
            if rows:
                means[impl] = {c: float(np.mean([r[c] for r in rows])) for c in cols
                               if all(isinstance(r.get(c), (int, float)) for r in rows)}
        first = means.get(args.impl[0], {})
        for impl, m in means.items():
            vals = " | ".join(f"{m[c]:.4g}" if c in m else "" for c in cols)
            ratio = f"{m['total_s'] / first['total_s']:.2f}" if "total_s" in first else ""
            print(f"| {impl} | mean of {len(args.seeds)} | True | {vals} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
