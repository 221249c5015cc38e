"""One default TSNE().fit with OMP_WAIT_POLICY unset, PASSIVE and ACTIVE, in fresh processes.

    python bench/bench_omp_wait.py --data mnist70k --n-jobs 2 --repeat 3
    python bench/bench_omp_wait.py --data mnist10k --n-jobs 2 --repeat 1

``turbotsne._config`` sets ``OMP_WAIT_POLICY=PASSIVE`` at import unless the variable is already
set, so that numba's OpenMP workers sleep between parallel regions instead of spinning against
scipy.fft's threads. This script measures what that default buys: each run is a fresh process
(``OMP_NUM_THREADS`` and ``NUMBA_NUM_THREADS`` = ``--n-jobs``) that imports turbotsne, loads the
data set (``common.load``: PCA-50, cached beforehand, not timed) and times one
``TSNE(n_jobs=..., random_state=0).fit(X)`` at default settings (numba kernels loaded from the
on-disk cache inside the timed fit, the same in every run). "unset" removes the variable from
the child's environment (today that means PASSIVE, set by the import). The policies alternate
within each repeat, and each repeat starts one policy later, so that drift of a shared machine
spreads over all of them. Prints one JSON line per run, then the median time per policy and
its ratio to PASSIVE.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

POLICIES = ("unset", "PASSIVE", "ACTIVE")


def worker(args):
    t0 = time.perf_counter()
    import turbotsne

    import_s = time.perf_counter() - t0
    effective = os.environ.get("OMP_WAIT_POLICY")  # after the import's default
    X, _ = common.load(args.data, args.data_dir)
    t0 = time.perf_counter()
    turbotsne.TSNE(n_jobs=args.n_jobs, random_state=0).fit(X)
    fit_s = time.perf_counter() - t0
    import numba

    common.emit({"data": args.data, "n": int(X.shape[0]), "n_jobs": args.n_jobs, "policy": args.policy,
                 "effective_policy": effective, "threading_layer": numba.threading_layer(),
                 "import_s": round(import_s, 2), "fit_s": round(fit_s, 2)})


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist70k", choices=["digits", "mnist10k", "mnist70k", "mnist250k"])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3, help="runs per policy")
    p.add_argument("--policies", nargs="+", default=list(POLICIES), choices=POLICIES)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--policy", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    common.load(args.data, args.data_dir)  # fill the PCA cache outside the timed processes
    threads = str(max(args.n_jobs, 1))
    times = {policy: [] for policy in args.policies}
    for r in range(args.repeat):
        k = r % len(args.policies)
        for policy in args.policies[k:] + args.policies[:k]:
            env = dict(os.environ, OMP_NUM_THREADS=threads, NUMBA_NUM_THREADS=threads)
            env.pop("OMP_WAIT_POLICY", None)
            if policy != "unset":
                env["OMP_WAIT_POLICY"] = policy
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--policy", policy, "--data", args.data,
                   "--data-dir", args.data_dir, "--n-jobs", str(args.n_jobs)]
            rec = common.run_worker(cmd, policy, env)
            if rec is None:
                return 1
            common.emit(rec)
            times[policy].append(rec["fit_s"])

    import numpy as np

    medians = {policy: float(np.median(ts)) for policy, ts in times.items()}
    base = medians.get("PASSIVE")
    print(f"\n{args.data}, n_jobs={args.n_jobs}, {args.repeat} run(s) per policy; ratio = time / PASSIVE's")
    print("| OMP_WAIT_POLICY | fit s (each run) | median s | ratio |")
    print("|---|---|---|---|")
    for policy, ts in times.items():
        ratio = f"{medians[policy] / base:.3f}" if base else ""
        print(f"| {policy} | {', '.join(f'{t:.2f}' for t in ts)} | {medians[policy]:.2f} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
