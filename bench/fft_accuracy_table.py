import sys, time
import numpy as np
import turbotsne.gradients.fft as F
from turbotsne.gradients.exact import exact_repulsion
from turbotsne._config import thread_limit
r = np.random.default_rng(0)
centers = r.uniform(-90, 90, (10, 2))
Y = centers[r.integers(0,10,70000)] + r.normal(scale=6, size=(70000,2))
Ys = Y[:3000]; ex = np.empty_like(Ys); Zx = exact_repulsion(Ys, 1.0, ex, np.empty(3000))
with thread_limit(2):
    for kw in [dict(), dict(ints_in_interval=0.5), dict(n_interpolation_points=4), dict(n_interpolation_points=5), dict(ints_in_interval=0.7)]:
        rep = F.FFTRepulsion(**kw, n_jobs=2); out = np.empty_like(Y); rep(Y, 1.0, out)
        t = time.perf_counter()
        for _ in range(3): rep(Y, 1.0, out)
        t = (time.perf_counter()-t)/3
        o2 = np.empty_like(Ys); Z = F.FFTRepulsion(**kw)(Ys, 1.0, o2)
        print(kw, f"{t*1e3:.0f} ms", np.linalg.norm(o2/Z-ex/Zx)/np.linalg.norm(ex/Zx))
