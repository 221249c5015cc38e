"""Side-by-side: error (3,000 pts) and time per call (70k pts, 2 threads) of the FFT
repulsion, this tree vs an older fft.py (path in argv[1], e.g. from `git show`).

    PYTHONPATH=src python bench/experiments/fft_accuracy_compare.py /tmp/fft_old.py
"""
import importlib.util, sys, time
import numpy as np
import turbotsne.gradients.fft as F
from turbotsne.gradients.exact import exact_repulsion
from turbotsne._config import thread_limit

mods = {"new": F}
if len(sys.argv) > 1:
    spec = importlib.util.spec_from_file_location("turbotsne.gradients._fft_old", sys.argv[1])
    old = importlib.util.module_from_spec(spec); spec.loader.exec_module(old)
    mods = {"old": old, "new": F}
r = np.random.default_rng(0)
centers = r.uniform(-90, 90, (10, 2))
Y = centers[r.integers(0, 10, 70000)] + r.normal(scale=6, size=(70000, 2))
Ys = Y[:3000]; ex = np.empty_like(Ys); Zx = exact_repulsion(Ys, 1.0, ex, np.empty(3000))
variants = [dict(), dict(n_interpolation_points=4), dict(ints_in_interval=0.5)]
with thread_limit(2):
    reps = {}
    for name, M in mods.items():
        for i, kw in enumerate(variants):
            rep = M.FFTRepulsion(**kw, n_jobs=2); out = np.empty_like(Y); rep(Y, 1.0, out)
            o2 = np.empty_like(Ys); Z = M.FFTRepulsion(**kw)(Ys, 1.0, o2)
            err = np.linalg.norm(o2 / Z - ex / Zx) / np.linalg.norm(ex / Zx)
            reps[name, i] = (rep, out, err, abs(Z - Zx) / Zx, [])
    for _ in range(15):  # interleaved repeats, best of
        for key, (rep, out, *_, ts) in reps.items():
            t = time.perf_counter(); rep(Y, 1.0, out); ts.append(time.perf_counter() - t)
    for (name, i), (rep, out, err, zerr, ts) in reps.items():
        print(f"{name:4s} {str(variants[i]):32s} force err {err:.1e}  Z err {zerr:.0e}  "
              f"{min(ts) * 1e3:6.1f} ms (median {np.median(ts) * 1e3:.1f})")
