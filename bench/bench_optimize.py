"""Optimisation phase only, side by side: turbotsne vs openTSNE (FFT and BH), same P, same start.

    python bench/bench_optimize.py --data mnist70k --impl turbotsne openTSNE-fft openTSNE-bh --n-jobs 2
    python bench/bench_optimize.py --data mnist250k --impl turbotsne openTSNE-fft openTSNE-bh --n-jobs 2 \\
        --partial-impl openTSNE-bh --partial-iters 20
    python bench/bench_optimize.py --data mnist1m --impl turbotsne openTSNE-fft openTSNE-bh --n-jobs 2 \\
        --partial-impl openTSNE-bh --partial-iters 10

This process computes P once (turbotsne's ``PerplexityBasedNN``, perplexity
30, ``random_state=0``) and the initial embedding once (turbotsne's PCA
initialisation, std 1e-4) and hands both to every implementation, so that
only the gradient descent differs. Each implementation then runs in its own
fresh process (its peak RSS, ``VmHWM``, is its own: P, Y0, the warm-up and
the optimisation), with the same threads (``OMP_NUM_THREADS`` /
``NUMBA_NUM_THREADS`` = ``--n-jobs`` and ``n_jobs``); it is first warmed up
on the 2,000 x 2,000 corner of P (renormalised), 20 + 20 iterations, then
runs the schedule:

* early exaggeration: ``--ee-iter`` iterations at exaggeration
  ``--exaggeration`` (12), momentum ``--ee-momentum`` (0.8), learning rate
  N / exaggeration;
* normal regime: ``--n-iter`` iterations at exaggeration 1, momentum
  ``--momentum`` (0.8), learning rate N.

These are ``bench_tsne.py``'s schedule and both libraries' ``"auto"`` learning
rate (N / exaggeration in openTSNE 1.0.4 and turbotsne), passed to both as
explicit floats (``--learning-rate`` fixes one value for both phases
instead); ``max_grad_norm=None``, ``max_step_norm=5``, ``theta=0.5`` and the
FFT grid (3 interpolation points, at least 50 intervals) are passed
explicitly too. Both libraries' ``optimize`` also update gains and recentre
every step; they differ only in details of the gain rule (openTSNE
``0.8 g + 0.01``, turbotsne ``max(0.8 g, 0.01)``; on the first step, with no
last update, openTSNE raises the gains by 0.2 and turbotsne lowers them), and
openTSNE evaluates one
extra gradient (for its KL) at the end of every ``optimize`` call, which is
part of its timed phase.

Each phase is timed with ``time.perf_counter`` around its ``optimize`` call.
``kl`` is the KL divergence of each final embedding under the shared P,
computed here with one function for all (turbotsne's exact O(N^2) sum up to
``--kl-exact-max`` points, 70,000 by default, its FFT-interpolated one above:
the two agree to ~1e-5 relative on digits and MNIST-10k embeddings);
``kl_own`` is what each library reported (turbotsne's is that of the
embedding before the last step, openTSNE's of the final one).

``--partial-impl IMPL --partial-iters K`` (for openTSNE-BH at 250k / 1M):
that implementation times only K iterations of each phase -- the first K of
early exaggeration from Y0, then K normal-regime iterations from the
embedding the first full run (turbotsne, normally) had after early
exaggeration and K from its final embedding (the mean of the two is
``normal_ms_iter``; optimiser state fresh). Its record is marked
``"partial": true``, has no KL, and its ``optimize_s`` is the estimate
``ee_iter x early_ms_iter + n_iter x normal_ms_iter``. Full runs go first.

``turbotsne`` is its ``"auto"`` method (FFT from 10,000 points in 2-D,
Barnes-Hut below; ``method`` in the record says which), ``turbotsne-fft`` /
``turbotsne-bh`` name one.

One JSON line per implementation; at the end a table with the ratios of each
time to turbotsne's (the first turbotsne* implementation listed).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

IMPLS = ["turbotsne", "turbotsne-fft", "turbotsne-bh", "openTSNE-fft", "openTSNE-bh"]
#: gradient settings passed to both libraries (both libraries' defaults, made explicit)
GRADIENT = dict(theta=0.5, n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1, dof=1)
STEP = dict(max_grad_norm=None, max_step_norm=5)
WARMUP_N = 2000


# -- the worker side: one implementation in its own process ----------------------------

def _method(impl, n):
    """(library, gradient method); plain "turbotsne" is its "auto" at the full size (FFT from 10,000 points)."""
    lib, _, method = impl.partition("-")
    if not method:
        from turbotsne.engine import NUMBA

        method = NUMBA.auto_method(n, 2)
    return lib, method


def _embedding(impl, Y, P, n_jobs, method):
    """A fresh embedding of ``impl`` at ``Y`` with affinities ``P`` (optimiser state new)."""
    lib = impl.partition("-")[0]
    if lib == "turbotsne":
        from turbotsne import TSNEEmbedding
        from turbotsne.affinity import Affinities

        aff = Affinities()
        aff.P = P
        return TSNEEmbedding(Y, aff, negative_gradient_method=method, n_jobs=n_jobs, random_state=0,
                             **GRADIENT, **STEP)
    from openTSNE import TSNEEmbedding
    from openTSNE.affinity import Affinities

    aff = Affinities()
    aff.P = P
    return TSNEEmbedding(np.array(Y, dtype=np.float64, copy=True), aff, negative_gradient_method=method,
                         n_jobs=n_jobs, random_state=0, **GRADIENT, **STEP)


def _optimize(emb, n_iter, exaggeration, momentum, learning_rate):
    """``n_iter`` iterations in place; returns (embedding, seconds). Same call for both libraries."""
    t = time.perf_counter()
    emb = emb.optimize(n_iter, inplace=True, exaggeration=exaggeration, momentum=momentum,
                       learning_rate=learning_rate)
    return emb, time.perf_counter() - t


def _schedule(impl, method, Y0, P, a, ee_iter, n_iter):
    """Early exaggeration then the normal regime; returns (Y after EE, final emb, t_ee, t_normal)."""
    n = P.shape[0]
    lr_ee, lr = _learning_rates(n, a)
    emb = _embedding(impl, Y0, P, a.n_jobs, method)
    emb, t_ee = _optimize(emb, ee_iter, a.exaggeration, a.ee_momentum, lr_ee)
    Y_ee = np.array(emb, dtype=np.float64, copy=True)
    emb, t_n = _optimize(emb, n_iter, 1.0, a.momentum, lr)
    return Y_ee, emb, t_ee, t_n


def _learning_rates(n, a):
    if a.learning_rate is not None:
        return float(a.learning_rate), float(a.learning_rate)
    # "auto" of both libraries: N / exaggeration (turbotsne floors it at 1)
    return max(n / a.exaggeration, 1.0), max(n / 1.0, 1.0)


def worker(a):
    impl = a.impl_one
    P = sp.load_npz(os.path.join(a.tmp, "P.npz")).tocsr()
    Y0 = np.load(os.path.join(a.tmp, "Y0.npy"))
    n = P.shape[0]
    method = _method(impl, n)[1]  # resolved at the full size: the warm-up compiles the same kernels
    # warm-up (numba compilation / loading, imports, FFT plans) on the corner of P
    m = min(WARMUP_N, n)
    Pw = P[:m, :m].tocsr()
    Pw.data /= Pw.data.sum()
    _schedule(impl, method, Y0[:m], Pw, a, 20, 20)
    del Pw

    rec = {"impl": impl, "method": method, "data": a.data, "n": int(n), "n_jobs": a.n_jobs, "ee_iter": a.ee_iter,
           "n_iter": a.n_iter}
    lr_ee, lr = _learning_rates(n, a)
    rec.update(learning_rate_ee=lr_ee, learning_rate=lr, exaggeration=a.exaggeration, ee_momentum=a.ee_momentum,
               momentum=a.momentum)
    if not a.partial_iters:
        Y_ee, emb, t_ee, t_n = _schedule(impl, method, Y0, P, a, a.ee_iter, a.n_iter)
        np.save(os.path.join(a.tmp, f"Yee_{impl}.npy"), Y_ee)
        np.save(os.path.join(a.tmp, f"Y_{impl}.npy"), np.asarray(emb, dtype=np.float64))
        kl_own = emb.kl_divergence
        rec.update(partial=False, early_s=round(t_ee, 3), normal_s=round(t_n, 3), optimize_s=round(t_ee + t_n, 3),
                   early_ms_iter=round(1e3 * t_ee / max(a.ee_iter, 1), 2),
                   normal_ms_iter=round(1e3 * t_n / max(a.n_iter, 1), 2),
                   kl_own=None if kl_own is None else round(float(kl_own), 4))
    else:
        k = a.partial_iters
        emb = _embedding(impl, Y0, P, a.n_jobs, method)
        emb, t_ee = _optimize(emb, k, a.exaggeration, a.ee_momentum, lr_ee)
        seg = []
        if a.normal_start:
            for path in a.normal_start:  # from the reference's embedding after EE and its final one
                e = _embedding(impl, np.load(path), P, a.n_jobs, method)
                seg.append(_optimize(e, k, 1.0, a.momentum, lr)[1])
            rec["normal_from"] = a.normal_from
        else:  # no full run to borrow from: carry on from this run's own (short) early exaggeration
            seg.append(_optimize(emb, k, 1.0, a.momentum, lr)[1])
            rec["normal_from"] = f"own {k} early-exaggeration iterations"
        ee_ms = 1e3 * t_ee / k
        n_ms = 1e3 * float(np.mean(seg)) / k
        rec.update(partial=True, partial_iters=k, early_ms_iter=round(ee_ms, 2), normal_ms_iter=round(n_ms, 2),
                   normal_ms_iter_segments=[round(1e3 * s / k, 2) for s in seg],
                   early_s=round(ee_ms * a.ee_iter / 1e3, 3), normal_s=round(n_ms * a.n_iter / 1e3, 3),
                   optimize_s=round((ee_ms * a.ee_iter + n_ms * a.n_iter) / 1e3, 3))
    rec["peak_rss_mb"] = round(common.peak_rss_mb(), 1)
    common.emit(rec)


# -- the parent side ---------------------------------------------------------------------

def kl_under_P(Y, P, n_jobs, exact_max):
    """KL(P || Q) of ``Y`` under the shared P: exact O(N^2) up to ``exact_max`` points, else FFT."""
    from turbotsne._config import thread_limit
    from turbotsne.gradients import make_backend

    method = "exact" if P.shape[0] <= exact_max else "fft"
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    backend = make_backend(method, P, n_jobs=n_jobs, n_components=Y.shape[1])
    with thread_limit(n_jobs):
        kl = backend.gradient(Y, P, 1.0, 1.0, np.empty_like(Y), True)
    return float(kl), method


def main(argv=None):
    p = common.data_parser(__doc__.splitlines()[0], IMPLS, ["turbotsne", "openTSNE-fft", "openTSNE-bh"])
    p.add_argument("--ee-iter", type=int, default=250)
    p.add_argument("--n-iter", type=int, default=500)
    p.add_argument("--exaggeration", type=float, default=12.0)
    p.add_argument("--ee-momentum", type=float, default=0.8)
    p.add_argument("--momentum", type=float, default=0.8)
    p.add_argument("--learning-rate", type=float, default=None,
                   help="one learning rate for both phases (default: N / exaggeration, then N)")
    p.add_argument("--partial-impl", nargs="*", default=[], choices=IMPLS,
                   help="implementations that time only --partial-iters iterations of each phase")
    p.add_argument("--partial-iters", type=int, default=20)
    p.add_argument("--kl-exact-max", type=int, default=70_000,
                   help="exact KL up to this many points, FFT-interpolated above")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl-one", help=argparse.SUPPRESS)
    p.add_argument("--tmp", help=argparse.SUPPRESS)
    p.add_argument("--normal-start", nargs="*", help=argparse.SUPPRESS)
    p.add_argument("--normal-from", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        return worker(args)

    from turbotsne import PerplexityBasedNN
    from turbotsne.initialization import pca

    X, _ = common.load(args.data, args.data_dir)
    if args.n:
        X = X[: args.n]
    n = X.shape[0]
    t = time.perf_counter()
    P = PerplexityBasedNN(X, 30, n_jobs=args.n_jobs, random_state=0).P
    t_aff = time.perf_counter() - t
    Y0 = pca(X, 2, random_state=0)
    del X
    print(f"# {args.data}: n={n}, P nnz={P.nnz} (sum {P.sum():.6f}) in {t_aff:.1f} s; Y0 std {Y0[:, 0].std():.1e}",
          file=sys.stderr, flush=True)

    env = dict(os.environ, OMP_NUM_THREADS=str(args.n_jobs), NUMBA_NUM_THREADS=str(max(args.n_jobs, 1)))
    order = [i for i in args.impl if i not in args.partial_impl] + [i for i in args.impl if i in args.partial_impl]
    records = {}
    with tempfile.TemporaryDirectory(prefix="bench_optimize_") as tmp:
        sp.save_npz(os.path.join(tmp, "P.npz"), P, compressed=False)
        np.save(os.path.join(tmp, "Y0.npy"), Y0)
        base = [sys.executable, os.path.abspath(__file__), "--worker", "--tmp", tmp, "--data", args.data,
                "--n-jobs", str(args.n_jobs), "--ee-iter", str(args.ee_iter), "--n-iter", str(args.n_iter),
                "--exaggeration", repr(args.exaggeration), "--ee-momentum", repr(args.ee_momentum),
                "--momentum", repr(args.momentum)]
        if args.learning_rate is not None:
            base += ["--learning-rate", repr(args.learning_rate)]
        ref_full = None  # the first full run: its embeddings start the partial runs' normal phase
        for impl in order:
            cmd = base + ["--impl-one", impl]
            if impl in args.partial_impl:
                cmd += ["--partial-iters", str(args.partial_iters)]
                if ref_full is not None:
                    cmd += ["--normal-start", os.path.join(tmp, f"Yee_{ref_full}.npy"),
                            os.path.join(tmp, f"Y_{ref_full}.npy"),
                            "--normal-from", f"{ref_full}'s embedding after early exaggeration and its final one"]
            else:
                cmd += ["--partial-iters", "0"]
            rec = common.run_worker(cmd, impl, env)
            if rec is None:
                continue
            rec["affinities_s"] = round(t_aff, 2)
            if not rec["partial"]:
                ref_full = ref_full or impl
                kl, how = kl_under_P(np.load(os.path.join(tmp, f"Y_{impl}.npy")), P, args.n_jobs,
                                     args.kl_exact_max)
                rec.update(kl=round(kl, 4), kl_method=how)
            common.emit(rec)
            records[impl] = rec
    if not records:
        return 1
    recs = [records[i] for i in args.impl if i in records]
    ref = next((r for r in recs if r["impl"].startswith("turbotsne")), recs[0])

    def ratio(r, key):
        return f"{r[key] / ref[key]:.2f}" if ref[key] else ""

    print(f"\n{args.data}, n={ref['n']}, n_jobs={args.n_jobs}, {args.ee_iter} + {args.n_iter} iterations, "
          f"same P and Y0; ratio = time / time of {ref['impl']}"
          + (f"; ~ = estimated from {args.partial_iters} iterations per phase" if any(r["partial"] for r in recs)
             else ""))
    print("| impl | early ms/iter | normal ms/iter | optimisation s | KL (shared P) | peak RSS MB "
          "| early ratio | normal ratio | total ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in recs:
        mark = "~" if r["partial"] else ""
        print(f"| {r['impl']} ({r['method']}) | {mark}{r['early_ms_iter']} | {mark}{r['normal_ms_iter']} | {mark}{r['optimize_s']} "
              f"| {r.get('kl', '')} | {r['peak_rss_mb']} | {mark}{ratio(r, 'early_ms_iter')} "
              f"| {mark}{ratio(r, 'normal_ms_iter')} | {mark}{ratio(r, 'optimize_s')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
