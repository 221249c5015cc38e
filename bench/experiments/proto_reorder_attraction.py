"""Prototype: does relabelling the points in reverse Cuthill-McKee order of P speed up the attraction?

    python bench/experiments/proto_reorder_attraction.py --copies 1     # MNIST-70k's P
    python bench/experiments/proto_reorder_attraction.py --copies 14    # ~1M points: 14 copies, labels shuffled

The attraction reads ``Y[j]`` for the ~90-130 neighbours ``j`` of each point; with a
random labelling those reads are random. RCM relabels the graph so that neighbours get
nearby labels; the backend would then gather ``Y`` into that order once per iteration,
run the attraction on the relabelled P and scatter the result back (two random passes
instead of ~100). Prints the relabelling cost and the attraction time both ways.
Not in the library: the relabelled P is a second copy of P (~1.4 GB at 1M points).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import reverse_cuthill_mckee

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # bench/, for common
import common  # noqa: E402


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--copies", type=int, default=1)
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args(argv)

    from turbotsne import PerplexityBasedNN
    from turbotsne._config import thread_limit
    from turbotsne.gradients.attractive import attractive_forces

    X, _ = common.load("mnist70k")
    P = PerplexityBasedNN(X, 30, n_jobs=args.n_jobs, random_state=0).P
    if args.copies > 1:
        P = sp.block_diag([P] * args.copies, format="csr")
        q = np.random.default_rng(0).permutation(P.shape[0])
        P = P[q][:, q].tocsr()
        P.sort_indices()
    n = P.shape[0]
    Y = np.random.default_rng(1).normal(size=(n, 2)) * 30
    out = np.empty_like(Y)
    t = time.perf_counter()
    perm = reverse_cuthill_mckee(P, symmetric_mode=True)
    Pp = P[perm][:, perm].tocsr()
    Pp.sort_indices()
    t_relabel = time.perf_counter() - t

    def attraction(M, Z):
        attractive_forces(M.indptr, M.indices, M.data, Z, Z, 1.0, 1.0, out)

    with thread_limit(args.n_jobs):
        attraction(P, Y)
        t = time.perf_counter()
        for _ in range(args.repeats):
            attraction(P, Y)
        plain = (time.perf_counter() - t) / args.repeats
        t = time.perf_counter()
        for _ in range(args.repeats):
            attraction(Pp, Y[perm])
            back = np.empty_like(out)
            back[perm] = out
        relabelled = (time.perf_counter() - t) / args.repeats
    print(f"n={n} nnz={P.nnz}: relabelling {t_relabel:.2f} s once; attraction {plain * 1e3:.1f} ms "
          f"-> {relabelled * 1e3:.1f} ms with RCM labels (gather and scatter included)")


if __name__ == "__main__":
    main()
