"""Gradient descent for t-SNE: momentum, delta-bar-delta gains, clipping, callbacks.

One loop (:func:`gradient_descent`) serves every phase; a schedule such as early
exaggeration followed by the normal regime is a sequence of calls that share one
:class:`OptimizerState`, so gains and the last update carry over between calls
(as in openTSNE). Per iteration the loop allocates nothing: the backend writes
the gradient into a preallocated array and one numba kernel applies the step.
"""
from __future__ import annotations

import logging
import time

import numba
import numpy as np

from ._config import FASTMATH, thread_limit

log = logging.getLogger(__name__)

#: delta-bar-delta gains: a coordinate whose gradient changed sign gains this much ...
GAIN_INCREASE = 0.2
#: ... the others are multiplied by this (both engines use these)
GAIN_DECAY = 0.8
#: gains never drop below this (scikit-learn's ``min_gain``)
MIN_GAIN = 0.01


class OptimizationInterrupt(KeyboardInterrupt):
    """Raised on Ctrl-C (a ``KeyboardInterrupt``, also one raised by a callback) during optimisation.

    Attributes
    ----------
    error : float or None
        The last KL divergence computed before the interrupt.
    final_embedding : ndarray
        A copy of the positions reached.
    n_iter : int
        Iterations completed in the interrupted call.
    tsne_embedding : TSNEEmbedding or None
        Set by :meth:`turbotsne.TSNE.fit`: the embedding at the interrupt, with
        its affinities, neighbour index and optimiser state intact, so that it
        can be optimised further (``ex.tsne_embedding.optimize(...)``).
    """

    def __init__(self, error, final_embedding, n_iter=0):
        super().__init__(error)
        self.error = error
        self.final_embedding = final_embedding
        self.n_iter = n_iter
        self.tsne_embedding = None


class OptimizerState:
    """What the optimiser carries between calls: per-coordinate gains and the last update."""

    def __init__(self, shape):
        self.gains = np.ones(shape, dtype=np.float64)
        self.update = np.zeros(shape, dtype=np.float64)

    def copy(self):
        new = OptimizerState.__new__(OptimizerState)
        new.gains = self.gains.copy()
        new.update = self.update.copy()
        return new


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _step(Y, grad, update, gains, learning_rate, momentum, max_grad_norm, max_step_norm, row_sq):
    """One descent step in place; ``row_sq[i]`` receives ``|grad_i|^2`` before clipping.

    Clipping is per point, as openTSNE does: the gradient of a point is scaled
    down to ``max_grad_norm`` and its step to ``max_step_norm`` (``inf`` = off).
    """
    n, d = Y.shape
    for i in numba.prange(n):
        g2 = 0.0
        for k in range(d):
            g2 += grad[i, k] * grad[i, k]
        row_sq[i] = g2
        scale = 1.0
        if g2 > max_grad_norm * max_grad_norm:
            scale = max_grad_norm / np.sqrt(g2)
        u2 = 0.0
        for k in range(d):
            g = grad[i, k] * scale
            if update[i, k] * g < 0.0:
                gains[i, k] += GAIN_INCREASE
            else:
                decayed = gains[i, k] * GAIN_DECAY
                gains[i, k] = MIN_GAIN if MIN_GAIN > decayed else decayed  # max(decayed, MIN_GAIN)
            u = momentum * update[i, k] - learning_rate * gains[i, k] * g
            update[i, k] = u
            u2 += u * u
        if u2 > max_step_norm * max_step_norm:
            s = max_step_norm / np.sqrt(u2)
            for k in range(d):
                update[i, k] *= s
        for k in range(d):
            Y[i, k] += update[i, k]


@numba.njit(fastmath=FASTMATH, cache=True)
def _recentre(Y):
    n, d = Y.shape
    for k in range(d):
        m = 0.0
        for i in range(n):
            m += Y[i, k]
        m /= n
        for i in range(n):
            Y[i, k] -= m


