"""Embed MNIST's 60k training images, transform the 10k test images: turbotsne vs openTSNE.

    python bench/bench_transform.py --n-jobs 2 [--impl turbotsne openTSNE]

PCA-50 (fitted on all 70k rows, as the other benchmarks) of ../shared/data/mnist70k.npz;
``is_test`` marks the 10k test images. Each library fits its default t-SNE on the
training rows, then maps the test rows with its default ``transform``; the script
reports the fit and transform times and the 10-NN classifier accuracy of the test
images in the embedding (classifier fitted on the training embedding). Each library
runs in its own process, one after the other; one JSON line each, then the ratio.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def worker(impl, n_jobs, data_dir):
    import pathlib

    d = np.load(pathlib.Path(data_dir) / "mnist70k.npz")
    X, y, test = common.pca50(d["X"], common.CACHE / "mnist70k_pca50.npy"), d["y"], d["is_test"]
    Xtr, ytr, Xte, yte = X[~test], y[~test], X[test], y[test]
    t0 = time.perf_counter()
    if impl == "turbotsne":
        from turbotsne import TSNE

        model = TSNE(n_jobs=n_jobs, random_state=0).fit(Xtr)
        t1 = time.perf_counter()
        Ytr, Yte = model.embedding_, model.transform(Xte)
    else:
        from openTSNE import TSNE

        emb = TSNE(n_jobs=n_jobs, random_state=0).fit(Xtr)
        t1 = time.perf_counter()
        Ytr, Yte = np.asarray(emb), np.asarray(emb.transform(Xte))
    t2 = time.perf_counter()
    from sklearn.neighbors import KNeighborsClassifier

    acc = KNeighborsClassifier(10, n_jobs=n_jobs).fit(Ytr, ytr).score(Yte, yte)
    common.emit({"impl": impl, "fit_s": round(t1 - t0, 2), "transform_s": round(t2 - t1, 2),
                 "test_knn_accuracy": round(float(acc), 4), "peak_rss_mb": round(common.peak_rss_mb(), 1),
                 "n_jobs": n_jobs})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--impl", nargs="+", default=["turbotsne", "openTSNE"])
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.n_jobs, args.data_dir)
    recs = []
    for impl in args.impl:
        rec = common.run_worker([sys.executable, os.path.abspath(__file__), "--worker", impl, "--n-jobs",
                                 str(args.n_jobs), "--data-dir", args.data_dir], impl)
        if rec is None:
            continue
        common.emit(rec)
        recs.append(rec)
    if len(recs) == 2:
        print(f"transform time ratio {recs[0]['impl']}/{recs[1]['impl']}: "
              f"{recs[0]['transform_s'] / recs[1]['transform_s']:.2f}; fit time ratio "
              f"{recs[0]['fit_s'] / recs[1]['fit_s']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
