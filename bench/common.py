"""Shared helpers of the benchmarks: data sets, peak memory, quality figures, JSON lines.

Data sets live in ``../shared/data`` (override with ``--data-dir`` or the
``TURBOTSNE_DATA`` environment variable): ``digits``, ``mnist10k``, ``mnist70k``,
and synthetic scale sets ``mnist250k`` / ``mnist1m`` made reproducibly from
MNIST-70k (recipe in :func:`load`). Every set is reduced to 50 dimensions by
``PCA(50, svd_solver="full", random_state=0)`` before t-SNE, the same for all
libraries (``digits`` has 64 features and is used as is).
"""
from __future__ import annotations

import json
import os
import pathlib
import resource
import sys
import time

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
DEFAULT_DATA = pathlib.Path(os.environ.get("TURBOTSNE_DATA", HERE.parent.parent / "shared" / "data"))
#: PCA results are cached here (git-ignored)
CACHE = HERE / "results" / "cache"


def _status_mb(field):
    """A memory figure of /proc/self/status (``VmHWM``, ``VmRSS``) in MB; None where unreadable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb():
    """Peak resident set size of this process so far, in MB: ``VmHWM`` from /proc (Linux), which
    starts afresh at exec. ``ru_maxrss`` is the fallback elsewhere; Linux carries it over from the
    parent through fork + exec, so a worker would report at least its parent's peak."""
    peak = _status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss():
    """Restart the peak RSS count (``VmHWM``) from the current RSS (Linux >= 4.0: writing 5 to
    /proc/self/clear_refs), so that a later :func:`peak_rss_mb` excludes what came before, such
    as generating a synthetic data set. Returns the current RSS in MB (None where unsupported)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status_mb("VmRSS")


def data_parser(description, impls, default_impls):
    """The arguments every side-by-side benchmark takes: ``--data``, ``--data-dir``, ``--impl``,
    ``--n`` (first N rows only), ``--n-jobs``."""
    import argparse

    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default="mnist10k", choices=["digits", "mnist10k", "mnist70k", "mnist250k", "mnist1m"])
    p.add_argument("--data-dir", default=str(DEFAULT_DATA))
    p.add_argument("--impl", nargs="+", default=default_impls, choices=impls)
    p.add_argument("--n", type=int, default=0, help="use only the first N rows")
    p.add_argument("--n-jobs", type=int, default=2)
    return p


def pca50(X, cache=None):
    """PCA to 50 dimensions; with ``cache`` (a path) the result is kept in a .npy file, so that
    the peak memory of a benchmark run is the library's, not the full SVD's."""
    if cache is not None and pathlib.Path(cache).exists():
        return np.load(cache)
    from sklearn.decomposition import PCA

    Z = PCA(50, svd_solver="full", random_state=0).fit_transform(X.astype(np.float64))
    if cache is not None:
        pathlib.Path(cache).parent.mkdir(parents=True, exist_ok=True)
        np.save(cache, Z)
    return Z


def load(name, data_dir=DEFAULT_DATA):
    """Return ``(X, y)`` of a named benchmark set (PCA-50 except digits).

    ``mnist250k`` / ``mnist1m`` / ``mnist10m``: the PCA-50 MNIST-70k rows repeated
    (250,000 / 1,000,000 / 10,000,000 rows, cycling through the 70,000) plus Gaussian
    noise with standard deviation 0.05 x the per-feature standard deviation, from
    ``numpy.random.default_rng(0)`` -- every row is distinct and the class
    structure is MNIST's (``mnist10m`` is float32: 2 GB). ``mnist70k-raw``: the
    784 raw pixel columns (float32), no PCA.
    """
    data_dir = pathlib.Path(data_dir)
    if name == "digits":
        d = np.load(data_dir / "digits.npz")
        return d["X"].astype(np.float64), d["y"]
    if name == "mnist10k":
        d = np.load(data_dir / "mnist10k_test.npz")
        return pca50(d["X"], CACHE / "mnist10k_pca50.npy"), d["y"]
    if name == "mnist70k-raw":
        d = np.load(data_dir / "mnist70k.npz")
        return d["X"].astype(np.float32), d["y"]
    if name in ("mnist70k", "mnist250k", "mnist1m", "mnist10m"):
        d = np.load(data_dir / "mnist70k.npz")
        X, y = pca50(d["X"], CACHE / "mnist70k_pca50.npy"), d["y"]
        if name == "mnist70k":
            return X, y
        n = {"mnist250k": 250_000, "mnist1m": 1_000_000, "mnist10m": 10_000_000}[name]
        rng = np.random.default_rng(0)
        scale = 0.05 * X.std(axis=0)
        if name == "mnist10m":  # in chunks, float32: the float64 version would need 8 GB
            out = np.empty((n, X.shape[1]), dtype=np.float32)
            for s in range(0, n, 1_000_000):
                idx = np.arange(s, min(n, s + 1_000_000)) % X.shape[0]
                out[s:s + len(idx)] = X[idx] + rng.standard_normal((len(idx), X.shape[1])) * scale
            return out, y[np.arange(n) % X.shape[0]]
        idx = np.arange(n) % X.shape[0]
        noise = rng.standard_normal((n, X.shape[1])) * scale
        return X[idx] + noise, y[idx]
    raise ValueError(f"unknown data set {name!r}")


def knn_preservation(X, Y, k=10, n_jobs=1, sample=None, seed=0):
    """Mean fraction of each point's k input-space neighbours that are among its k embedding neighbours."""
    from turbotsne.neighbors import Exact

    n = X.shape[0]
    rows = np.arange(n) if sample is None or sample >= n else np.random.default_rng(seed).choice(n, sample, False)
    ix = Exact(n_jobs=n_jobs).fit(X).query(X[rows], k + 1)[0]
    iy = Exact(n_jobs=n_jobs).fit(Y).query(Y[rows], k + 1)[0]
    hits = 0
    for r, a, b in zip(rows, ix, iy):
        hits += len((set(a) - {r}) & (set(b) - {r}))
    return hits / (len(rows) * k)