class NumpyOps:
    """The array operations of the loop on NumPy arrays (the numba kernels above).

    :func:`gradient_descent` is written against this small interface, so one
    loop serves both engines; :class:`turbotsne.gpu.optimizer.TorchOps` is the
    same on torch tensors.
    """

    @staticmethod
    def buffers(Y):
        """The gradient buffer and the per-point squared gradient norms."""
        return np.empty_like(Y), np.empty(Y.shape[0])

    @staticmethod
    def step(Y, grad, state, learning_rate, momentum, max_grad_norm, max_step_norm, row_sq):
        _step(Y, grad, state.update, state.gains, learning_rate, momentum, max_grad_norm, max_step_norm, row_sq)

    @staticmethod
    def recentre(Y):
        _recentre(Y)

    @staticmethod
    def grad_norm(row_sq):
        return float(np.sqrt(row_sq.sum()))

    @staticmethod
    def to_numpy(Y):
        """A NumPy copy of the positions (what callbacks and exceptions receive)."""
        return Y.copy()


def gradient_descent(Y, P, backend, state, n_iter, options, *, ops=NumpyOps, progress=None, recentre=True,
                     embedding_view=None, log_every=50):
    """Run ``n_iter`` iterations on ``Y`` in place with resolved :class:`~turbotsne.options.OptimizeOptions`.

    Returns ``(kl, n_done)``: the KL divergence at the last iteration and the
    number of iterations run (fewer when a callback or a stopping rule ends the
    run). ``embedding_view(Y)`` gives what callbacks receive (default: a copy).
    ``progress`` (e.g. :class:`turbotsne.callbacks.ProgressBar`) gets
    ``start(n_iter)``, ``update(iteration, kl_or_None)`` after every iteration
    and ``close()``. Callbacks with ``optimization_about_to_start`` have it
    called first. ``ops`` holds the array operations (:class:`NumpyOps`, or
    the torch engine's, with ``Y`` and ``state`` on its device).
    """
    o = options
    dof, callbacks = float(o.dof), o.callbacks
    grad, row_sq = ops.buffers(Y)
    mg = np.inf if o.max_grad_norm is None else float(o.max_grad_norm)
    ms = np.inf if o.max_step_norm is None else float(o.max_step_norm)
    view = embedding_view or ops.to_numpy
    kl = None
    best_kl, best_iter = np.inf, 0
    check_every = log_every if o.n_iter_without_progress is not None else None
    t0 = time.perf_counter()
    done = 0
    for cb in callbacks:
        if hasattr(cb, "optimization_about_to_start"):
            cb.optimization_about_to_start()
    if progress is not None:
        progress.start(n_iter)
    with thread_limit(o.n_jobs):
        try:
            for i in range(n_iter):
                it = i + 1
                want_cb = bool(callbacks) and it % o.callbacks_every_iters == 0
                want_log = o.verbose and it % log_every == 0
                want_check = check_every is not None and it % check_every == 0
                compute_kl = want_cb or want_log or want_check or it == n_iter
                kl_now = backend.gradient(Y, P, dof, o.exaggeration, grad, compute_kl)
                if kl_now is not None:
                    kl = kl_now
                ops.step(Y, grad, state, o.learning_rate, o.momentum, mg, ms, row_sq)
                if recentre:
                    ops.recentre(Y)
                done = it
                if progress is not None:
                    progress.update(it, kl_now)
                if want_log:
                    log.info("Iteration %4d, KL divergence %6.4f, %.2f s per 50 iterations",
                             it, kl, (time.perf_counter() - t0) * 50 / it)
                if want_cb:
                    if any(bool(cb(it, kl, view(Y))) for cb in callbacks):
                        log.info("Optimisation stopped by a callback at iteration %d", it)
                        return kl, it
                if o.min_grad_norm is not None and ops.grad_norm(row_sq) <= o.min_grad_norm:
                    log.info("Gradient norm below min_grad_norm at iteration %d; stopping", it)
                    return _final_kl(kl, compute_kl, backend, Y, P, dof, grad), it
                if want_check:
                    if kl < best_kl:
                        best_kl, best_iter = kl, it
                    elif it - best_iter > o.n_iter_without_progress:
                        log.info("No progress for %d iterations; stopping at %d", o.n_iter_without_progress, it)
                        return kl, it
        except KeyboardInterrupt as e:
            raise OptimizationInterrupt(kl, ops.to_numpy(Y), done) from e
        finally:
            if progress is not None:
                progress.close()
    return kl, n_iter


def _final_kl(kl, computed, backend, Y, P, dof, grad):
    if computed:
        return kl
    return backend.gradient(Y, P, dof, 1.0, grad, True)
