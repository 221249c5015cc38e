"""Embedding objects: coordinates + affinities + optimiser state.

:class:`TSNEEmbedding` is a plain class (not an ndarray subclass):
``np.asarray(embedding)`` gives the coordinates. It keeps the affinities, the
gradient-method settings and the optimiser state (gains, last update), so that
``optimize`` can be called again and carries on where the last call stopped;
any schedule (early exaggeration, late exaggeration, ...) is a sequence of
``optimize`` calls.

:meth:`TSNEEmbedding.transform` / :meth:`~TSNEEmbedding.prepare_partial` embed
new points into a fitted embedding: a :class:`PartialTSNEEmbedding` whose
points are attracted by their neighbours in the reference and repelled by the
whole reference, which stays fixed. Each new point is optimised independently
of the others (its own normalisation), so a point lands in the same place
whether it is transformed alone or in a batch.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import pickle

import numpy as np

from . import gpu, gradients
from ._validation import (check_bool, check_callbacks, check_gradient_options, check_option, check_scalar,
                          check_verbose)
from .callbacks import make_progress
from .gpu import resolve_engine
from .optimizer import NumpyOps, OptimizationInterrupt, OptimizerState, gradient_descent, resolve_learning_rate

log = logging.getLogger(__name__)

_GRADIENT_DEFAULTS = dict(
    negative_gradient_method="auto", dof=1, theta=0.5, n_interpolation_points=3, min_num_intervals=50,
    ints_in_interval=1, max_grad_norm=None, max_step_norm=5, n_jobs=1, callbacks=None,
    callbacks_every_iters=50, verbose=False, min_grad_norm=None, n_iter_without_progress=None,
    device="cpu", backend="auto",
)
_REPULSION_OPTIONS = ("theta", "n_interpolation_points", "min_num_intervals", "ints_in_interval", "n_jobs")


class _Embedding:
    """What both embedding kinds share: coordinates, settings, optimiser state, ``optimize``."""

    #: re-centre the embedding after every step (not for new points against a fixed reference)
    _recentre = True

    def __init__(self, embedding, random_state=None, **gradient_descent_params):
        _check_keys(gradient_descent_params, type(self).__name__)
        try:
            self.embedding = np.array(embedding, dtype=np.float64, order="C", copy=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"The embedding must be a 2-D array of numbers; got {type(embedding).__name__}.") from e
        if self.embedding.ndim != 2 or self.embedding.shape[1] < 1:
            raise ValueError(f"The embedding must be a 2-D array with at least one column, got shape "
                             f"{self.embedding.shape}.")
        if not np.all(np.isfinite(self.embedding)):
            raise ValueError("The embedding contains NaN or infinity.")
        self.random_state = random_state
        self.gradient_descent_params = {**_GRADIENT_DEFAULTS, **gradient_descent_params}
        self.optimizer_state = OptimizerState(self.embedding.shape)
        self.kl_divergence = None
        self.n_iter = 0
        self.learning_rate = None

    # -- array protocol ---------------------------------------------------------------
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
        return f"{type(self).__name__}(n_samples={self.shape[0]}, n_components={self.shape[1]}, {kl})"

    # -- persistence ------------------------------------------------------------------
    def save(self, path):
        """Pickle this embedding (with its affinities and neighbour index) to ``path``."""
        with open(path, "wb") as f:
            pickle.dump(self, f, protocol=pickle.HIGHEST_PROTOCOL)

    @classmethod
    def load(cls, path):
        """Load an embedding written by :meth:`save`."""
        with open(path, "rb") as f:
            obj = pickle.load(f)
        if not isinstance(obj, cls):
            raise TypeError(f"{path} holds a {type(obj).__name__}, not a {cls.__name__}.")
        return obj

    # -- optimisation -----------------------------------------------------------------
    def optimize(self, n_iter, inplace=False, propagate_exception=False, *, learning_rate="auto",
                 exaggeration=None, momentum=0.8, **gradient_descent_params):
        """Run ``n_iter`` iterations of gradient descent and return the optimised embedding.

        Parameters
        ----------
        n_iter : int
            Number of iterations.
        inplace : bool, default=False
            Optimise this object; otherwise a new embedding is returned and
            this one is left unchanged.
        propagate_exception : bool, default=False
            On Ctrl-C, raise :class:`~turbotsne.optimizer.OptimizationInterrupt`
            (carrying the last coordinates); otherwise keep the coordinates
            reached and return normally.
        learning_rate : float or "auto", default="auto"
            ``"auto"`` is ``N / exaggeration``.
        exaggeration : float or None, default=None
            Multiplies the attractive forces; ``None`` means 1.
        momentum : float, default=0.8
        **gradient_descent_params
            Override the embedding's gradient settings for this call
            (``negative_gradient_method``, ``dof``, ``theta``, ``max_grad_norm``, ...).
        """
        _check_keys(gradient_descent_params, "optimize()")
        params = {**self.gradient_descent_params, **gradient_descent_params}
        owner = f"{type(self).__name__}.optimize"
        n_iter = check_scalar(n_iter, "n_iter", owner, int, low=0, closed="left")
        check_bool(inplace, "inplace", owner)
        check_bool(propagate_exception, "propagate_exception", owner)
        check_verbose(params["verbose"], owner, hooks=True)
        check_scalar(params["min_grad_norm"], "min_grad_norm", owner, float, low=0.0, closed="left", allow_none=True)
        check_scalar(params["n_iter_without_progress"], "n_iter_without_progress", owner, int, low=1, closed="left",
                     allow_none=True)
        exaggeration = check_scalar(exaggeration, "exaggeration", owner, float, low=0.0, allow_none=True) or 1.0
        momentum = check_scalar(momentum, "momentum", owner, float, low=0.0, high=1.0, closed="left")
        learning_rate = check_scalar(learning_rate, "learning_rate", owner, float, low=0.0, options=("auto",))
        check_gradient_options(owner, **{k: params[k] for k in (
            "dof", "theta", "n_interpolation_points", "min_num_intervals", "ints_in_interval",
            "max_grad_norm", "max_step_norm", "callbacks_every_iters", "n_jobs")})
        callbacks = check_callbacks(params["callbacks"], owner)
        method = gradients.canonical_method(params["negative_gradient_method"])

        engine = resolve_engine(params["device"], params["backend"], owner)

        target = self if inplace else self._copy()
        n, d = target.embedding.shape
        lr = resolve_learning_rate(learning_rate, n, exaggeration)
        if n_iter == 0:
            return target
        backend = target._cached_backend(method, {k: params[k] for k in _REPULSION_OPTIONS}, engine)
        log.info("Optimising %d points for %d iterations (method %s, %s, exaggeration %g, learning rate %g)",
                 n, n_iter, backend.name, engine, exaggeration, lr)
        if engine.is_torch:
            from .gpu.optimizer import DeviceRun, TorchOps

            run, ops = DeviceRun(engine, target.embedding, target.optimizer_state), TorchOps
        else:
            run, ops = contextlib.nullcontext(), NumpyOps
        try:
            with run:
                Y, state = (run.Y, run.state) if engine.is_torch else (target.embedding, target.optimizer_state)
                kl, done = gradient_descent(
                    Y, target.P, backend, state, n_iter,
                    learning_rate=lr, momentum=momentum, exaggeration=exaggeration, dof=float(params["dof"]),
                    max_grad_norm=params["max_grad_norm"], max_step_norm=params["max_step_norm"],
                    callbacks=callbacks, callbacks_every_iters=params["callbacks_every_iters"],
                    recentre=self._recentre, n_jobs=params["n_jobs"], verbose=params["verbose"],
                    min_grad_norm=params["min_grad_norm"],
                    n_iter_without_progress=params["n_iter_without_progress"],
                    progress=make_progress(params["verbose"], exaggeration), ops=ops)
        except OptimizationInterrupt as ex:
            log.warning("Optimisation interrupted; keeping the last embedding")
            target.kl_divergence = ex.error
            target.n_iter += ex.n_iter
            target.learning_rate = lr
            if propagate_exception:
                raise
            return target
        target.kl_divergence = kl
        target.n_iter += done
        target.learning_rate = lr
        return target

    def _cached_backend(self, method, options, engine):
        """The gradient backend; on a torch engine it is kept (with P on the device) for later calls."""
        if not engine.is_torch:
            return self._backend(method, options, engine)
        key = (method, tuple(sorted(options.items())), engine)
        cached = self.__dict__.get("_torch_backend")
        if cached is None or cached[0] != key:
            cached = (key, self._backend(method, options, engine))
            self._torch_backend = cached
        return cached[1]

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_torch_backend", None)  # device tensors: rebuilt on the next optimize
        return state

    def _copy(self):
        new = copy.copy(self)
        new.embedding = self.embedding.copy()
        new.optimizer_state = self.optimizer_state.copy()
        new.gradient_descent_params = dict(self.gradient_descent_params)
        return new


def _check_keys(params, owner):
    unknown = set(params) - set(_GRADIENT_DEFAULTS)
    if unknown:
        raise TypeError(f"{owner} got unexpected parameters {sorted(unknown)}; "
                        f"allowed: {sorted(_GRADIENT_DEFAULTS)}.")


class TSNEEmbedding(_Embedding):
    """A t-SNE embedding that can be optimised further and can embed new points.

    Parameters
    ----------
    embedding : array of shape (n_samples, n_components)
        Initial coordinates (copied).
    affinities : turbotsne.affinity.Affinities
        Holds ``P`` (CSR, or dense for the exact method) and the neighbour index.
    random_state : None, int or RandomState
    **gradient_descent_params
        Defaults for :meth:`optimize` (``negative_gradient_method``, ``dof``,
        ``theta``, ``n_interpolation_points``, ``min_num_intervals``,
        ``ints_in_interval``, ``max_grad_norm``, ``max_step_norm``, ``n_jobs``,
        ``callbacks``, ``callbacks_every_iters``, ``verbose``, ``min_grad_norm``,
        ``n_iter_without_progress``).
    """

    def __init__(self, embedding, affinities, random_state=None, **gradient_descent_params):
        super().__init__(embedding, random_state=random_state, **gradient_descent_params)
        if getattr(affinities, "P", None) is None:
            raise ValueError(f"The 'affinities' parameter of TSNEEmbedding must be an Affinities object with a P "
                             f"matrix. Got {type(affinities).__name__} instead.")
        if affinities.P.shape[0] != self.embedding.shape[0]:
            raise ValueError(f"The affinities hold {affinities.P.shape[0]} points but the embedding "
                             f"{self.embedding.shape[0]}.")
        self.affinities = affinities

    @property
    def P(self):
        return self.affinities.P

    def _backend(self, method, options, engine):
        n, d = self.embedding.shape
        if engine.is_torch:
            from .gpu.gradients import make_torch_backend

            if method == "auto":
                method = "exact" if isinstance(self.P, np.ndarray) else gpu.resolve_auto(n, d)
            return make_torch_backend(method, self.P, device=engine.device, dtype=engine.dtype, n_samples=n,
                                      n_components=d, **options)
        return gradients.make_backend(method, self.P, n_samples=n, n_components=d, **options)

    def prepare_partial(self, X, initialization="median", k=25, **affinity_params):
        """Relate new points ``X`` to this embedding and place them, without optimising.

        Parameters
        ----------
        X : array of shape (n_new, n_features)
            New data in the input space of the reference.
        initialization : {"median", "weighted"} or array of shape (n_new, n_components)
            ``"median"``: the coordinate-wise median of the embedding positions
            of the ``k`` nearest reference points; ``"weighted"``: their mean
            weighted by the new affinities.
        k : int, default=25
            Neighbours used by ``"median"``.
        **affinity_params
            Passed to ``affinities.to_new`` (e.g. ``perplexity``).

        Returns
        -------
        PartialTSNEEmbedding
        """
        from .initialization import from_array

        owner = "prepare_partial"  # the name existing messages (and callers matching them) use
        k = check_scalar(k, "k", owner, int, low=1, closed="left")
        if not isinstance(initialization, (np.ndarray, list, tuple)):
            check_option(initialization, "initialization", owner, ("median", "weighted"))
        P, indices, _ = self.affinities.to_new(X, k=k, return_distances=True, **affinity_params)
        n_new, d = P.shape[0], self.embedding.shape[1]
        if isinstance(initialization, (np.ndarray, list, tuple)):
            Y0 = from_array(initialization, n_new, d)
        else:
            if initialization == "median":
                Y0 = np.median(self.embedding[indices[:, :k]], axis=1)
            else:
                Y0 = np.asarray(P @ self.embedding)
        return PartialTSNEEmbedding(Y0, self, P, random_state=self.random_state,
                                    **self.gradient_descent_params)

    def transform(self, X, perplexity=5, initialization="median", k=25, learning_rate=0.1, early_exaggeration=4,
                  early_exaggeration_iter=0, exaggeration=1.5, n_iter=250, initial_momentum=0.8,
                  final_momentum=0.8, max_grad_norm=0.25, max_step_norm=None, **gradient_descent_params):
        """Embed new points into this (fixed) embedding; openTSNE's defaults.

        The new points are placed by ``initialization`` among their ``k``
        nearest reference neighbours, then optimised for
        ``early_exaggeration_iter`` iterations at ``early_exaggeration`` and
        ``n_iter`` at ``exaggeration``, attracted by their reference neighbours
        (affinities at ``perplexity``) and repelled by the whole reference.

        Returns
        -------
        PartialTSNEEmbedding
            ``np.asarray`` of it gives the coordinates of the new points.
        """
        owner = f"{type(self).__name__}.transform"
        perplexity = check_scalar(perplexity, "perplexity", owner, float, low=0.0)
        check_scalar(learning_rate, "learning_rate", owner, float, low=0.0, options=("auto",))
        check_scalar(early_exaggeration, "early_exaggeration", owner, float, low=0.0, allow_none=True)
        check_scalar(exaggeration, "exaggeration", owner, float, low=0.0, allow_none=True)
        check_scalar(early_exaggeration_iter, "early_exaggeration_iter", owner, int, low=0, closed="left")
        check_scalar(n_iter, "n_iter", owner, int, low=0, closed="left")
        check_scalar(initial_momentum, "initial_momentum", owner, float, low=0.0, high=1.0, closed="left")
        check_scalar(final_momentum, "final_momentum", owner, float, low=0.0, high=1.0, closed="left")
        check_scalar(max_grad_norm, "max_grad_norm", owner, float, low=0.0, allow_none=True)
        check_scalar(max_step_norm, "max_step_norm", owner, float, low=0.0, allow_none=True)
        _check_keys(gradient_descent_params, owner)
        params = {**self.gradient_descent_params, **gradient_descent_params}
        check_gradient_options(owner, **{k_: params[k_] for k_ in (
            "dof", "theta", "n_interpolation_points", "min_num_intervals", "ints_in_interval",
            "max_grad_norm", "max_step_norm", "callbacks_every_iters", "n_jobs")})
        gradients.canonical_method(params["negative_gradient_method"])
        partial = self.prepare_partial(X, initialization=initialization, k=k, perplexity=perplexity)
        partial.gradient_descent_params.update(max_grad_norm=max_grad_norm, max_step_norm=max_step_norm)
        try:
            partial.optimize(early_exaggeration_iter, inplace=True, propagate_exception=True,
                             learning_rate=learning_rate, exaggeration=early_exaggeration,
                             momentum=initial_momentum, **gradient_descent_params)
            partial.optimize(n_iter, inplace=True, propagate_exception=True, learning_rate=learning_rate,
                             exaggeration=exaggeration, momentum=final_momentum, **gradient_descent_params)
        except OptimizationInterrupt as ex:
            log.warning("Optimisation interrupted; returning the last positions of the new points")
            partial.embedding = ex.final_embedding
        return partial


class PartialTSNEEmbedding(_Embedding):
    """New points being embedded into a fixed reference :class:`TSNEEmbedding`.

    Only these points move: each is attracted by its reference neighbours
    (``P``, rows summing to 1) and repelled by all reference points; new points
    do not interact with each other.
    """

    _recentre = False

    def __init__(self, embedding, reference_embedding, P, random_state=None, **gradient_descent_params):
        super().__init__(embedding, random_state=random_state, **gradient_descent_params)
        self.reference_embedding = reference_embedding
        self.P = P

    def _backend(self, method, options, engine):
        ref = np.asarray(self.reference_embedding)
        if engine.is_torch:
            from .gpu.gradients import make_torch_reference_backend

            if method == "auto":
                method = gpu.resolve_auto(*ref.shape)
            return make_torch_reference_backend(method, ref, device=engine.device, dtype=engine.dtype, **options)
        repulsion = gradients.make_reference_repulsion(method, ref, **options)
        return gradients.PartialGradient(ref, repulsion)
