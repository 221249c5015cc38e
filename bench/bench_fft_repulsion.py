"""Per-call time of the FFT repulsion vs openTSNE's, compilation excluded.

    python bench/bench_fft_repulsion.py [n ...] [--n-jobs 2] [--repeat 5]

Y: ``n`` standard normal points scaled by 30 (1-D, 2-D) or 4 (3-D: extent ~35, under the grid
cap), from ``numpy.random.default_rng(0)``; the kernel spectra are recomputed on every call (as
for a moving embedding). Prints the best and median of ``--repeat`` calls after one warm-up
call, beside openTSNE's ``estimate_negative_gradient_fft_{1,2}d`` (3 interpolation points, at
least 50 intervals; no 3-D there), and the boxes per dimension of the grid used.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import timed as best_of  # noqa: E402  (warm-up call, then (min, median) seconds)
from turbotsne._config import thread_limit
from turbotsne.gradients.fft import FFTRepulsion


def main(sizes=(10_000, 70_000), n_jobs=2, repeat=5):
    try:
        from openTSNE import _tsne
    except ImportError:  # pragma: no cover
        _tsne = None
    rng = np.random.default_rng(0)
    print(f"{'d':>2} {'n':>7} {'turbotsne ms (min/med)':>24} {'openTSNE ms (min/med)':>24}  grid")
    for d in (1, 2, 3):
        for n in sizes:
            Y = rng.normal(scale=30.0 if d < 3 else 4.0, size=(n, d))  # 3-D: extent ~35, within the cap
            out = np.empty_like(Y)
            f = FFTRepulsion(n_jobs=n_jobs)

            def ours():
                f._kernel_key = None  # a new embedding every iteration: no kernel reuse
                f(Y, 1.0, out)

            with thread_limit(n_jobs):
                t_ours = best_of(ours, repeat)
            grid = f._buffers_key  # (d, boxes per dimension) of the grid last used
            t_ot = None
            if _tsne is not None and d < 3:
                g = np.zeros_like(Y)
                fn = getattr(_tsne, f"estimate_negative_gradient_fft_{d}d")
                Yo, go = (Y.ravel(), g.ravel()) if d == 1 else (Y, g)
                t_ot = best_of(lambda: fn(Yo, go, 3, 50, 1.0, 1.0), repeat)
            ot = f"{t_ot[0] * 1e3:10.1f} / {t_ot[1] * 1e3:8.1f}" if t_ot else f"{'-':>21}"
            print(f"{d:>2} {n:>7} {t_ours[0] * 1e3:12.1f} / {t_ours[1] * 1e3:8.1f}   {ot}   boxes/dim={grid[1]}",
                  flush=True)


def cli(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("sizes", type=int, nargs="*", default=[10_000, 70_000], help="numbers of points")
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)
    main(tuple(args.sizes), n_jobs=args.n_jobs, repeat=args.repeat)


if __name__ == "__main__":
    cli()
