"""The attraction kernel as shipped (FASTMATH without reassociation: a scalar row loop)
against the same loop compiled with reassociation (LLVM then vectorises it into gathers
of the neighbours' coordinates), and the shipped loop reading the neighbours' positions
from a float32 copy (what the approximate methods do from
``gradients.FLOAT32_NEIGHBOURS_FROM_BYTES`` on, copy included), on MNIST's P; and the shipped
loop over P's values in float64 and in float32 (the affinities' precision from
``neighbors.COMPACT_KNN_FROM_ENTRIES`` kNN entries on).

    python bench/bench_attraction.py --data mnist70k --n-jobs 2

Y: the PCA start scaled by 1e4 (the spread of a finished 2-D embedding: the cost does not
depend on the values). Prints the median of ``--repeat`` calls of each and their ratio.
"""
import argparse
import os
import sys

import numba
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def gathered_kernel():
    """The shipped kernel's own code compiled with reassociation (its row loops are inlined
    into it and take its flags)."""
    from turbotsne._config import FASTMATH
    from turbotsne.gradients.attractive import attractive_forces

    return numba.njit(parallel=True, fastmath=FASTMATH)(attractive_forces.py_func)


def median_ms(fn, repeat):
    return 1e3 * common.timed(fn, repeat)[1]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k", choices=["mnist10k", "mnist70k", "mnist250k", "mnist1m"])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=30)
    args = p.parse_args(argv)
    import turbotsne
    from turbotsne._config import thread_limit
    from turbotsne.gradients.attractive import attractive_forces

    X, _ = common.load(args.data, args.data_dir)
    P = turbotsne.PerplexityBasedNN(X, 30, n_jobs=args.n_jobs, random_state=0).P
    Y = turbotsne.initialization.pca(X, 2, random_state=0) * 1e4
    out_a, out_b = np.empty_like(Y), np.empty_like(Y)
    gathered = gathered_kernel()
    with thread_limit(args.n_jobs):
        shipped = median_ms(lambda: attractive_forces(P.indptr, P.indices, P.data, Y, Y, 1.0, 1.0, out_a),
                            args.repeat)
        vector = median_ms(lambda: gathered(P.indptr, P.indices, P.data, Y, Y, 1.0, 1.0, out_b), args.repeat)
        err = float(np.abs(out_a - out_b).max() / np.abs(out_b).max())
        y32 = np.empty(Y.shape, dtype=np.float32)

        def low():
            y32[...] = Y
            attractive_forces(P.indptr, P.indices, P.data, Y, y32, 1.0, 1.0, out_b)

        single = median_ms(low, args.repeat)
        err32 = float(np.abs(out_a - out_b).max() / np.abs(out_a).max())
        # P's values in both precisions (float32 is what the affinities give from
        # neighbors.COMPACT_KNN_FROM_ENTRIES kNN entries on), neighbour positions as the backend reads them
        R = y32 if Y.nbytes >= turbotsne.gradients.FLOAT32_NEIGHBOURS_FROM_BYTES else Y
        y32[...] = Y
        values = {}
        for dtype in (np.float64, np.float32):
            data = P.data.astype(dtype)
            values[np.dtype(dtype).name] = median_ms(
                lambda: attractive_forces(P.indptr, P.indices, data, Y, R, 1.0, 1.0, out_b), args.repeat)
    print(f"{args.data}: n={len(Y)}, {P.nnz} entries, P {P.data.dtype}, n_jobs={args.n_jobs}: shipped (scalar) "
          f"{shipped:.2f} ms, reassociated (gathers) {vector:.2f} ms ({vector / shipped:.2f}x, max rel difference "
          f"{err:.1e}), float32 neighbour positions {single:.2f} ms ({single / shipped:.2f}x, max rel difference "
          f"{err32:.1e}); P values float64 {values['float64']:.2f} ms, float32 {values['float32']:.2f} ms "
          f"({values['float32'] / values['float64']:.2f}x)")


if __name__ == "__main__":
    main()
