"""A one-dimensional t-SNE and a "t-SNE heat-map" of scikit-learn's digits.

    python examples/heatmap_1d.py [-o heatmap_1d.png] [--n-jobs -1]

``n_components=1`` orders the points along a line. The top panel is the
embedding as a heat-map strip coloured by digit (``turbotsne.plot`` on a 1-D
embedding); below, the 64 pixel values of every image, columns in the order of
the 1-D embedding, so similar images sit side by side.
"""
import argparse
import logging

import numpy as np
from sklearn.datasets import load_digits

import turbotsne


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="heatmap_1d.png")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--n-iter", type=int, default=500, help="iterations of the normal regime")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = load_digits(return_X_y=True)
    tsne = turbotsne.TSNE(n_components=1, n_iter=args.n_iter, n_jobs=args.n_jobs, random_state=0)
    Y = tsne.fit_transform(X)
    order = np.argsort(Y[:, 0])

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5), height_ratios=(1, 4), sharex=False)
    turbotsne.plot(Y, y, ax=top, title=f"1-D t-SNE of the digits (KL {tsne.kl_divergence_:.3f})")
    bottom.imshow(X[order].T, aspect="auto", cmap="Greys", interpolation="nearest")
    bottom.set_xlabel("images, in the order of the 1-D embedding")
    bottom.set_ylabel("pixel")
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    logging.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
