"""Barnes-Hut repulsion error against the exact sum: turbotsne's second-order summaries vs openTSNE's monopoles.

    python bench/bench_bh_accuracy.py --n 3000 --dims 1 2 3 --theta 0.25 0.5 1.0 --n-jobs 2

Y: 10 Gaussian blobs (std 6) with centres uniform in [-extent/2, extent/2]^d (a t-SNE-like
clustered embedding, as in ``bench_gradient.py``), from ``numpy.random.default_rng(0)``,
dof = 1. The reference is turbotsne's exact repulsion. Prints, per (d, theta), the relative
norm of the error of the normalised forces ``r_i / Z`` and the relative error of ``Z`` for
turbotsne's ``BarnesHutRepulsion`` and for openTSNE's ``estimate_negative_gradient_bh`` (same
opening criterion, centre-of-mass summaries), and the ratio of the two errors. One JSON line
each.
"""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_gradient import data  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=3000)
    p.add_argument("--dims", nargs="+", type=int, default=[1, 2, 3], choices=[1, 2, 3])
    p.add_argument("--theta", nargs="+", type=float, default=[0.25, 0.5, 1.0])
    p.add_argument("--extent", type=float, default=180.0)
    p.add_argument("--n-jobs", type=int, default=2)
    args = p.parse_args(argv)
    from turbotsne._config import thread_limit
    from turbotsne.gradients.barnes_hut import BarnesHutRepulsion
    from turbotsne.gradients.exact import exact_repulsion

    try:
        from openTSNE import _tsne
        from openTSNE.quad_tree import QuadTree
    except ImportError:  # pragma: no cover
        _tsne = None
    for d in args.dims:
        Y, _ = data(args.n, d, args.extent)
        exact = np.empty_like(Y)
        with thread_limit(args.n_jobs):
            z_exact = exact_repulsion(Y, 1.0, exact, np.empty(args.n))
        ref = exact / z_exact

        def force_error(forces):
            return float(np.linalg.norm(forces - ref) / np.linalg.norm(ref))

        for theta in args.theta:
            out = np.empty_like(Y)
            with thread_limit(args.n_jobs):
                z = BarnesHutRepulsion(theta)(Y, 1.0, out)
            rec = {"n": args.n, "d": d, "theta": theta, "turbotsne_force_error": force_error(out / z),
                   "turbotsne_Z_error": abs(z - z_exact) / z_exact}
            if _tsne is not None:
                grad = np.zeros_like(Y)  # openTSNE's negative gradient: minus the normalised repulsion
                z_ot = _tsne.estimate_negative_gradient_bh(QuadTree(Y), Y, grad, theta=theta, dof=1.0,
                                                           num_threads=args.n_jobs, pairwise_normalization=True)
                rec.update(openTSNE_force_error=force_error(-grad), openTSNE_Z_error=abs(z_ot - z_exact) / z_exact)
                rec.update(force_error_ratio=rec["openTSNE_force_error"] / rec["turbotsne_force_error"],
                           Z_error_ratio=rec["openTSNE_Z_error"] / rec["turbotsne_Z_error"])
            print(json.dumps({k: (float(f"{v:.3g}") if isinstance(v, float) else v) for k, v in rec.items()}),
                  flush=True)


if __name__ == "__main__":
    main()
