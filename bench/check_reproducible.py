"""Same seed, same embedding: the default ``TSNE`` fit in brand-new processes, compared bit for bit.

    python bench/check_reproducible.py --n 70000 --n-jobs 2 2 1 -1

Each run is a new Python process fitting ``TSNE(random_state=--seed, n_jobs=J)`` (all other
parameters default) on the first ``--n`` rows of MNIST-70k (PCA-50, ``common.load``). One JSON
line per run (the index "auto" chose, fit seconds, a SHA-1 of the embedding's bytes), then
whether all digests agree. Exit status 1 when they do not. The test suite checks the same on
3,000 points (tests/test_knn_default.py); this is the check at full size.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402

FIT = """
import hashlib, json, sys, time
sys.path.insert(0, {here!r})
import common
from turbotsne import TSNE
X, _ = common.load("mnist70k", {data_dir!r})
X = X[:{n}]
t = time.perf_counter()
tsne = TSNE(random_state={seed}, n_jobs={n_jobs}).fit(X)
fit_s = time.perf_counter() - t
index = tsne.tsne_embedding_.affinities.knn_index
print(json.dumps(dict(n={n}, n_jobs={n_jobs}, index=type(getattr(index, "index_", index)).__name__,
                      fit_s=round(fit_s, 2),
                      digest=hashlib.sha1(tsne.embedding_.tobytes()).hexdigest())))
"""


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=70000)
    p.add_argument("--n-jobs", type=int, nargs="+", default=[2, 2, 1, -1],
                   help="one new process per value (repeat a value to compare two runs)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    args = p.parse_args(argv)
    common.load("mnist70k", args.data_dir)  # the PCA cache, outside the runs
    records = []
    for n_jobs in args.n_jobs:
        code = FIT.format(here=str(HERE), data_dir=args.data_dir, n=args.n, seed=args.seed, n_jobs=n_jobs)
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ))
        if out.returncode != 0:
            sys.stderr.write(out.stderr)
            return 2
        records.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(records[-1]), flush=True)
    same = len({r["digest"] for r in records}) == 1
    print(json.dumps({"n": args.n, "runs": len(records), "identical": same}))
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
