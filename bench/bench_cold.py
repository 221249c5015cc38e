"""Cold start: the first ``TSNE().fit`` in a fresh process with an empty and with a filled numba cache.

    python bench/bench_cold.py --data mnist10k --n-jobs 2
    python bench/bench_cold.py --data digits --n-jobs 2

The package source is copied to a temporary folder, so numba's on-disk cache
(``__pycache__/*.nbi, *.nbc`` beside the sources) starts empty there. Three runs
of ``TSNE(n_jobs=..., random_state=0).fit(X)`` (default settings: Barnes-Hut
below 10,000 points, FFT from there on), each printing one JSON line:

* ``empty_cache``: a fresh process on the fresh copy (every kernel compiles),
* ``filled_cache``: another fresh process (kernels load from the cache),
* ``warm``: a second fit inside that process (nothing to load).

The time of ``import turbotsne`` is reported separately in each process. With ``--kernels``
the empty-cache run also prints, per numba function compiled, its compilation's thread CPU
time (``numba.core.event``; nested compilations counted once, in the innermost function),
largest first. :func:`new_process_fits` (one or more fits in a new process) also serves
``bench_first_run.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

HERE = pathlib.Path(__file__).resolve().parent

WORKER = r"""
import json, sys, time
if {kernels}:
    import collections
    from numba.core import event

    compile_events = []

    class Recorder(event.Listener):
        def on_start(self, ev):
            compile_events.append((time.thread_time(), 1, ev))

        def on_end(self, ev):
            compile_events.append((time.thread_time(), -1, ev))

    event.register("numba:compile", Recorder())
t0 = time.perf_counter()
import {module} as lib
t_import = time.perf_counter() - t0
sys.path.insert(0, {bench!r})
import common
X, _ = common.load({data!r}, {data_dir!r})
if {n}:
    X = X[:{n}]
for label in {labels!r}:
    t = time.perf_counter()
    lib.TSNE(n_jobs={n_jobs}, random_state=0, **{params!r}).fit(X)
    print(json.dumps({{"run": label, "fit_s": round(time.perf_counter() - t, 2), "import_s": round(t_import, 2),
                      "data": {data!r}, "n": int(X.shape[0]), "n_jobs": {n_jobs}}}), flush=True)
if {kernels}:
    own, stack = collections.defaultdict(float), []
    for ts, kind, ev in compile_events:
        fn = ev.data["dispatcher"].py_func
        if kind == 1:
            stack.append([fn.__module__ + "." + fn.__qualname__, ts, 0.0])
        else:
            name, start, inner = stack.pop()
            own[name] += ts - start - inner
            if stack:
                stack[-1][2] += ts - start
    print(json.dumps({{"run": "compile_cpu_s_total", "s": round(sum(own.values()), 2)}}))
    for name, sec in sorted(own.items(), key=lambda kv: -kv[1]):
        if sec >= 0.05:
            print(json.dumps({{"run": "compile_cpu_s", "function": name, "s": round(sec, 2)}}))
"""


def new_process_fits(labels, *, module="turbotsne", data="mnist10k", data_dir=None, n=0, n_jobs=2, params=None,
                     env=None, kernels=False):
    """Run ``module.TSNE(n_jobs=n_jobs, random_state=0, **params).fit(X)`` once per label, one
    after the other, in one new Python process (``env``: its environment); ``X`` is
    ``common.load(data)``, its first ``n`` rows when ``n``. Returns one record per fit
    (``run`` = the label, ``fit_s``, ``import_s`` = the process's ``import module``), then with
    ``kernels`` the compile times of the process's numba functions, or None after printing the
    end of the process's stderr if it failed."""
    import common

    code = WORKER.format(module=module, bench=str(HERE), data=data, data_dir=data_dir or str(common.DEFAULT_DATA),
                         n=int(n), labels=list(labels), n_jobs=n_jobs, params=dict(params or {}),
                         kernels=bool(kernels))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        print(out.stderr[-3000:], file=sys.stderr)
        return None
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="mnist10k", choices=["digits", "mnist10k", "mnist70k"])
    p.add_argument("--data-dir", default=None)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--kernels", action="store_true", help="print each numba function's compile time (empty cache)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(HERE))
    import common

    data_dir = args.data_dir or str(common.DEFAULT_DATA)
    common.load(args.data, data_dir)  # fill the PCA cache outside the timed processes
    with tempfile.TemporaryDirectory() as tmp:
        src = pathlib.Path(tmp) / "src"
        shutil.copytree(HERE.parent / "src" / "turbotsne", src / "turbotsne",
                        ignore=shutil.ignore_patterns("__pycache__"))
        env = dict(os.environ, PYTHONPATH=str(src), NUMBA_NUM_THREADS=str(max(args.n_jobs, 1)))
        for labels in (["empty_cache"], ["filled_cache", "warm"]):
            records = new_process_fits(labels, data=args.data, data_dir=data_dir, n_jobs=args.n_jobs, env=env,
                                       kernels=args.kernels and labels == ["empty_cache"])
            if records is None:
                return 1
            for rec in records:
                print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
