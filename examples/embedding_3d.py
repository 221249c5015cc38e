"""A three-dimensional t-SNE of scikit-learn's digits, drawn on 3-D axes.

    python examples/embedding_3d.py [-o embedding_3d.png] [--n-jobs -1]

``n_components=3`` uses Barnes-Hut by default ("auto"); ``turbotsne.plot``
draws a 3-D embedding on matplotlib's 3-D axes, and on ordinary axes as a
projection onto its first two principal axes (right panel).
"""
import argparse
import logging

from sklearn.datasets import load_digits

import turbotsne
from turbotsne.metrics import trustworthiness


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="embedding_3d.png")
    parser.add_argument("--n-jobs", type=int, default=-1)
    parser.add_argument("--n-iter", type=int, default=500, help="iterations of the normal regime")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = load_digits(return_X_y=True)
    tsne = turbotsne.TSNE(n_components=3, n_iter=args.n_iter, n_jobs=args.n_jobs, random_state=0)
    Y = tsne.fit_transform(X)
    tw = trustworthiness(X, Y, n_neighbors=10)

    fig = plt.figure(figsize=(13, 6))
    ax3d = fig.add_subplot(1, 2, 1, projection="3d")
    turbotsne.plot(Y, y, ax=ax3d, legend=False, title=f"3-D t-SNE (trustworthiness {tw:.3f})")
    ax3d.view_init(elev=20, azim=35)
    turbotsne.plot(Y, y, ax=fig.add_subplot(1, 2, 2), title="projected onto its principal plane")
    fig.tight_layout()
    fig.savefig(args.output, dpi=120)
    logging.info("KL %.4f, trustworthiness %.4f; wrote %s", tsne.kl_divergence_, tw, args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
