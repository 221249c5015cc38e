"""The large-data recipe on dask: fit a sample, place the rest on a LocalCluster, zarr in and out.

    python bench/bench_dask.py --n 10000000 --sample 1000000 --workers 2 --out /tmp/d --reuse-input  # the 10M run
    python bench/bench_dask.py --n 200000 --sample 20000 --workers 2          # a quick check
    python bench/bench_dask.py --n 1000000 --sample 100000 --workers 1        # throughput with 1 worker

Data: ``--n`` rows of bench/common.py's synthetic MNIST-like set (PCA-50 MNIST-70k rows
cycled plus noise, float32), written to a zarr store first (not timed). Then
``turbotsne.dask.embed`` reads it, fits ``--sample`` points in this process, places the rest
on ``--workers`` single-threaded worker processes and writes the embedding to zarr, with a
density PNG. One JSON line: each stage's seconds, peak RSS of this process and of each worker,
placement throughput (points per second per worker, and per CPU second of the workers, which a
shared host does not skew), and the 10-NN accuracy of the placed points' labels predicted from
the sample's embedding (the quality of the placement), beside the sample's own leave-one-out
10-NN accuracy against the same embedding and the quality report's (on a 10,000-point subsample).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def _synthetic(n, data_dir):
    """``n`` rows cycling through PCA-50 MNIST-70k plus 5 % noise (common.load's recipe), float32, in 1M chunks."""
    X70, y70 = common.load("mnist70k", data_dir)
    rng = np.random.default_rng(0)
    scale = (0.05 * X70.std(axis=0)).astype(np.float32)
    for s in range(0, n, 1_000_000):
        idx = np.arange(s, min(n, s + 1_000_000)) % X70.shape[0]
        yield (X70[idx] + rng.standard_normal((idx.size, X70.shape[1])) * scale).astype(np.float32), y70[idx]


def _loo_accuracy(Y, labels, rng, k=10, n_test=100_000):
    """Leave-one-out ``k``-NN label accuracy of up to ``n_test`` points of ``Y`` against all of
    ``Y`` (the reference the placed points are scored against)."""
    from sklearn.neighbors import NearestNeighbors

    test = np.sort(rng.choice(len(Y), min(len(Y), n_test), replace=False))
    _, ind = NearestNeighbors(n_neighbors=k + 1).fit(Y).kneighbors(Y[test])
    ind = np.array([row[row != i][:k] for row, i in zip(ind, test)])
    votes = labels[ind]
    pred = np.array([np.bincount(v).argmax() for v in votes])
    return float(np.mean(pred == labels[test]))


def _peak_rss_mb():
    """This process's peak resident memory (``VmHWM``: its own address space's high-water mark;
    ``ru_maxrss`` would carry over the parent's peak into a spawned worker across ``exec``)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--sample", type=int, default=1_000_000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--chunk-rows", type=int, default=100_000)
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--out", default=None, help="folder for the zarr stores and the PNG (default: a temporary one)")
    p.add_argument("--reuse-input", action="store_true",
                   help="keep the input store that an earlier run wrote to --out with the same --n")
    args = p.parse_args(argv)

    import dask.array as da
    import zarr
    from distributed import Client, LocalCluster
    from sklearn.neighbors import KNeighborsClassifier

    from turbotsne.dask import embed

    folder = args.out or tempfile.mkdtemp(prefix="bench_dask_")
    src, dst, png = (os.path.join(folder, name) for name in ("x.zarr", "y.zarr", "density.png"))
    t = time.perf_counter()
    _, y70 = common.load("mnist70k", args.data_dir)
    labels = y70[np.arange(args.n) % y70.shape[0]].astype(np.int64)  # _synthetic's labels
    if args.reuse_input and os.path.exists(src) and zarr.open(src, mode="r").shape == (args.n, 50):
        write_s = 0.0  # the store of an earlier run with the same --n and --out
    else:
        store = zarr.open(src, mode="w", shape=(args.n, 50), chunks=(args.chunk_rows, 50), dtype="f4")
        s = 0
        for block, _ in _synthetic(args.n, args.data_dir):
            store[s:s + len(block)] = block
            s += len(block)
        write_s = time.perf_counter() - t

    cluster = LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None)
    client = Client(cluster)
    try:
        t = time.perf_counter()
        result = embed(src, sample_size=args.sample, output=dst, plot=png, scheduler=cluster.scheduler_address,
                       n_jobs=args.workers, random_state=0, labels=labels, progress=False,
                       chunk_rows=args.chunk_rows)
        total_s = time.perf_counter() - t
        worker_rss = client.run(_peak_rss_mb)
        # CPU seconds of each worker process (reading, placing, writing, the plot's passes): on a
        # shared host the placement rate per CPU second is the load-independent figure per core
        worker_cpu = client.run(lambda: sum(resource.getrusage(resource.RUSAGE_SELF)[:2]))
    finally:
        client.close()
        cluster.close()

    Y = da.from_zarr(dst)
    rng = np.random.default_rng(1)
    placed = np.setdiff1d(np.arange(args.n), result.sample)
    test = np.sort(rng.choice(placed, min(placed.size, 100_000), replace=False))
    knn = KNeighborsClassifier(10, n_jobs=args.workers).fit(result.model.embedding_, labels[result.sample])
    accuracy = float(knn.score(Y[test].compute(), labels[test]))
    sample_loo = _loo_accuracy(result.model.embedding_, labels[result.sample], rng)
    n_placed = args.n - len(result.sample)
    record = {"impl": "turbotsne-dask", "n": args.n, "sample": args.sample, "workers": args.workers,
              "write_input_s": round(write_s, 1), **{k: round(v, 1) for k, v in result.timings.items()},
              "total_s": round(total_s, 1),
              "placed_per_s_per_worker": round(n_placed / result.timings["place_s"] / args.workers, 1),
              "worker_cpu_s": round(sum(worker_cpu.values()), 1),
              "placed_per_worker_cpu_s": round(n_placed / sum(worker_cpu.values()), 1),
              "client_peak_rss_mb": round(_peak_rss_mb(), 1),
              "worker_peak_rss_mb": {w.rsplit(":", 1)[-1]: round(v, 1) for w, v in worker_rss.items()},
              "placed_knn_accuracy": round(accuracy, 4),
              "sample_loo_knn_accuracy": round(sample_loo, 4),
              "sample_knn_accuracy": result.quality.get("knn_accuracy")}
    common.emit(record)
    if args.out is None:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
