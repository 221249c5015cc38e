"""The 3-D FFT repulsion's near/far split on a finished MNIST embedding: per-call time and
error for grid caps (nodes per point) and near-field radii (box widths).

    python bench/bench_split_3d.py --data mnist70k --n-jobs 2

The final 3-D embedding and P come from ``bench/profile_gradient.py``'s cache (computed on
first use). The reference is the exact repulsion of 2,000 sampled points against all points,
normalised by the exact ``Z``; the error is the relative norm of the difference of the
normalised forces. Prints one line per setting.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402
import profile_gradient  # noqa: E402

SETTINGS = [(32, 1.0), (8, 1.0), (12, 1.0), (16, 1.0), (24, 1.0), (48, 1.0), (64, 1.0), (16, 1.5), (32, 1.5)]


def exact_normalised(Y, sample, n_jobs):
    """The exact repulsion of ``Y[sample]`` divided by the exact ``Z``, and ``Z``."""
    from turbotsne._config import thread_limit
    from turbotsne.gradients.exact import exact_reference_repulsion

    forces = np.empty((len(sample), Y.shape[1]))
    z_rows = np.empty(len(sample))
    Z = 0.0
    with thread_limit(n_jobs):
        exact_reference_repulsion(Y[sample], Y, 1.0, forces, z_rows)
        for s in range(0, len(Y), 5000):
            block = Y[s:s + 5000]
            out, z = np.empty_like(block), np.empty(len(block))
            exact_reference_repulsion(block, Y, 1.0, out, z)
            Z += z.sum() - len(block)  # without the self pairs (w_ii = 1)
    return forces / Z, Z


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k", choices=["mnist10k", "mnist70k"])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    from turbotsne._config import thread_limit
    from turbotsne.gradients import fft

    Y, _ = profile_gradient.final_state(args.data, 3, args.n_jobs, args.data_dir)
    sample = np.random.default_rng(0).choice(len(Y), 2000, replace=False)
    ref, Z = exact_normalised(Y, sample, args.n_jobs)
    defaults = fft.SPLIT_NODES_PER_POINT, fft.NEAR_FIELD_RADIUS
    print(f"{args.data}, 3-D, extent {np.ptp(Y, axis=0).round(1)}, n_jobs={args.n_jobs}; defaults: "
          f"{defaults[0]} nodes per point, near field {defaults[1]} box")
    try:
        for nodes, radius in SETTINGS:
            fft.SPLIT_NODES_PER_POINT, fft.NEAR_FIELD_RADIUS = nodes, radius
            rep = fft.FFTRepulsion(n_jobs=args.n_jobs)
            out = np.empty_like(Y)
            with thread_limit(args.n_jobs):
                Zf = rep(Y, 1.0, out)
                t = common.timed(lambda: rep(Y, 1.0, out), args.repeat)[1]
            err = np.linalg.norm(out[sample] / Zf - ref) / np.linalg.norm(ref)
            print(f"  {nodes:3d} nodes/point, near field {radius} box ({rep._layout.n_boxes} boxes): "
                  f"{t * 1e3:6.1f} ms per call, force error {err:.2e}, Z error {abs(Zf - Z) / Z:.1e}")
    finally:
        fft.SPLIT_NODES_PER_POINT, fft.NEAR_FIELD_RADIUS = defaults


if __name__ == "__main__":
    main()
