"""The fit's 2-D Barnes-Hut call at several group sizes, on MNIST embeddings: time and error.

    python bench/bench_bh_groups.py --sizes 5000 20000 70000 --groups 1 32 64 128 256 --n-jobs 2

Per size N: the first N rows of MNIST-70k (PCA-50, ``common.load``), embedded once by
``TSNE(random_state=0)`` with its defaults (cached under ``bench/results/cache``); then, per
``_GROUP`` value (1 is the per-point criterion), the median time of ``--repeat`` calls of
``BarnesHutRepulsion(theta)`` (tree build + traversal, compilation excluded) and the relative
error of its forces and of ``Z`` against turbotsne's exact sum. One JSON line per case.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def embedding(n, n_jobs, data_dir):
    path = common.CACHE / f"mnist70k_tsne_{n}.npy"
    if path.exists():
        return np.load(path)
    from turbotsne import TSNE

    X, _ = common.load("mnist70k", data_dir)
    Y = np.asarray(TSNE(n_jobs=n_jobs, random_state=0).fit_transform(X[:n]))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, Y)
    return Y


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", nargs="+", type=int, default=[5000, 20000, 70000])
    p.add_argument("--groups", nargs="+", type=int, default=[1, 32, 64, 128, 256])
    p.add_argument("--theta", type=float, default=0.5)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--data-dir", default=common.DEFAULT_DATA)
    args = p.parse_args(argv)
    from turbotsne._config import thread_limit
    from turbotsne.gradients import barnes_hut
    from turbotsne.gradients.exact import exact_repulsion

    for n in args.sizes:
        Y = embedding(n, args.n_jobs, args.data_dir)
        with thread_limit(args.n_jobs):
            ref = np.empty_like(Y)
            Z_ref = exact_repulsion(Y, 1.0, ref, np.empty(n))
            for group in args.groups:
                barnes_hut._GROUP = group
                bh = barnes_hut.BarnesHutRepulsion(args.theta)
                out = np.empty_like(Y)
                best, median = common.timed(lambda: bh(Y, 1.0, out), args.repeat)
                Z = bh(Y, 1.0, out)
                common.emit({"n": n, "group": group, "theta": args.theta, "n_jobs": args.n_jobs,
                             "median_ms": round(median * 1e3, 3), "best_ms": round(best * 1e3, 3),
                             "force_rel_err": float(np.linalg.norm(out - ref) / np.linalg.norm(ref)),
                             "z_rel_err": float(abs(Z - Z_ref) / Z_ref)})


if __name__ == "__main__":
    main()
