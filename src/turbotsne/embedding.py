"""Embedding objects: coordinates + affinities + optimiser state.

:class:`TSNEEmbedding` is a plain class (not an ndarray subclass):
``np.asarray(embedding)`` gives the coordinates; indexing and arithmetic act on them. It keeps the affinities, the
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

Each ``optimize`` call builds its :class:`~turbotsne.options.OptimizeOptions` once,
resolves the engine and "auto" once, and hands both to the optimiser.
"""
from __future__ import annotations

import copy
import logging
import pickle

import numpy as np
from numpy.lib.mixins import NDArrayOperatorsMixin

from ._validation import check_bool, check_option, check_scalar
from .callbacks import make_progress
from .dask import is_dask_collection
from .engine import resolve_engine
from .optimizer import OptimizationInterrupt, OptimizerState, gradient_descent
from .options import EMBEDDING_DEFAULTS, OptimizeOptions, resolve

log = logging.getLogger(__name__)


class _Embedding(NDArrayOperatorsMixin):
    """What both embedding kinds share: coordinates, settings, optimiser state, ``optimize``.

    Indexing, arithmetic and NumPy functions act on the coordinates and return plain
    arrays (``embedding[:, 0]``, ``embedding * 2``, ``np.mean(embedding, axis=0)``);
    ``==`` stays identity (an embedding is an object, not an array).
    """

    __eq__ = object.__eq__
    __ne__ = object.__ne__
    __hash__ = object.__hash__

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
        self.gradient_descent_params = {**EMBEDDING_DEFAULTS, **gradient_descent_params}
        self.optimizer_state = OptimizerState(self.embedding.shape)
        self.kl_divergence = None
        self.n_iter = 0
        self.learning_rate = None

    # -- array protocol ---------------------------------------------------------------
    def __array__(self, dtype=None, copy=None):
        if dtype is None:
            return self.embedding.copy() if copy else self.embedding
        return self.embedding.astype(dtype, copy=bool(copy) or dtype != self.embedding.dtype)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if "out" in kwargs:
            kwargs["out"] = tuple(np.asarray(o) if isinstance(o, _Embedding) else o for o in kwargs["out"])
        inputs = tuple(x.embedding if isinstance(x, _Embedding) else x for x in inputs)
        return getattr(ufunc, method)(*inputs, **kwargs)

    def __getitem__(self, key):
        return self.embedding[key]

    def __iter__(self):
        return iter(self.embedding)

    @property
    def shape(self):
        return self.embedding.shape

    @property
    def base(self):
        """The array that holds the coordinates: ``optimize(inplace=True)`` writes into it,
        ``optimize()`` returns an embedding with a new one (openTSNE's ``base``)."""
        return self.embedding

    @property
    def ndim(self):
        return self.embedding.ndim

    @property
    def dtype(self):
        return self.embedding.dtype

    def __len__(self):
        return self.embedding.shape[0]

    def __repr__(self):
        kl = "not optimised" if self.kl_divergence is None else f"KL={self.kl_divergence:.4f}"
        return f"{type(self).__name__}(n_samples={self.shape[0]}, n_components={self.shape[1]}, {kl})"

    @property
    def optimizer(self):
        """The optimiser state carried between ``optimize`` calls (``gains``, ``update``);
        before the first call its ``gains`` are None (openTSNE's convention)."""
        if self.n_iter == 0:
            return _NotStarted()
        return self.optimizer_state

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
        owner = f"{type(self).__name__}.optimize"
        n_iter = check_scalar(n_iter, "n_iter", owner, int, low=0, closed="left")
        check_bool(inplace, "inplace", owner)
        check_bool(propagate_exception, "propagate_exception", owner)
        options = OptimizeOptions.build(owner, **{**self.gradient_descent_params, **gradient_descent_params},
                                        learning_rate=learning_rate, exaggeration=exaggeration, momentum=momentum)
        engine = resolve_engine(options.device, options.backend, owner)

        target = self if inplace else self._copy()
        if n_iter == 0:
            return target
        n_samples, n_components, dense, reference = target._gradient_problem()
        options = resolve(options, n_samples, n_components, engine, dense=dense, reference=reference is not None)
        backend = target._gradient_backend(options, engine, n_components, reference)
        log.info("Optimising %d points for %d iterations (method %s, %s, exaggeration %g, learning rate %g)",
                 target.embedding.shape[0], n_iter, backend.name, engine, options.exaggeration,
                 options.learning_rate)
        try:
            with engine.optimizer_arrays(target.embedding, target.optimizer_state) as (Y, state, ops):
                kl, done = gradient_descent(Y, target.P, backend, state, n_iter, options, ops=ops,
                                            progress=make_progress(options.verbose, options.exaggeration),
                                            recentre=self._recentre)
        except OptimizationInterrupt as ex:
            log.warning("Optimisation interrupted; keeping the last embedding")
            target.kl_divergence = ex.error
            target.n_iter += ex.n_iter
            target.learning_rate = options.learning_rate
            if propagate_exception:
                raise
            return target
        target.kl_divergence = kl
        target.n_iter += done
        target.learning_rate = options.learning_rate
        return target

    def _gradient_backend(self, options, engine, n_components, reference):
        """The engine's gradient backend for the resolved ``options``; kept between calls where the
        engine says so (torch: it holds P on the device)."""
        key = (options.negative_gradient_method, tuple(options.repulsion_params.items()), engine)
        cached = self.__dict__.get("_backend_cache")
        if cached is not None and cached[0] == key:
            return cached[1]
        backend = engine.gradient_backend(options.negative_gradient_method, self.P, options,
                                          n_components=n_components, reference=reference)
        if engine.keeps_backend:
            self._backend_cache = (key, backend)
        return backend

    def __getstate__(self):
        state = dict(self.__dict__)
        state.pop("_backend_cache", None)  # device tensors: rebuilt on the next optimize
        return state

    def _copy(self):
        new = copy.copy(self)
        new.embedding = self.embedding.copy()
        new.optimizer_state = self.optimizer_state.copy()
        new.gradient_descent_params = dict(self.gradient_descent_params)
        return new


