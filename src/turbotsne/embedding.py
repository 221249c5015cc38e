"""The embedding object: coordinates + affinities + optimiser state.

:class:`TSNEEmbedding` is a plain class (not an ndarray subclass):
``np.asarray(embedding)`` gives the coordinates. It keeps the affinities, the
gradient-method settings and the optimiser state (gains, last update), so that
``optimize`` can be called again and carries on where the last call stopped;
any schedule (early exaggeration, late exaggeration, ...) is a sequence of
``optimize`` calls.
"""
from __future__ import annotations

import copy
import logging

import numpy as np

from . import gradients
from ._validation import check_callbacks, check_gradient_options, check_scalar
from .callbacks import make_progress
from .optimizer import OptimizerState, gradient_descent, resolve_learning_rate

log = logging.getLogger(__name__)

_GRADIENT_DEFAULTS = dict(
    negative_gradient_method="auto", dof=1, theta=0.5, n_interpolation_points=3, min_num_intervals=50,
    ints_in_interval=1, max_grad_norm=None, max_step_norm=5, n_jobs=1, callbacks=None,
    callbacks_every_iters=50, verbose=False, min_grad_norm=None, n_iter_without_progress=None,
)


class TSNEEmbedding:
    """A t-SNE embedding that can be optimised further.

    Parameters
    ----------
    embedding : array of shape (n_samples, n_components)
        Initial coordinates (copied).
    affinities : turbotsne.affinity.Affinities
        Holds ``P`` (CSR, or dense for the exact method).
    **gradient_descent_params
        Defaults for :meth:`optimize` (``negative_gradient_method``, ``dof``,
        ``theta``, ``n_interpolation_points``, ``min_num_intervals``,
        ``ints_in_interval``, ``max_grad_norm``, ``max_step_norm``, ``n_jobs``,
        ``callbacks``, ``callbacks_every_iters``, ``verbose``, ``min_grad_norm``,
        ``n_iter_without_progress``).
    """

    def __init__(self, embedding, affinities, random_state=None, **gradient_descent_params):
        unknown = set(gradient_descent_params) - set(_GRADIENT_DEFAULTS)
        if unknown:
            raise TypeError(f"TSNEEmbedding got unexpected parameters {sorted(unknown)}.")
        self.embedding = np.array(embedding, dtype=np.float64, order="C", copy=True)
        if self.embedding.ndim != 2:
            raise ValueError(f"The embedding must be a 2-D array, got shape {self.embedding.shape}.")
        self.affinities = affinities
        self.random_state = random_state
        self.gradient_descent_params = {**_GRADIENT_DEFAULTS, **gradient_descent_params}
        self.optimizer_state = OptimizerState(self.embedding.shape)
        self.kl_divergence = None
        self.n_iter = 0
        self.learning_rate = None

    # -- array protocol -------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        if dtype is None:
            return self.embedding.copy() if copy else self.embedding
        return self.embedding.astype(dtype, copy=bool(copy) or dtype != self.embedding.dtype)

    @property
    def shape(self):
        return self.embedding.shape

    def __len__(self):
        return self.embedding.shape[0]

    def __repr__(self):
        kl = "not optimised" if self.kl_divergence is None else f"KL={self.kl_divergence:.4f}"
        return f"TSNEEmbedding(n_samples={self.shape[0]}, n_components={self.shape[1]}, {kl})"

    @property
    def P(self):
        return self.affinities.P

    # -- optimisation ---------------------------------------------------------------
    def optimize(self, n_iter, inplace=False, propagate_exception=False, *, learning_rate="auto",
                 exaggeration=None, momentum=0.8, **gradient_descent_params):
        """Run ``n_iter`` iterations of gradient descent and return the optimised embedding.

        ``learning_rate="auto"`` is ``N / exaggeration``. ``exaggeration=None``
        means 1. With ``inplace=False`` (default) a new embedding is returned and
        this one is left unchanged. On Ctrl-C an
        :class:`~turbotsne.optimizer.OptimizationInterrupt` carrying the last
        coordinates is raised when ``propagate_exception`` is true; otherwise
        the embedding keeps the coordinates reached and is returned.
        """
        unknown = set(gradient_descent_params) - set(_GRADIENT_DEFAULTS)
        if unknown:
            raise TypeError(f"optimize() got unexpected parameters {sorted(unknown)}.")
        params = {**self.gradient_descent_params, **gradient_descent_params}
        owner = "TSNEEmbedding.optimize"
        n_iter = check_scalar(n_iter, "n_iter", owner, int, low=0, closed="left")
        exaggeration = check_scalar(exaggeration, "exaggeration", owner, float, low=0.0, allow_none=True) or 1.0
        momentum = check_scalar(momentum, "momentum", owner, float, low=0.0, high=1.0, closed="left")
        learning_rate = check_scalar(learning_rate, "learning_rate", owner, float, low=0.0, options=("auto",))
        check_gradient_options(owner, **{k: params[k] for k in (
            "dof", "theta", "n_interpolation_points", "min_num_intervals", "ints_in_interval",
            "max_grad_norm", "max_step_norm", "callbacks_every_iters", "n_jobs")})
        callbacks = check_callbacks(params["callbacks"], owner)
        method = gradients.canonical_method(params["negative_gradient_method"])

        target = self if inplace else self._copy()
        n, d = target.embedding.shape
        lr = resolve_learning_rate(learning_rate, n, exaggeration)
        backend = gradients.make_backend(
            method, target.P, theta=params["theta"], n_interpolation_points=params["n_interpolation_points"],
            min_num_intervals=params["min_num_intervals"], ints_in_interval=params["ints_in_interval"],
            n_jobs=params["n_jobs"], n_samples=n, n_components=d)
        if n_iter == 0:
            return target
        log.info("Optimising %d points for %d iterations (method %s, exaggeration %g, learning rate %g)",
                 n, n_iter, backend.name, exaggeration, lr)
        from .optimizer import OptimizationInterrupt
        try:
            kl, done = gradient_descent(
                target.embedding, target.P, backend, target.optimizer_state, n_iter,
                learning_rate=lr, momentum=momentum, exaggeration=exaggeration, dof=float(params["dof"]),
                max_grad_norm=params["max_grad_norm"], max_step_norm=params["max_step_norm"],
                callbacks=callbacks, callbacks_every_iters=params["callbacks_every_iters"],
                n_jobs=params["n_jobs"], verbose=params["verbose"], min_grad_norm=params["min_grad_norm"],
                n_iter_without_progress=params["n_iter_without_progress"],
                progress=make_progress(params["verbose"], exaggeration))
        except OptimizationInterrupt as ex:
            log.warning("Optimisation interrupted; returning the last embedding")
            if propagate_exception:
                raise
            kl, done = ex.error, None
        target.kl_divergence = kl
        target.n_iter += n_iter if done is None else done
        target.learning_rate = lr
        return target

    def _copy(self):
        new = copy.copy(self)
        new.embedding = self.embedding.copy()
        new.optimizer_state = self.optimizer_state.copy()
        new.gradient_descent_params = dict(self.gradient_descent_params)
        return new
