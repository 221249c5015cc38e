"""Embed all 70,000 MNIST digits (PCA-50) with the defaults and write the README's picture.

    python examples/mnist.py [--data ../shared/data/mnist70k.npz] [-o docs/mnist.png] [--n-jobs -1]

The data file is the offline MNIST copy of this project's workspace (``X`` 70000 x 784
pixel values, ``y`` labels); any ``.npz`` with ``X`` and ``y`` works.
"""
import argparse
import logging
import pathlib
import time

import numpy as np
from sklearn.decomposition import PCA

import turbotsne
from turbotsne._config import effective_n_jobs

DEFAULT = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "mnist70k.npz"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT))
    parser.add_argument("-o", "--output", default="docs/mnist.png")
    parser.add_argument("--n-jobs", type=int, default=-1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    d = np.load(args.data)
    X = PCA(50, svd_solver="full", random_state=0).fit_transform(d["X"].astype(np.float64))
    t0 = time.perf_counter()
    tsne = turbotsne.TSNE(n_jobs=args.n_jobs, random_state=0)
    Y = tsne.fit_transform(X)
    elapsed = time.perf_counter() - t0
    logging.info("MNIST-70k: %.1f s, KL %.3f", elapsed, tsne.kl_divergence_)

    import matplotlib
    matplotlib.use("Agg")
    ax = turbotsne.plot(Y, d["y"], figsize=(8, 8),
                        title=f"MNIST, 70,000 digits: turbotsne {elapsed:.0f} s on {effective_n_jobs(args.n_jobs)} "
                              f"threads, KL {tsne.kl_divergence_:.3f}")
    ax.figure.savefig(args.output, dpi=90, bbox_inches="tight")
    logging.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