class _NotStarted:
    """The optimiser state of an embedding not optimised yet."""

    gains = None
    update = None


def _check_keys(params, owner):
    unknown = set(params) - set(EMBEDDING_DEFAULTS)
    if unknown:
        raise TypeError(f"{owner} got unexpected parameters {sorted(unknown)}; "
                        f"allowed: {sorted(EMBEDDING_DEFAULTS)}.")


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

    def _gradient_problem(self):
        """``(n_samples, n_components, dense P, reference)`` that decide the gradient method."""
        return self.P.shape[0], self.embedding.shape[1], isinstance(self.P, np.ndarray), None

    def prepare_partial(self, X, initialization="median", k=25, **affinity_params):
        """Relate new points ``X`` to this embedding and place them, without optimising.

        Parameters
        ----------
        X : array of shape (n_new, n_features)
            New data in the input space of the reference.
        initialization : {"median", "weighted", "random"} or array of shape (n_new, n_components)
            ``"median"``: the coordinate-wise median of the embedding positions
            of the ``k`` nearest reference points; ``"weighted"``: their mean
            weighted by the new affinities; ``"random"``: Gaussian noise of
            standard deviation 1e-4 (``random_state``).
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
            check_option(initialization, "initialization", owner, ("median", "weighted", "random"))
        P, indices, _ = self.affinities.to_new(X, k=k, return_distances=True, **affinity_params)
        n_new, d = P.shape[0], self.embedding.shape[1]
        if isinstance(initialization, (np.ndarray, list, tuple)):
            Y0 = from_array(initialization, n_new, d)
        else:
            if initialization == "median":
                Y0 = np.median(self.embedding[indices[:, :k]], axis=1)
            elif initialization == "random":
                from .initialization import random

                Y0 = random(n_new, d, random_state=self.random_state)
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
        if is_dask_collection(X):  # placed block by block on the dask cluster, lazily
            from .dask import transform

            return transform(self, X, perplexity=perplexity, initialization=initialization, k=k,
                             learning_rate=learning_rate, early_exaggeration=early_exaggeration,
                             early_exaggeration_iter=early_exaggeration_iter, exaggeration=exaggeration,
                             n_iter=n_iter, initial_momentum=initial_momentum, final_momentum=final_momentum,
                             max_grad_norm=max_grad_norm, max_step_norm=max_step_norm, **gradient_descent_params)
        if isinstance(perplexity, (list, tuple, np.ndarray)):  # multiscale affinities: several
            perplexity = [check_scalar(p, "perplexity", owner, float, low=0.0) for p in perplexity]
        else:
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
        OptimizeOptions.build(owner, **{**self.gradient_descent_params, **gradient_descent_params})  # before any work
        partial = self.prepare_partial(X, initialization=initialization, k=k,
                                       **self.affinities.transform_params(perplexity))
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

    def _gradient_problem(self):
        ref = np.asarray(self.reference_embedding)
        return ref.shape[0], ref.shape[1], False, ref
