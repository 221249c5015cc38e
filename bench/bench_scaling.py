"""Time against N, side by side, and a log-log plot.

    python bench/bench_scaling.py --sizes 2000 5000 10000 20000 35000 70000 --n-jobs 2 --out docs/scaling.png

For each N, the first N rows of MNIST-70k (PCA-50) go through ``bench_tsne.py``
(turbotsne and openTSNE-FFT by default; each in its own fresh process, warmed up,
same threads, ``random_state=0``, no quality metrics). Prints the JSON lines, a
table of total times and ratios, and writes the log-log plot of total time
against N (needs matplotlib).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[2000, 5000, 10000, 20000, 35000, 70000])
    p.add_argument("--impl", nargs="+", default=["turbotsne", "openTSNE-fft"])
    p.add_argument("--n-jobs", type=int, default=2)
    p.add_argument("--out", default="docs/scaling.png")
    p.add_argument("--save", help="also write the JSON lines to this file")
    p.add_argument("--replot", help="plot the JSON lines of an earlier --save instead of running")
    args = p.parse_args(argv)
    records = []
    if args.replot:
        with open(args.replot) as f:
            records = [json.loads(line) for line in f if line.startswith("{")]
        args.sizes = sorted({r["n"] for r in records})
    for n in ([] if args.replot else args.sizes):
        cmd = [sys.executable, os.path.join(HERE, "bench_tsne.py"), "--data", "mnist70k", "--n", str(n),
               "--n-jobs", str(args.n_jobs), "--no-quality", "--impl", *args.impl]
        out = subprocess.run(cmd, capture_output=True, text=True)
        for line in out.stdout.splitlines():
            if line.startswith("{"):
                print(line, flush=True)
                records.append(json.loads(line))
        if out.returncode != 0:
            print(out.stderr[-2000:], file=sys.stderr)
    if args.save:
        with open(args.save, "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in records)
    by = {(r["impl"], r["n"]): r["total_s"] for r in records}
    ref = args.impl[0]
    print("\n| N | " + " | ".join(f"{i} total s" for i in args.impl) + " | " +
          " | ".join(f"{i} / {ref}" for i in args.impl[1:]) + " |")
    print("|" + "---|" * (1 + 2 * len(args.impl) - 1))
    for n in args.sizes:
        times = [by.get((i, n)) for i in args.impl]
        ratios = [f"{t / times[0]:.2f}" if t and times[0] else "" for t in times[1:]]
        print(f"| {n} | " + " | ".join(str(t) for t in times) + " | " + " | ".join(ratios) + " |")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4))
    for impl in args.impl:
        pts = sorted((n, t) for (i, n), t in by.items() if i == impl)
        if pts:
            ax.loglog(*zip(*pts), marker="o", label=impl)
    ax.set_xticks(args.sizes)
    ax.set_xticklabels([f"{n // 1000}k" for n in args.sizes])
    ax.minorticks_off()
    ax.set_xlabel("N (MNIST rows, PCA-50)")
    ax.set_ylabel(f"end-to-end seconds ({args.n_jobs} threads)")
    ax.set_title("t-SNE time against N, same machine and run")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
