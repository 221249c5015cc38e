"""Embedding objects: coordinates + affinities + optimiser state.

:class:`TSNEEmbedding` is an ``np.ndarray`` (float64, C-ordered, 2-D) of the
coordinates; indexing and arithmetic on it give plain arrays. It keeps the affinities, the
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

import logging
import pickle

import numpy as np

from ._validation import check_bool, check_option, check_scalar
from .callbacks import make_progress
from .dask import is_dask_collection
from .engine import resolve_engine
from .optimizer import OptimizationInterrupt, OptimizerState, gradient_descent
from .options import EMBEDDING_DEFAULTS, OptimizeOptions, resolve

log = logging.getLogger(__name__)


class _Embedding(np.ndarray):
    """What both embedding kinds share: coordinates, settings, optimiser state, ``optimize``.

    An embedding is a 2-D float64 C-ordered ``np.ndarray`` carrying its attributes. Indexing,
    arithmetic and NumPy functions give plain arrays (``embedding[:, 0]``, ``embedding * 2``,
    ``np.mean(embedding, axis=0)``); only the constructors, ``optimize``, ``prepare_partial`` and
    ``transform`` make embeddings. ``copy.copy`` / ``.copy()`` keep the attributes (with the
    optimiser state copied); pickling keeps them too.
    """

    #: re-centre the embedding after every step (not for new points against a fixed reference)
    _recentre = True

    # what a bare array view of an embedding (another shape: ``.T``, ``reshape``) reads
    random_state = None
    kl_divergence = None
    n_iter = 0
    learning_rate = None

    def __new__(cls, embedding, *args, **kwargs):
        try:
            data = np.array(embedding, dtype=np.float64, order="C", copy=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"The embedding must be a 2-D array of numbers; got {type(embedding).__name__}.") from e
        if data.ndim != 2 or data.shape[1] < 1:
            raise ValueError(f"The embedding must be a 2-D array with at least one column, got shape "
                             f"{data.shape}.")
        if not np.all(np.isfinite(data)):
            raise ValueError("The embedding contains NaN or infinity.")
        return data.view(cls)

    def __init__(self, embedding, random_state=None, **gradient_descent_params):
        _check_keys(gradient_descent_params, type(self).__name__)
        self.random_state = random_state
        self.gradient_descent_params = {**EMBEDDING_DEFAULTS, **gradient_descent_params}
        self.optimizer_state = OptimizerState(self.shape)
        self.kl_divergence = None
        self.n_iter = 0
        self.learning_rate = None

    # -- array protocol ---------------------------------------------------------------
    def __array_finalize__(self, obj):
        # copies of the same shape (``.copy()``, ``copy.copy``) keep the attributes
        if isinstance(obj, _Embedding) and obj.__dict__ and obj.shape == self.shape:
            self.__dict__.update(obj.__dict__)
            self.gradient_descent_params = dict(obj.gradient_descent_params)
            self.optimizer_state = obj.optimizer_state.copy()
            self.__dict__.pop("_interpolation_grid", None)  # holds the original's buffer

    def __array_ufunc__(self, ufunc, method, *inputs, out=None, **kwargs):
        inputs = tuple(x.view(np.ndarray) if isinstance(x, _Embedding) else x for x in inputs)
        if out is not None:
            kwargs["out"] = tuple(o.view(np.ndarray) if isinstance(o, _Embedding) else o for o in out)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if out is not None and any(isinstance(o, _Embedding) for o in out):  # in place: ``embedding += 1``
            return out[0] if len(out) == 1 else out
        return result

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        arr = arr.view(np.ndarray)
        return arr[()] if return_scalar else arr

    def __getitem__(self, key):
        return self.view(np.ndarray)[key]

    def __iter__(self):
        return iter(self.view(np.ndarray))

    @property
    def embedding(self):
        """The coordinates as a plain ndarray (a view of this embedding's buffer)."""
        return self.view(np.ndarray)

    @embedding.setter
    def embedding(self, value):
        self.view(np.ndarray)[...] = value

    def __reduce__(self):
        rebuild, args, state = super().__reduce__()
        attrs = dict(self.__dict__)
        attrs.pop("_backend_cache", None)  # device tensors: rebuilt on the next optimize
        return rebuild, args, (state, attrs)

    def __setstate__(self, state):
        array_state, attrs = state
        super().__setstate__(array_state)
        self.__dict__.update(attrs)

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
        target.__dict__.pop("_interpolation_grid", None)  # the coordinates move: the grid is stale
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

    def _copy(self):
        new = np.array(self.view(np.ndarray), copy=True).view(type(self))  # its own buffer, its own base
        new.__dict__.update(self.__dict__)
        new.optimizer_state = self.optimizer_state.copy()
        new.gradient_descent_params = dict(self.gradient_descent_params)
        new.__dict__.pop("_interpolation_grid", None)
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

    def prepare_interpolation_grid(self, padding=0.25):
        """Build now, once, what the FFT method needs to place new points into this embedding.

        The reference charges are spread on a grid covering this embedding's bounding box
        widened by ``padding`` times its extent on every side, and the grid potentials computed
        (for the embedding's ``dof``). Later :meth:`transform` / :meth:`prepare_partial` calls
        with ``negative_gradient_method="fft"`` and the same grid parameters start from this grid
        instead of building their own (the placement differs from an unprepared one by the
        interpolation error only); new points that leave the grid make that call build a larger
        one. ``optimize`` drops the grid (the coordinates move). Other methods do not use it.

        Parameters
        ----------
        padding : float, default=0.25
            Fraction of the embedding's extent added on every side.

        Returns
        -------
        self
        """
        from .gradients.fft import FFTReferenceRepulsion

        padding = check_scalar(padding, "padding", f"{type(self).__name__}.prepare_interpolation_grid", float,
                               low=0.0, closed="left")
        params = self.gradient_descent_params
        options = OptimizeOptions.build("prepare_interpolation_grid", **params)
        grid = (options.n_interpolation_points, options.min_num_intervals, options.ints_in_interval)
        Y = np.array(self.embedding)  # the grid keeps its own copy of the coordinates
        repulsion = FFTReferenceRepulsion(Y, *grid, n_jobs=options.n_jobs)
        lo, hi = Y.min(axis=0), Y.max(axis=0)
        pad = padding * (hi - lo)
        repulsion.prepare(lo - pad, hi + pad, options.dof)
        self._interpolation_grid = (grid, repulsion)
        return self

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

    def _gradient_backend(self, options, engine, n_components, reference):
        """The reference's prepared FFT grid (:meth:`TSNEEmbedding.prepare_interpolation_grid`)
        where it fits these options; otherwise the engine's backend."""
        prepared = self.reference_embedding.__dict__.get("_interpolation_grid")
        if (prepared is not None and engine.kind == "numba" and options.negative_gradient_method == "fft"
                and prepared[0] == (options.n_interpolation_points, options.min_num_intervals,
                                    options.ints_in_interval)):
            from .gradients import PartialGradient

            return PartialGradient(reference, prepared[1].fork(options.n_jobs))
        return super()._gradient_backend(options, engine, n_components, reference)
