"""Full gradient (sparse attraction + FFT repulsion) vs openTSNE's kl_divergence_fft, 2-D.

    PYTHONPATH=src python bench/bench_fft_gradient.py [n]
"""
import sys
import time

import numpy as np
import scipy.sparse as sp

from turbotsne._config import thread_limit
from turbotsne.gradients import make_backend


def main(n=70_000, k=90, n_jobs=2, repeat=5):
    from openTSNE.tsne import kl_divergence_fft

    rng = np.random.default_rng(0)
    Y = rng.normal(scale=30.0, size=(n, 2))
    rows = np.repeat(np.arange(n), k)
    P = sp.csr_matrix((rng.random(rows.size), (rows, rng.integers(0, n, rows.size))), shape=(n, n))
    P = P + P.T
    P = (P / P.sum()).tocsr()
    backend = make_backend("fft", P, n_jobs=n_jobs, n_components=2)
    out = np.empty_like(Y)
    params = dict(n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1)
    with thread_limit(n_jobs):
        backend.gradient(Y, P, 1.0, 1.0, out)
        ours = []
        for _ in range(repeat):
            backend.repulsion._kernel_key = None
            t = time.perf_counter()
            backend.gradient(Y, P, 1.0, 1.0, out)
            ours.append(time.perf_counter() - t)
    kl_divergence_fft(Y, P, 1.0, params, n_jobs=n_jobs)
    theirs = []
    for _ in range(repeat):
        t = time.perf_counter()
        kl_divergence_fft(Y, P, 1.0, params, n_jobs=n_jobs)
        theirs.append(time.perf_counter() - t)
    print(f"n={n}: turbotsne {min(ours) * 1e3:.1f} ms (median {np.median(ours) * 1e3:.1f}), "
          f"openTSNE {min(theirs) * 1e3:.1f} ms (median {np.median(theirs) * 1e3:.1f})")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 70_000)
