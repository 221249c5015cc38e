"""The seed walk-through done with turbotsne: scikit-learn's digits, exact t-SNE, a scatter plot.

    python examples/digits.py [-o digits_tsne.png] [--method exact] [--compare-sklearn]

Embeds the 1,797 8x8 digit images with turbotsne (exact gradient by default, as in
the walk-through) and writes a PNG coloured by digit; with ``--compare-sklearn``,
scikit-learn's ``TSNE`` is run beside it (slow: about a minute for the exact method).
"""
import argparse
import logging
import time

from sklearn.datasets import load_digits
from sklearn.manifold import trustworthiness

import turbotsne


def scatter(ax, Y, y, title):
    import matplotlib.pyplot as plt

    cmap = plt.get_cmap("tab10")
    for digit in range(10):
        m = y == digit
        ax.scatter(Y[m, 0], Y[m, 1], s=6, color=cmap(digit), label=str(digit), rasterized=True)
    ax.set_title(title)
    ax.set_xticks([])
    ax.set_yticks([])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", default="digits_tsne.png")
    parser.add_argument("--method", default="exact", help="negative_gradient_method (exact, bh, fft, auto)")
    parser.add_argument("--compare-sklearn", action="store_true")
    parser.add_argument("--n-jobs", type=int, default=-1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    X, y = load_digits(return_X_y=True)
    t0 = time.perf_counter()
    tsne = turbotsne.TSNE(negative_gradient_method=args.method, random_state=0, n_jobs=args.n_jobs)
    Y = tsne.fit_transform(X)
    elapsed = time.perf_counter() - t0
    tw = trustworthiness(X, Y, n_neighbors=10)
    logging.info("turbotsne (%s): %.1f s, KL %.4f, trustworthiness %.4f", args.method, elapsed,
                 tsne.kl_divergence_, tw)
    panels = [(Y, f"turbotsne ({args.method}) {elapsed:.1f} s, KL {tsne.kl_divergence_:.3f}")]

    if args.compare_sklearn:
        from sklearn.manifold import TSNE as SKTSNE

        t0 = time.perf_counter()
        sk = SKTSNE(method="exact", random_state=0)
        Ys = sk.fit_transform(X)
        e = time.perf_counter() - t0
        logging.info("scikit-learn (exact): %.1f s, KL %.4f", e, sk.kl_divergence_)
        panels.append((Ys, f"scikit-learn (exact) {e:.1f} s, KL {sk.kl_divergence_:.3f}"))

    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 7), squeeze=False)
    for ax, (emb, title) in zip(axes[0], panels):
        scatter(ax, emb, y, title)
    axes[0][0].legend(markerscale=3, loc="best", fontsize=8)
    fig.tight_layout()
    fig.savefig(args.output, dpi=100)
    logging.info("wrote %s", args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
