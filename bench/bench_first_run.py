"""What a new user sees: each library's fit in a brand-new process, on an empty and on a filled numba cache.

    python bench/bench_first_run.py --sizes 5000 20000 70000 --n-jobs 2
    python bench/bench_first_run.py --sizes 5000 --neighbors pynndescent

Per size N (the first N rows of MNIST-70k, PCA-50 as ``common.load`` makes it), each in a new
Python process with ``NUMBA_NUM_THREADS`` / ``OMP_NUM_THREADS`` set to ``--n-jobs``:

* ``turbotsne empty``: ``NUMBA_CACHE_DIR`` at a new, empty folder, so every numba function
  compiles -- turbotsne's and those of any numba library it calls (pynndescent) -- as on
  the first run after install; ``TSNE(n_jobs, random_state=0).fit(X)``;
* ``turbotsne filled``: a new process on the folder that run filled, then ``warm``: a
  second fit in that process;
* ``openTSNE empty`` / ``openTSNE filled``: ``openTSNE.TSNE(n_jobs, random_state=0).fit(X)``
  likewise, on a folder of its own (openTSNE's neighbour search may call pynndescent).

``--neighbors`` is handed to turbotsne's ``TSNE`` (``pynndescent``: the index a default
install without the ``ann`` extra falls back to today). One JSON line per fit
(``fit_s``, and ``import_s`` of the process's ``import``), then a table per size:
``fit_s``, ``import + fit``, and the ratios of turbotsne's new-process fits to openTSNE's on
the same cache state (``/ openTSNE``; above 1: slower) and to turbotsne's warm fit
(``/ warm``), on ``fit_s``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
from bench_cold import new_process_fits  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[5000, 20000, 70000])
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--neighbors", default=None, help="turbotsne's neighbors parameter (default: its own default)")
    p.add_argument("--no-opentsne", dest="opentsne", action="store_false")
    args = p.parse_args(argv)
    common.load("mnist70k", args.data_dir)  # fill the PCA cache outside the timed processes
    params = {} if args.neighbors is None else {"neighbors": args.neighbors}
    threads = str(max(args.n_jobs, 1))
    base_env = dict(os.environ, NUMBA_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
    tables = []
    for n in args.sizes:
        runs = []
        with tempfile.TemporaryDirectory() as cache, tempfile.TemporaryDirectory() as other_cache:
            fit = dict(data="mnist70k", data_dir=args.data_dir, n=n, n_jobs=args.n_jobs)
            env = dict(base_env, NUMBA_CACHE_DIR=cache)
            for labels in (["turbotsne empty"], ["turbotsne filled", "turbotsne warm"]):
                runs += new_process_fits(labels, params=params, env=env, **fit) or []
            if args.opentsne:
                env = dict(base_env, NUMBA_CACHE_DIR=other_cache)
                for label in ("openTSNE empty", "openTSNE filled"):
                    runs += new_process_fits([label], module="openTSNE", env=env, **fit) or []
        for rec in runs:
            rec["neighbors"] = args.neighbors or "default"
            common.emit(rec)
        tables.append((n, {r["run"]: r for r in runs}))
    print(f"\nNew processes, MNIST PCA-50, n_jobs={args.n_jobs}, turbotsne neighbors={args.neighbors or 'default'}; "
          "ratios on fit_s")
    print("| N | run | fit_s | import + fit s | / openTSNE | / warm |")
    print("|---|---|---|---|---|---|")
    for n, by_run in tables:
        ref_w = by_run.get("turbotsne warm", {}).get("fit_s")
        for label in ("turbotsne empty", "turbotsne filled", "turbotsne warm", "openTSNE empty", "openTSNE filled"):
            r = by_run.get(label)
            if r is None:
                continue
            cold = label in ("turbotsne empty", "turbotsne filled")
            ref_o = by_run.get(label.replace("turbotsne", "openTSNE"), {}).get("fit_s")
            vs_o = f"{r['fit_s'] / ref_o:.2f}" if cold and ref_o else ""
            vs_w = f"{r['fit_s'] / ref_w:.2f}" if cold and ref_w else ""
            total = r["fit_s"] + r["import_s"] if label != "turbotsne warm" else ""
            print(f"| {n:,} | {label} | {r['fit_s']} | {total if total == '' else round(total, 2)} | {vs_o} | {vs_w} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
