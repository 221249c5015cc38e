"""The affinity stage split into its pieces (turbotsne alone), with the perplexity search
against the bisection that scikit-learn and openTSNE use (a numba copy of it, here only).

    python bench/bench_affinity_stages.py --data mnist70k --n-jobs 2

Times the hnsw kNN graph (k = 3 * perplexity), the conditional probabilities (the shipped
safeguarded Newton search, then bisection from beta = 1 with the same stopping rule), and
the symmetrisation; prints the mean and largest number of steps per row of each search and
their largest entropy error.
"""
import argparse
import os
import sys
import time

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
from turbotsne._config import FASTMATH  # noqa: E402


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def bisection(sq, perplexity, tol, max_iter, out, steps):
    """scikit-learn's ``_binary_search_perplexity`` rule per row (shifted distances), compiled
    as turbotsne compiled it before the Newton search replaced it."""
    n, k = sq.shape
    target = np.log(perplexity)
    for i in numba.prange(n):
        shift = sq[i].min()
        beta, lo, hi = 1.0, -np.inf, np.inf
        used = max_iter
        for it in range(max_iter):
            s = 0.0
            for j in range(k):
                out[i, j] = np.exp(-(sq[i, j] - shift) * beta)
                s += out[i, j]
            sd = 0.0
            for j in range(k):
                out[i, j] /= s
                sd += (sq[i, j] - shift) * out[i, j]
            diff = np.log(s) + beta * sd - target
            if abs(diff) <= tol:
                used = it + 1
                break
            if diff > 0.0:
                lo = beta
                beta = beta * 2.0 if hi == np.inf else (beta + hi) / 2.0
            else:
                hi = beta
                beta = beta / 2.0 if lo == -np.inf else (beta + lo) / 2.0
        steps[i] = used


def entropy_error(P, perplexity):
    H = -np.sum(P * np.log(np.maximum(P, 1e-300)), axis=1)
    return float(np.abs(H - np.log(perplexity)).max())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k", choices=["mnist10k", "mnist70k", "mnist250k"])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--perplexity", type=float, default=30.0)
    args = p.parse_args(argv)
    from turbotsne._config import thread_limit
    from turbotsne.affinity_kernels import conditional_probabilities, index_dtype, symmetrize
    from turbotsne.neighbors import HNSW

    X, _ = common.load(args.data, args.data_dir)
    k = int(3 * args.perplexity)
    t = time.perf_counter()
    ind, dist = HNSW(n_jobs=args.n_jobs, random_state=0).build(X, k)
    t_knn = time.perf_counter() - t
    sq = np.square(dist)
    ind = ind.astype(index_dtype(*ind.shape))
    with thread_limit(args.n_jobs):
        small = np.ascontiguousarray(sq[:100])  # compile both searches first
        conditional_probabilities(small, args.perplexity, n_jobs=args.n_jobs)
        bisection(small, args.perplexity, 1e-5, 100, np.empty_like(small), np.empty(100, dtype=np.int64))
        t = time.perf_counter()
        P_new = conditional_probabilities(sq, args.perplexity, n_jobs=args.n_jobs)
        t_new = time.perf_counter() - t
        P_bis, steps = np.empty_like(sq), np.empty(len(sq), dtype=np.int64)
        t = time.perf_counter()
        bisection(sq, args.perplexity, 1e-5, 100, P_bis, steps)
        t_bis = time.perf_counter() - t
        error_new = entropy_error(P_new, args.perplexity)
        relative = float(np.max(np.abs(P_new - P_bis) / np.maximum(P_bis, 1e-300)))
        t = time.perf_counter()
        symmetrize(P_new, ind, overwrite=True)  # (overwrites P_new)
        t_sym = time.perf_counter() - t
    print(f"{args.data}: n={len(X)}, k={k}, n_jobs={args.n_jobs}")
    print(f"  kNN (hnsw)              {t_knn:7.2f} s")
    print(f"  conditionals, search    {t_new:7.3f} s  (entropy error <= {error_new:.1e})")
    print(f"  conditionals, bisection {t_bis:7.3f} s  (entropy error <= {entropy_error(P_bis, args.perplexity):.1e}, "
          f"steps per row: mean {steps.mean():.1f}, max {steps.max()})")
    print(f"  symmetrisation          {t_sym:7.3f} s")
    print(f"  largest relative difference of the two searches' P: {relative:.1e}")


if __name__ == "__main__":
    main()
