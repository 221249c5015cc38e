"""Per-kernel split of one FFT gradient call on a finished MNIST embedding (turbotsne alone).

    python bench/profile_gradient.py --data mnist70k --n-components 2 --n-jobs 2

The first run embeds the data (250 + 500 iterations, default settings) and caches the final
positions and P under ``bench/results/cache``; then 20 gradient calls are timed, each FFT
kernel through a timing wrapper, and the attraction on its own.
"""
import argparse
import os
import sys

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

KERNELS = ("_spread", "_gather", "_forward", "_inverse", "_apply_kernel", "_near_field", "_cells",
           "_sort_by_box", "_cell_sorted")


def final_state(name, d, n_jobs, data_dir):
    import turbotsne

    path = common.CACHE / f"final_{name}_{d}d.npz"
    if not path.exists():
        X, _ = common.load(name, data_dir)
        aff = turbotsne.PerplexityBasedNN(X, 30, n_jobs=n_jobs, random_state=0)
        E = turbotsne.TSNEEmbedding(turbotsne.initialization.pca(X, d, random_state=0), aff,
                                    n_jobs=n_jobs, random_state=0, negative_gradient_method="fft")
        E.optimize(250, exaggeration=12, momentum=0.5, inplace=True)
        E.optimize(500, momentum=0.8, inplace=True)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, Y=np.asarray(E), data=aff.P.data, indices=aff.P.indices, indptr=aff.P.indptr)
    z = np.load(path)
    n = len(z["Y"])
    return z["Y"], sp.csr_matrix((z["data"], z["indices"], z["indptr"]), shape=(n, n))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k", choices=["mnist10k", "mnist70k", "mnist250k"])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--n-components", type=int, default=2, choices=[1, 2, 3])
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args(argv)
    from turbotsne._config import thread_limit
    from turbotsne.gradients import fft, make_backend

    Y, P = final_state(args.data, args.n_components, args.n_jobs, args.data_dir)
    timer = common.KernelTimes()
    times = timer.times
    for name in KERNELS:
        timer.wrap(fft, name)
    timer.wrap(fft._Interpolation, "compute", "weights (compute)")
    backend = make_backend("fft", P, n_jobs=args.n_jobs, n_components=args.n_components)
    out = np.empty_like(Y)
    with thread_limit(args.n_jobs):
        for _ in range(3):
            backend.gradient(Y, P, 1.0, 1.0, out)
        times.clear()
        total = common.timed(lambda: backend.gradient(Y, P, 1.0, 1.0, out), args.repeat)[1]
        per_call = {k: v / (args.repeat + 1) for k, v in times.items()}  # timed() adds a warm-up call
        att = common.timed(lambda: backend._attract(Y, P, 1.0, 1.0, out), args.repeat)[1]  # as the backend calls it
    print(f"{args.data}, {args.n_components}-D, extent {np.ptp(Y, axis=0).round(1)}, n_jobs={args.n_jobs}: "
          f"gradient {total * 1e3:.1f} ms (median), attraction alone {att * 1e3:.1f} ms")
    for k, v in sorted(per_call.items(), key=lambda kv: -kv[1]):
        print(f"  {k:18s} {v * 1e3:7.2f} ms")


if __name__ == "__main__":
    main()
