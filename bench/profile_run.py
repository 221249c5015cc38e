"""Per-iteration cost of a whole turbotsne optimisation, per phase and per kernel (turbotsne alone).

    python bench/profile_run.py --data mnist70k --n-jobs 2

The schedule of ``bench_tsne.py``: PCA start, 250 early-exaggeration iterations (exaggeration
12) and 500 normal ones, momentum 0.8, FFT gradients, after 20 warm-up iterations on a copy.
Each kernel is timed through a wrapper (a few microseconds per call on top); prints ms per
iteration per phase: the gradient, its attraction and repulsion, the repulsion's steps (weights,
spreading, forward FFTs, kernel product, inverse FFTs, gathering, kernel spectra, bounds), the
KL terms (every 50 iterations), the update and the recentring.
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

FFT_KERNELS = ("_spread", "_gather", "_forward", "_inverse", "_apply_kernel", "_kernel_spectra", "_finite_bounds")


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k", choices=["mnist10k", "mnist70k", "mnist250k", "mnist1m"])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--n-jobs", type=int, default=2)
    args = p.parse_args(argv)
    import turbotsne
    from turbotsne import gradients, optimizer
    from turbotsne.gradients import fft

    timer = common.KernelTimes()
    for name in FFT_KERNELS:
        timer.wrap(fft, name)
    timer.wrap(fft._Interpolation, "compute", "weights")
    timer.wrap(gradients, "attractive_forces_single", "attraction")
    timer.wrap(gradients, "attractive_log_terms", "KL terms")
    timer.wrap(gradients.SparseGradient, "gradient", "GRADIENT")
    timer.wrap(fft.FFTRepulsion, "__call__", "REPULSION")
    timer.wrap(optimizer, "_step", "update")
    timer.wrap(optimizer, "_recentre", "recentre")

    X, _ = common.load(args.data, args.data_dir)
    aff = turbotsne.PerplexityBasedNN(X, 30, n_jobs=args.n_jobs, random_state=0)
    E = turbotsne.TSNEEmbedding(turbotsne.initialization.pca(X, 2, random_state=0), aff, n_jobs=args.n_jobs,
                                random_state=0, negative_gradient_method="fft")
    E.optimize(20, exaggeration=12, momentum=0.8)  # warm-up on a copy
    print(f"{args.data}: n={len(X)}, 2-D, FFT, n_jobs={args.n_jobs}, P {aff.P.data.dtype} ({aff.P.nnz} entries)")
    for phase, n_iter, exaggeration in (("early exaggeration", 250, 12.0), ("normal", 500, 1.0)):
        timer.clear()
        t = time.perf_counter()
        E.optimize(n_iter, exaggeration=exaggeration, momentum=0.8, inplace=True)
        total = time.perf_counter() - t
        print(f"{phase}: {total:.2f} s, {1e3 * total / n_iter:.2f} ms per iteration")
        for label, seconds in sorted(timer.times.items(), key=lambda kv: -kv[1]):
            print(f"   {label:16s} {1e3 * seconds / n_iter:6.2f} ms")


if __name__ == "__main__":
    main()
