"""One full gradient (attraction + repulsion) per call, turbotsne vs openTSNE, same Y and P.

    python bench/bench_gradient.py --n 70000 --method fft bh --dims 1 2 3 --n-jobs 2

Y: 10 Gaussian blobs (std 6) with centres uniform in [-extent/2, extent/2]^d (a
t-SNE-like clustered embedding), P: a random symmetric sparse matrix with ~90
entries per row summing to 1, both from ``numpy.random.default_rng(0)``.
Prints one JSON line per (method, d) with the best and median of ``--repeat``
calls (compilation excluded) and the ratio to openTSNE (1-D and 2-D only;
openTSNE has no 3-D FFT and its BH in 3-D is not offered here).
"""
import argparse
import json
import os
import sys

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import timed  # noqa: E402
from turbotsne._config import thread_limit
from turbotsne.gradients import make_backend


def data(n, d, extent, k=90, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-extent / 2, extent / 2, (10, d))
    Y = centres[rng.integers(0, 10, n)] + rng.normal(scale=6.0, size=(n, d))
    rows = np.repeat(np.arange(n), k // 2)
    P = sp.csr_matrix((rng.random(rows.size), (rows, rng.integers(0, n, rows.size))), shape=(n, n))
    P = P + P.T
    P = (P / P.sum()).tocsr()
    return np.ascontiguousarray(Y), P


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=70_000)
    p.add_argument("--method", nargs="+", default=["fft", "bh"])
    p.add_argument("--dims", nargs="+", type=int, default=[2])
    p.add_argument("--extent", type=float, default=180.0)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    for d in args.dims:
        Y, P = data(args.n, d, args.extent)
        out = np.empty_like(Y)
        for method in args.method:
            backend = make_backend(method, P, n_jobs=args.n_jobs, n_components=d)
            with thread_limit(args.n_jobs):
                ours = timed(lambda: backend.gradient(Y, P, 1.0, 1.0, out), args.repeat)
            rec = {"n": args.n, "d": d, "method": method, "n_jobs": args.n_jobs,
                   "turbotsne_ms": round(ours[0] * 1e3, 1), "turbotsne_median_ms": round(ours[1] * 1e3, 1)}
            if d <= 2:
                from openTSNE import tsne as ot

                fn = ot.kl_divergence_fft if method == "fft" else ot.kl_divergence_bh
                params = (dict(n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1)
                          if method == "fft" else dict(theta=0.5))
                theirs = timed(lambda: fn(Y.copy(), P, 1.0, params, n_jobs=args.n_jobs), args.repeat)
                rec.update(openTSNE_ms=round(theirs[0] * 1e3, 1), openTSNE_median_ms=round(theirs[1] * 1e3, 1),
                           ratio=round(ours[0] / theirs[0], 3))
            print(json.dumps(rec), flush=True)


if __name__ == "__main__":
    main()
