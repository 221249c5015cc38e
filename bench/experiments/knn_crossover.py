"""Exact brute force against voyager for the neighbour lists of N points: where "auto" could switch.

    python bench/experiments/knn_crossover.py --sizes 1000 2000 3000 5000 10000 20000 --n-jobs 2

The first N rows of a seeded permutation of MNIST-70k (PCA-50, ``bench/common.load``), k = 90,
``Exact(n_jobs).build`` and ``Voyager(n_jobs, random_state=0).build`` alternately ``--repeat``
times after a small warm-up (numba compilation); one line per build: N, index, seconds.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import common  # noqa: E402

from turbotsne.neighbors import Exact, Voyager  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 2000, 3000, 5000, 10000, 20000])
    p.add_argument("--k", type=int, default=90)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    args = p.parse_args(argv)
    X, _ = common.load("mnist70k", args.data_dir)
    X = np.ascontiguousarray(X[np.random.default_rng(0).permutation(len(X))])
    for cls in (Exact, Voyager):  # warm-up
        cls(n_jobs=args.n_jobs, random_state=0).build(X[:500], args.k)
    for n in args.sizes:
        for _ in range(args.repeat):
            for cls in (Exact, Voyager):
                t = time.perf_counter()
                cls(n_jobs=args.n_jobs, random_state=0).build(X[:n], args.k)
                print(n, cls.__name__, round(time.perf_counter() - t, 3), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