def quality(X, Y, y, *, n_jobs=1, trust_sample=5000, seed=0):
    """kNN preservation (10), trustworthiness on a subsample, 10-NN accuracy (half/half split)."""
    from sklearn.manifold import trustworthiness
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(seed)
    n = X.shape[0]
    sub = rng.choice(n, min(n, trust_sample), replace=False)
    perm = rng.permutation(n)
    half = n // 2
    knn = KNeighborsClassifier(10, n_jobs=n_jobs).fit(Y[perm[:half]], y[perm[:half]])
    test = perm[half:][:20000]
    return {
        "knn_preservation": round(knn_preservation(X, Y, 10, n_jobs=n_jobs, sample=20000), 4),
        "trustworthiness": round(float(trustworthiness(X[sub], Y[sub], n_neighbors=10)), 4),
        "knn_accuracy": round(float(knn.score(Y[test], y[test])), 4),
    }


def timed(fn, repeat):
    """``(best, median)`` seconds of ``repeat`` calls of ``fn`` after one warm-up call."""
    fn()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts))


class KernelTimes:
    """Wall time per label of functions replaced on their owners (modules or classes) by timing
    wrappers: ``wrap(owner, name, label)``; ``times`` holds the seconds, ``clear()`` resets them.
    Callers must look the functions up on the owner at call time (module globals do)."""

    def __init__(self):
        import collections

        self.times = collections.defaultdict(float)

    def wrap(self, owner, name, label=None):
        import functools

        fn = getattr(owner, name)
        times, label = self.times, label or name

        @functools.wraps(fn)
        def timed_call(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                times[label] += time.perf_counter() - t

        setattr(owner, name, timed_call)

    def clear(self):
        self.times.clear()


def run_worker(cmd, impl, env=None):
    """Run one benchmark worker process; return the record of its last JSON line, or None
    (after printing the tail of its stderr) if it failed or printed none."""
    import subprocess

    out = subprocess.run(cmd, env=env, capture_output=True, text=True)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if out.returncode != 0 or not lines:
        print(f"# {impl} failed:\n{out.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(lines[-1])


def emit(record):
    print(json.dumps(record), flush=True)
    sys.stdout.flush()
