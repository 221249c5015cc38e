"""Shared numerical settings and thread control.

One place for the numba ``fastmath`` flags (without ``nnan``/``ninf`` so that
NaN and inf checks inside kernels keep working) and the translation of
scikit-learn's ``n_jobs`` convention into a thread count that governs numba,
scipy.fft and the neighbour indexes alike. Importing it sets
``OMP_WAIT_POLICY=PASSIVE`` unless the variable is already set.
"""
from __future__ import annotations

import contextlib
import os
import sys

# numba's OpenMP workers spin after each parallel region by default and then compete for the
# cores with scipy.fft's worker threads (and torch's); sleeping waiters avoid that. Measured with
# ``python bench/bench_omp_wait.py --data mnist70k --n-jobs 2`` (figures in BENCHMARKS.md). It
# takes effect only if no OpenMP runtime has read the variable yet (turbotsne/__init__.py imports
# this module first), and a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

#: fastmath flags for every numba kernel: reassociation and contraction allowed,
#: but NaN/inf semantics kept (``nnan``/``ninf`` are deliberately absent).
FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


def cpu_count() -> int:
    """Number of CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def effective_n_jobs(n_jobs) -> int:
    """Resolve scikit-learn's ``n_jobs`` convention to a positive thread count.

    ``None`` means 1; ``-1`` all cores, ``-2`` all but one, and so on; a
    positive value is used as given (capped at the cores available).
    """
    n_cpus = cpu_count()
    if n_jobs is None:
        return 1
    n_jobs = int(n_jobs)
    if n_jobs == 0:
        raise ValueError(
            "The 'n_jobs' parameter must be a non-zero integer (-1 for all cores). Got 0 instead."
        )
    if n_jobs < 0:
        return max(1, n_cpus + 1 + n_jobs)
    return max(1, min(n_jobs, n_cpus))


@contextlib.contextmanager
def thread_limit(n_jobs):
    """Run the enclosed block with numba (and torch's CPU ops, when torch is loaded) using
    ``effective_n_jobs(n_jobs)`` threads.

    The previous thread counts are restored on exit, also on error. Yields the
    resolved thread count, which callers also hand to ``scipy.fft`` as
    ``workers``. torch is never imported here: only a process that already
    loaded it (the torch backend) has its intra-op thread count set.
    """
    import numba

    n = min(effective_n_jobs(n_jobs), numba.config.NUMBA_NUM_THREADS)
    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    torch = sys.modules.get("torch")
    torch_previous = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(effective_n_jobs(n_jobs))
    try:
        yield n
    finally:
        numba.set_num_threads(previous)
        if torch is not None:
            torch.set_num_threads(torch_previous)


def in_row_ranges(work, n_rows, n_threads, min_rows=64):
    """Call ``work(t, start, stop)`` for ``n_threads`` (fewer for small ``n_rows``) contiguous
    ranges of the rows ``0 .. n_rows - 1``, range ``t`` on thread ``t`` of a thread pool.

    The parallel loop of the kernels that a fit calls a few times (serial ``nogil`` numba
    functions over a row range): a ``parallel=True`` region costs ~0.5-1 s to compile on the
    first run (docs/design/first_run.md), a pool a few hundred microseconds per call. ``work``
    must give every row a result that does not depend on the ranges (rows independent), so
    the result does not depend on the thread count. Exceptions reach the caller.
    """
    threads = max(1, min(int(n_threads), n_rows // min_rows))
    ranges = [(t, n_rows * t // threads, n_rows * (t + 1) // threads) for t in range(threads)]
    if threads == 1:
        work(*ranges[0])
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda r: work(*r), ranges))
