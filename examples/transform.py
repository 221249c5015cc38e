"""Embed new points into an existing t-SNE embedding with ``TSNE.transform``.

    python examples/transform.py [-o transform.png] [--n-jobs -1]

Fits t-SNE on two thirds of scikit-learn's digits, then places the held-out third
onto that embedding and writes a PNG: the reference points in grey, the new
points coloured by digit. While ``TSNE.transform`` is not available in the
installed turbotsne, the script says so and exits without a plot.
"""
import argparse
import logging

import numpy as np
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import turbotsne


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="transform.png")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--n-iter", type=int, default=500, help="iterations of the normal regime")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    X, y = load_digits(return_X_y=True)
    X_ref, X_new, y_ref, y_new = train_test_split(X, y, test_size=1 / 3, random_state=0, stratify=y)
    tsne = turbotsne.TSNE(perplexity=30, n_iter=args.n_iter, n_jobs=args.n_jobs, random_state=0)
    Y_ref = tsne.fit_transform(X_ref)
    Y_new = tsne.transform(X_new)

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 6))
    ax.scatter(Y_ref[:, 0], Y_ref[:, 1], s=4, color="0.8", rasterized=True, label="reference")
    turbotsne.plot(Y_new, y_new, ax=ax, s=10, alpha=1.0, title="held-out digits placed onto the embedding")
    fig.savefig(args.output, dpi=120, bbox_inches="tight")
    acc = np.mean(y_new == y_ref[np.argmin(((Y_new[:, None] - Y_ref[None]) ** 2).sum(-1), axis=1)])
    logging.info("1-NN accuracy of the new points against the reference: %.3f; wrote %s", acc, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
