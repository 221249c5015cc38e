"""The torch backend end to end, stage by stage, on one device.

    python bench/bench_gpu.py --data mnist70k-raw --device cuda          # MNIST-70k, raw 784-d
    python bench/bench_gpu.py --data mnist1m --device cuda
    python bench/bench_gpu.py --data mnist10m --device cuda --no-quality  # does 10M fit?
    python bench/bench_gpu.py --data digits --device cpu                  # the torch path on the CPU (smoke test)

Stages (``torch.cuda.synchronize`` between them): ``affinities_s`` (exact kNN by
tiled brute force on the device + perplexity bisection + symmetrisation),
``init_s`` (PCA on the device), ``early_s`` (250 iterations at exaggeration 12),
``optimize_s`` (500 iterations), ``total_s``; ``knn_only_s`` times one more index
build on its own. Also the peak GPU memory (``torch.cuda.max_memory_allocated``),
peak host RSS, KL and (unless ``--no-quality``) kNN preservation, trustworthiness
and 10-NN accuracy as in ``bench_tsne.py``. A warm-up on 2,000 points runs first.
One JSON line per run.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def run(X, device, n_jobs, n_iter, ee_iter, method):
    import torch

    from turbotsne import PerplexityBasedNN, TSNEEmbedding
    from turbotsne.gpu.initialization import pca
    from turbotsne.gpu.neighbors import TorchExact

    def sync():
        if torch.cuda.is_available() and str(device).startswith("cuda"):
            torch.cuda.synchronize()

    on = dict(device=device, backend="torch")
    sync()
    t0 = time.perf_counter()
    aff = PerplexityBasedNN(X, 30, method=TorchExact(device=device), n_jobs=n_jobs, **on)
    sync()
    t1 = time.perf_counter()
    Y0 = pca(X, 2, device)
    t2 = time.perf_counter()
    emb = TSNEEmbedding(Y0, aff, negative_gradient_method=method, n_jobs=n_jobs, random_state=0, **on)
    emb.optimize(ee_iter, inplace=True, exaggeration=12, momentum=0.8)
    sync()
    t3 = time.perf_counter()
    emb.optimize(n_iter, inplace=True, exaggeration=1, momentum=0.8)
    sync()
    t4 = time.perf_counter()
    return emb, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k-raw",
                   choices=["digits", "mnist10k", "mnist70k", "mnist70k-raw", "mnist250k", "mnist1m", "mnist10m"])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--device", default="cuda")
    p.add_argument("--method", default="fft", choices=["fft", "exact"])
    p.add_argument("--n", type=int, default=0, help="use only the first N rows")
    p.add_argument("--n-jobs", type=int, default=-1)
    p.add_argument("--n-iter", type=int, default=500)
    p.add_argument("--ee-iter", type=int, default=250)
    p.add_argument("--no-quality", dest="quality", action="store_false")
    args = p.parse_args(argv)

    import torch

    X, y = common.load(args.data, args.data_dir)
    if args.n:
        X, y = X[: args.n], y[: args.n]
    run(X[:2000], args.device, args.n_jobs, 20, 20, args.method)  # warm-up: imports, CUDA context, kernels
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    emb, (t_aff, t_init, t_ee, t_opt) = run(X, args.device, args.n_jobs, args.n_iter, args.ee_iter, args.method)
    rec = {"impl": "turbotsne-torch", "device": args.device,
           "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
           "data": args.data, "n": int(X.shape[0]), "dims": int(X.shape[1]), "n_jobs": args.n_jobs,
           "affinities_s": round(t_aff, 2), "init_s": round(t_init, 2), "early_s": round(t_ee, 2),
           "optimize_s": round(t_opt, 2), "total_s": round(t_aff + t_init + t_ee + t_opt, 2),
           "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2 ** 20, 1) if torch.cuda.is_available()
           else None, "peak_rss_mb": round(common.peak_rss_mb(), 1), "kl": round(float(emb.kl_divergence), 4)}
    from turbotsne.gpu.neighbors import TorchExact

    t = time.perf_counter()
    TorchExact(device=args.device).build(X, 90)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    rec["knn_only_s"] = round(time.perf_counter() - t, 2)
    if args.quality:
        rec.update(common.quality(np.asarray(X, dtype=np.float64), np.asarray(emb), y, n_jobs=args.n_jobs))
    common.emit(rec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
