"""The attraction kernels on MNIST's P: the float64 one (the exact method's; FASTMATH without
reassociation, a scalar row loop) against the single-precision one that the approximate methods
use (float32 positions, values and arithmetic, compiled with reassociation so that LLVM
vectorises the row loop into gathers), also timed as the backend calls it (the float32 copy of
the positions made per call), and the single-precision loop compiled without reassociation
(scalar), to show what the vectorisation itself gives.

    python bench/bench_attraction.py --data mnist70k --n-jobs 2

Y: the PCA start scaled by 100 (about a finished 2-D embedding's spread; the cost does not
depend on the values), or with ``--final`` the finished embedding that
``bench/profile_gradient.py`` caches (made on the first use), where float32 rounding of positions
~100 units out matters most for the error. Prints the median of ``--repeat`` calls of each, their ratios to the
float64 kernel and the single-precision forces' largest difference from the float64 ones,
relative to the largest force.
"""
import argparse
import os
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def scalar_single_kernel():
    """The shipped single-precision kernel's code compiled without reassociation (its row
    loops are inlined into it and take its flags)."""
    from turbotsne.gradients.attractive import FORCE_FASTMATH, attractive_forces_single

    return numba.njit(parallel=True, fastmath=FORCE_FASTMATH)(attractive_forces_single.py_func)


def median_ms(fn, repeat):
    return 1e3 * common.timed(fn, repeat)[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k", choices=["mnist10k", "mnist70k", "mnist250k", "mnist1m"])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--n-components", type=int, default=2, choices=[2, 3])
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=30)
    p.add_argument("--final", action="store_true", help="time and compare on the finished embedding")
    args = p.parse_args(argv)
    import turbotsne
    from turbotsne._config import thread_limit
    from turbotsne.gradients import SparseGradient
    from turbotsne.gradients.attractive import attractive_forces, attractive_forces_single

    if args.final:
        import profile_gradient

        Y, P = profile_gradient.final_state(args.data, args.n_components, args.n_jobs, args.data_dir)
    else:
        X, _ = common.load(args.data, args.data_dir)
        P = turbotsne.PerplexityBasedNN(X, 30, n_jobs=args.n_jobs, random_state=0).P
        Y = turbotsne.initialization.pca(X, args.n_components, random_state=0) * 100.0
    y32, p32 = Y.astype(np.float32), P.data.astype(np.float32)
    out64, out32 = np.empty_like(Y), np.empty_like(Y)
    scalar = scalar_single_kernel()
    backend = SparseGradient(None, single_precision=True)
    with thread_limit(args.n_jobs):
        t64 = median_ms(lambda: attractive_forces(P.indptr, P.indices, P.data, Y, Y, 1.0, 1.0, out64), args.repeat)
        t32 = median_ms(lambda: attractive_forces_single(P.indptr, P.indices, p32, Y, y32, 1.0, 1.0, out32),
                        args.repeat)
        err = float(np.abs(out32 - out64).max() / np.abs(out64).max())
        t_call = median_ms(lambda: backend._attract(Y, P, 1.0, 1.0, out32), args.repeat)
        t_scalar = median_ms(lambda: scalar(P.indptr, P.indices, p32, Y, y32, 1.0, 1.0, out32), args.repeat)
    start = "finished embedding" if args.final else "PCA start x 100"
    print(f"{args.data} ({start}, extent {np.ptp(Y, axis=0).round(1)}): n={len(Y)}, {args.n_components}-D, {P.nnz} entries, P {P.data.dtype}, "
          f"n_jobs={args.n_jobs}: float64 {t64:.2f} ms; single precision {t32:.2f} ms ({t32 / t64:.2f}x, max "
          f"rel difference {err:.1e}), as the backend calls it (positions copied) {t_call:.2f} ms "
          f"({t_call / t64:.2f}x); single precision without reassociation (scalar) {t_scalar:.2f} ms "
          f"({t_scalar / t64:.2f}x)")


if __name__ == "__main__":
    main()
