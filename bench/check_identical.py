"""Prove that embeddings are bit-identical between a baseline commit and this tree.

    python bench/check_identical.py --baseline 785e500 [--baseline-src PATH] [--mnist-exact]

Each case runs in a fresh process, once with PYTHONPATH at the baseline's ``src`` (a
temporary ``git worktree`` of the commit, or a checkout at that commit, ``--baseline-src``) and
once at this tree's ``src``: ``TSNE(negative_gradient_method=M, neighbors="exact",
random_state=0, n_jobs=2).fit_transform(X)`` for exact, bh and fft on digits and (when
``mnist10k_test.npz`` is in the data directory, PCA-50 as in ``common.load``) bh and fft
on MNIST-10k (exact behind ``--mnist-exact``: minutes); the ``TSNEEmbedding.transform``
(bh) of the last 200 digits onto the embedding of the others; and a torch-backend run
(``backend="torch", device="cpu"``, fft) on digits. One line per case: identical
(``np.array_equal``) or the largest absolute difference. Exit status 1 if any case
differs or fails. Baseline arrays are cached in ``bench/results/identical/<commit>/``,
so a re-run computes only this tree's side.
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

ROOT = common.HERE.parent
RESULTS = common.HERE / "results" / "identical"
#: case -> (data set, negative_gradient_method, extra TSNE parameters)
CASES = {
    "digits-exact": ("digits", "exact", {}),
    "digits-bh": ("digits", "bh", {}),
    "digits-fft": ("digits", "fft", {}),
    "digits-transform-bh": ("digits", "bh", {}),
    "digits-torch-fft": ("digits", "fft", dict(backend="torch", device="cpu")),
    "mnist10k-bh": ("mnist10k", "bh", {}),
    "mnist10k-fft": ("mnist10k", "fft", {}),
    "mnist10k-exact": ("mnist10k", "exact", {}),
}


def worker(case, src, data_dir, out):
    """Run one case with the turbotsne found on PYTHONPATH (which must be ``src``); save the result."""
    import turbotsne

    if not pathlib.Path(turbotsne.__file__).resolve().is_relative_to(pathlib.Path(src).resolve()):
        sys.exit(f"turbotsne was imported from {turbotsne.__file__}, not from {src}")
    data, method, extra = CASES[case]
    X, _ = common.load(data, data_dir)
    tsne = turbotsne.TSNE(negative_gradient_method=method, neighbors="exact", random_state=0, n_jobs=2, **extra)
    if case == "digits-transform-bh":
        Y = np.asarray(tsne.fit(X[:-200]).tsne_embedding_.transform(X[-200:]))
    else:
        Y = tsne.fit_transform(X)
    np.save(out, np.asarray(Y))


def run(case, src, data_dir, out):
    """Run ``case`` in a fresh process against ``src``; return the saved array, or the error text."""
    env = dict(os.environ, PYTHONPATH=str(src))
    cmd = [sys.executable, __file__, "--worker", case, "--src", str(src), "--data-dir", str(data_dir),
           "--out", str(out)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit status {proc.returncode}"
    return np.load(out)


def compare(a, b):
    if isinstance(a, str) or isinstance(b, str):
        return f"FAILED: {a if isinstance(a, str) else b}"
    if a.shape != b.shape:
        return f"DIFFERS: shape {a.shape} vs {b.shape}"
    if np.array_equal(a, b):
        return "identical"
    return f"DIFFERS: max abs difference {np.max(np.abs(a - b)):.3g}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--baseline", help="baseline commit (anything git rev-parse accepts)")
    p.add_argument("--baseline-src", help="a checkout of the baseline (its src/ is imported) instead of a "
                   "temporary worktree")
    p.add_argument("--data-dir", default=str(common.DEFAULT_DATA))
    p.add_argument("--mnist-exact", action="store_true", help="also the exact method on MNIST-10k (minutes)")
    p.add_argument("--cases", nargs="+", choices=list(CASES), help="only these cases")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--src", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args.worker, args.src, args.data_dir, args.out)
    if not args.baseline:
        p.error("--baseline is required")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--verify", args.baseline + "^{commit}"],
                            capture_output=True, text=True, check=True).stdout.strip()
    data_dir = pathlib.Path(args.data_dir)
    cases = args.cases or [c for c in CASES if not c.startswith("mnist10k")
                           or ((data_dir / "mnist10k_test.npz").exists()
                               and (c != "mnist10k-exact" or args.mnist_exact))]
    cache = RESULTS / commit
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="check_identical_"))
    worktree = None
    try:
        missing = [c for c in cases if not (cache / f"{c}.npy").exists()]
        if missing and args.baseline_src:
            base_src = pathlib.Path(args.baseline_src).resolve() / "src"
            head = subprocess.run(["git", "-C", str(base_src), "rev-parse", "HEAD"], capture_output=True,
                                  text=True).stdout.strip()
            if head != commit:  # the cache is keyed by the commit: never fill it from another tree
                p.error(f"--baseline-src {args.baseline_src} is at {head[:12] or 'no commit'}, not {commit[:12]}")
        elif missing:
            worktree = tmp / "baseline"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(worktree), commit],
                           capture_output=True, check=True)
            base_src = worktree / "src"
        print(f"# baseline {commit[:12]}: {len(cases) - len(missing)} of {len(cases)} cases cached", flush=True)
        failed = False
        for case in cases:
            if case in missing:
                base = run(case, base_src, data_dir, tmp / "base.npy")
                if not isinstance(base, str):
                    np.save(cache / f"{case}.npy", base)
            else:
                base = np.load(cache / f"{case}.npy")
            ours = run(case, ROOT / "src", data_dir, tmp / "ours.npy")
            verdict = compare(base, ours)
            failed |= verdict != "identical"
            print(f"{case:22s} {verdict}", flush=True)
    finally:
        if worktree is not None:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(worktree)],
                           capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"# {time.perf_counter() - t0:.0f} s", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
