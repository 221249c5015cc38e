"""Large data: embed a random subsample, then place every other point with ``transform``.

    python examples/large_data.py [--data FILE.npy|.npz] [--n 200000] [--subsample 20000] [-o large_data.png]

A common recipe for millions of points (Kobak & Berens 2019): t-SNE on a
subsample, the rest mapped onto it with ``TSNE.transform``. Without ``--data``
the script generates ``--n`` points of a 50-dimensional Gaussian mixture. It
reports quality metrics of the subsample's embedding (computed on a further
subsample) and writes a PNG; with this many points ``turbotsne.plot`` draws a
density image. While ``TSNE.transform`` is not available in the installed
turbotsne, only the subsample is plotted, with a message.
"""
import argparse
import logging
import time

import numpy as np

import turbotsne
from turbotsne.metrics import quality_report


def load(args):
    if args.data:
        data = np.load(args.data)
        if hasattr(data, "files"):
            X = data[data.files[0]]
            y = data[data.files[1]] if len(data.files) > 1 else None
        else:
            X, y = data, None
        return np.asarray(X, dtype=np.float64).reshape(len(X), -1), y
    r = np.random.default_rng(0)
    centers = r.normal(scale=3.0, size=(30, 50))
    y = r.integers(0, 30, size=args.n)
    X = centers[y] + r.normal(size=(args.n, 50))
    return X, y


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help=".npy (data) or .npz (data, then labels)")
    parser.add_argument("--n", type=int, default=200_000, help="points to generate without --data")
    parser.add_argument("--subsample", type=int, default=20_000)
    parser.add_argument("-o", "--output", default="large_data.png")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--n-iter", type=int, default=500, help="iterations of the normal regime")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    X, y = load(args)
    n = len(X)
    idx = np.random.default_rng(1).permutation(n)
    sub, rest = idx[:min(args.subsample, n)], idx[min(args.subsample, n):]

    t0 = time.perf_counter()
    tsne = turbotsne.TSNE(n_iter=args.n_iter, n_jobs=args.n_jobs, random_state=0)
    Y_sub = tsne.fit_transform(X[sub])
    logging.info("t-SNE of %d of %d points: %.1f s, KL %.4f", len(sub), n, time.perf_counter() - t0,
                 tsne.kl_divergence_)
    report = quality_report(X[sub], Y_sub, None if y is None else y[sub], subsample=5000, random_state=0,
                            affinities=tsne.tsne_embedding_.affinities, n_jobs=args.n_jobs)
    logging.info("quality: %s", ", ".join(f"{k} {v:.4g}" for k, v in report.items()))

    Y = np.empty((n, Y_sub.shape[1]))
    Y[sub] = Y_sub
    shown, title = sub, f"t-SNE of a {len(sub):,}-point subsample"
    if len(rest):
        t0 = time.perf_counter()
        Y[rest] = tsne.transform(X[rest])
        shown, title = idx, f"{len(sub):,} embedded + {len(rest):,} placed with transform"
        logging.info("transform of %d points: %.1f s", len(rest), time.perf_counter() - t0)

    import matplotlib
    matplotlib.use("Agg")

    ax = turbotsne.plot(Y[shown], None if y is None else y[shown], title=title, figsize=(8, 7))
    ax.figure.savefig(args.output, dpi=120, bbox_inches="tight")
    logging.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
