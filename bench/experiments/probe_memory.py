"""Peak memory per stage of one turbotsne run, per point, beyond the loaded input.

    python bench/experiments/probe_memory.py --data mnist250k --n-jobs 2

Stages: imports; the kNN (the "auto" index, k = 90, built and queried); the index and its
output dropped; ``PerplexityBasedNN`` (kNN again + P; the index stays with it); 30
optimisation iterations. After each stage the peak count (``VmHWM``) is restarted
(``common.reset_peak_rss``), so each line's peak is that stage's own. Linux only.
"""
import argparse
import gc
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/, for common
import common  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k", choices=["digits", "mnist10k", "mnist70k", "mnist250k", "mnist1m"])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--n-jobs", type=int, default=2)
    args = p.parse_args(argv)
    X, _ = common.load(args.data, args.data_dir)
    gc.collect()
    base = common.reset_peak_rss()

    def show(stage):
        peak, rss = common.peak_rss_mb(), common._status_mb("VmRSS")
        print(f"{stage:28s} rss {rss:8.0f} MB  stage peak {peak:8.0f} MB  peak - input {peak - base:7.0f} MB"
              f" = {(peak - base) * 2 ** 20 / len(X) / 1000:.2f} KB per point", flush=True)
        common.reset_peak_rss()

    show("input loaded")
    import turbotsne
    from turbotsne.neighbors import get_knn_index

    show("import turbotsne")
    index = get_knn_index("auto", "euclidean", n_jobs=args.n_jobs, random_state=0)
    ind, dist = index.build(X, 90)
    show("kNN (index built, queried)")
    del index, ind, dist
    gc.collect()
    show("index and kNN dropped")
    aff = turbotsne.PerplexityBasedNN(X, 30, n_jobs=args.n_jobs, random_state=0)
    show("PerplexityBasedNN")
    emb = turbotsne.TSNEEmbedding(turbotsne.initialization.pca(X, 2, random_state=0), aff,
                                  n_jobs=args.n_jobs, random_state=0)
    emb.optimize(30, inplace=True, exaggeration=12, momentum=0.8)
    show("30 iterations")


if __name__ == "__main__":
    main()
