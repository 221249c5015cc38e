"""``turbotsne.TSNE``: the ``openTSNE.sklearn.TSNE`` contract with scikit-learn's conventions.

``__init__`` only stores parameters; ``fit`` validates them, resolves the
engine and the gradient method once (kept as fitted attributes where
scikit-learn asks, e.g. ``learning_rate_``) and drives the pieces:
neighbours -> affinities -> initialisation -> two optimisation phases (early
exaggeration, then the normal regime).
"""
from __future__ import annotations

import logging
import warnings

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils import check_random_state

from . import initialization
from ._validation import check_option, check_scalar, check_verbose
from . import affinity as _affinity
from .affinity import PerplexityBasedDense, PerplexityBasedNN
from .dask import is_dask_collection
from .embedding import TSNEEmbedding
from .engine import resolve_engine
from .optimizer import OptimizationInterrupt
from .neighbors import KNNIndex
from .options import EMBEDDING_PARAMS, OptimizeOptions, early_exaggeration, resolve_method

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # pragma: no cover
    _validate_data = None

log = logging.getLogger(__name__)

_NEIGHBORS = ("exact", "auto", "approx", "voyager", "annoy", "pynndescent", "hnsw")
_INITIALIZATIONS = ("pca", "spectral", "random")


class TSNE(TransformerMixin, BaseEstimator):
    """t-distributed Stochastic Neighbor Embedding.

    A drop-in for ``openTSNE.sklearn.TSNE``: the same parameters, in the same
    order, with the same defaults and meaning (see the openTSNE parameter
    guide). The gradient is openTSNE's scaling (a quarter of dKL/dy), so
    ``learning_rate="auto"`` is ``N / exaggeration`` in each phase, which is
    what scikit-learn's ``4 * max(N / early_exaggeration / 4, 50)`` is too.

    Parameters beyond openTSNE's (keyword-only)
    -------------------------------------------
    n_iter_without_progress : int or None, default=None
        Stop when the KL divergence (checked every 50 iterations) has not
        improved for this many iterations (scikit-learn's rule; off by default,
        as in openTSNE).
    min_grad_norm : float or None, default=None
        Stop when the gradient norm falls below this value (off by default).
    device : {"cpu", "cuda", "cuda:N", "auto"} or torch.device, default="cpu"
        Where to run. ``"auto"``: a CUDA device when PyTorch sees one, else
        the CPU. A CUDA device needs the ``gpu`` extra (PyTorch).
    backend : {"auto", "numba", "torch"}, default="auto"
        ``"auto"``: torch on a CUDA device, numba on the CPU; ``"torch"`` with
        ``device="cpu"`` runs the torch path on the CPU. On torch, "auto" for
        ``negative_gradient_method`` means "fft" (1-3 components; "exact"
        above), "bh" is not available, ``neighbors="exact"`` (and "auto" on a
        CUDA device) finds neighbours by brute force on the device for
        euclidean / sqeuclidean / cosine, and PCA initialisation runs there
        too; see :mod:`turbotsne.engine`.

    knn_kwargs : dict or None, default=None
        Extra arguments of the neighbour index that ``neighbors`` names
        (e.g. ``{"n_trees": 100}`` for annoy, ``{"M": 24}`` for hnsw); not with
        ``neighbors="auto"`` / ``"approx"``.

    Input and edge cases
    --------------------
    ``X`` is a 2-D array (float32/float64 kept; int and bool converted to
    float64; any memory order; a pandas DataFrame; a scipy sparse matrix) and
    is never modified, nor is an ``initialization`` array. NaN or inf raise a
    ``ValueError`` ("Input X contains NaN."), so do fewer than 2 samples.
    Duplicate points, constant columns and all-identical rows give a finite
    embedding. A perplexity with ``3 * perplexity > N - 1`` is reduced to
    ``(N - 1) / 3`` with a warning.

    **N = 2 and N = 3** are accepted and give a trivial but finite, centred
    embedding: with 2 points P is 1/2 for the single pair whatever X is, so the
    KL divergence is 0 for any two distinct positions and the result is only the
    (symmetric) initial pair moved along its line; with 3 points each point's
    affinity goes to its nearest neighbour (perplexity 2/3). PCA
    initialisation needs more than ``n_components`` samples and falls back to
    random initialisation (with a warning) below that.

    ``negative_gradient_method="exact"`` stores a dense N x N P and is refused
    above ``turbotsne.affinity.EXACT_MAX_SAMPLES`` (20,000) samples with a
    ``ValueError`` pointing to "bh" / "fft"; raise that constant to allow it.

    Ctrl-C (``KeyboardInterrupt``, also raised from a callback) during the
    optimisation raises :class:`turbotsne.OptimizationInterrupt`; its
    ``final_embedding`` holds the positions reached and its
    ``tsne_embedding`` the :class:`TSNEEmbedding` (affinities, neighbour index
    and optimiser state intact), which can be optimised further. The
    estimator is left unfitted.

    Attributes
    ----------
    embedding_ : ndarray of shape (n_samples, n_components)
    kl_divergence_ : float
        KL(P || Q) of the un-exaggerated P at the last iteration.
    n_iter_ : int
        Iterations run, both phases together.
    learning_rate_ : float
        The learning rate of the final phase ("auto" resolved).
    n_features_in_ : int
    """

    def __init__(self, n_components=2, perplexity=30, learning_rate="auto", early_exaggeration_iter=250,
                 early_exaggeration="auto", n_iter=500, exaggeration=None, dof=1, theta=0.5,
                 n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1, initialization="pca",
                 metric="euclidean", metric_params=None, initial_momentum=0.8, final_momentum=0.8,
                 max_grad_norm=None, max_step_norm=5, n_jobs=1, neighbors="auto",
                 negative_gradient_method="auto", callbacks=None, callbacks_every_iters=50,
                 random_state=None, verbose=False, *, n_iter_without_progress=None, min_grad_norm=None,
                 device="cpu", backend="auto", knn_kwargs=None):
        self.n_components = n_components
        self.perplexity = perplexity
        self.learning_rate = learning_rate
        self.early_exaggeration_iter = early_exaggeration_iter
        self.early_exaggeration = early_exaggeration
        self.n_iter = n_iter
        self.exaggeration = exaggeration
        self.dof = dof
        self.theta = theta
        self.n_interpolation_points = n_interpolation_points
        self.min_num_intervals = min_num_intervals
        self.ints_in_interval = ints_in_interval
        self.initialization = initialization
        self.metric = metric
        self.metric_params = metric_params
        self.initial_momentum = initial_momentum
        self.final_momentum = final_momentum
        self.max_grad_norm = max_grad_norm
        self.max_step_norm = max_step_norm
        self.n_jobs = n_jobs
        self.neighbors = neighbors
        self.negative_gradient_method = negative_gradient_method
        self.callbacks = callbacks
        self.callbacks_every_iters = callbacks_every_iters
        self.random_state = random_state
        self.verbose = verbose
        self.n_iter_without_progress = n_iter_without_progress
        self.min_grad_norm = min_grad_norm
        self.device = device
        self.backend = backend
        self.knn_kwargs = knn_kwargs

    # -- validation -----------------------------------------------------------------
    def _validate_params(self):
        o = "TSNE"
        check_scalar(self.n_components, "n_components", o, int, low=1, closed="left")
        check_scalar(self.perplexity, "perplexity", o, float, low=0.0)
        check_scalar(self.learning_rate, "learning_rate", o, float, low=0.0, options=("auto",))
        check_scalar(self.early_exaggeration_iter, "early_exaggeration_iter", o, int, low=0, closed="left")
        check_scalar(self.early_exaggeration, "early_exaggeration", o, float, low=0.0, options=("auto",))
        check_scalar(self.n_iter, "n_iter", o, int, low=0, closed="left")
        check_scalar(self.exaggeration, "exaggeration", o, float, low=0.0, allow_none=True)
        if not isinstance(self.initialization, (np.ndarray, list, tuple)):
            check_option(self.initialization, "initialization", o, _INITIALIZATIONS)
        if not (isinstance(self.metric, str) or callable(self.metric)):
            raise ValueError(f"The 'metric' parameter of TSNE must be a str or a callable. Got {self.metric!r} instead.")
        if self.metric_params is not None and not isinstance(self.metric_params, dict):
            raise ValueError(
                f"The 'metric_params' parameter of TSNE must be a dict or None. Got {self.metric_params!r} instead.")
        check_scalar(self.initial_momentum, "initial_momentum", o, float, low=0.0, high=1.0, closed="left")
        check_scalar(self.final_momentum, "final_momentum", o, float, low=0.0, high=1.0, closed="left")
        if not isinstance(self.neighbors, KNNIndex):
            check_option(self.neighbors, "neighbors", o, _NEIGHBORS)
        check_verbose(self.verbose, o)
        return OptimizeOptions.build(o, **{name: getattr(self, name) for name in EMBEDDING_PARAMS})

    def _check_X(self, X, reset):
        # C order: the result must not depend on the memory layout (BLAS in PCA rounds differently for F order)
        kwargs = dict(accept_sparse="csr", dtype=[np.float64, np.float32], order="C",
                      ensure_min_samples=2 if reset else 1)
        if _validate_data is not None:
            X = _validate_data(self, X, reset=reset, **kwargs)
        else:  # pragma: no cover
            X = self._validate_data(X, reset=reset, **kwargs)
        if self.metric == "precomputed" and reset:
            if X.shape[0] != X.shape[1]:
                raise ValueError(
                    f"With metric='precomputed', X must be a square distance matrix; got shape {X.shape}.")
            values = X.data if sp.issparse(X) else X
            if np.any(values < 0):
                raise ValueError("With metric='precomputed', X must contain non-negative distances.")
        return X

    # -- fitting ----------------------------------------------------------------------
    def fit(self, X, y=None):
        """Fit X into an embedded space; returns ``self``."""
        self._fit(X)
        return self

    def fit_transform(self, X, y=None):
        """Fit X into an embedded space and return the embedding of the training data."""
        self._fit(X)
        return self.embedding_

    def _fit(self, X):
        embedding = self._prepare_initial(X)
        self._optimize_phases(embedding)
        n = embedding.embedding.shape[0]
        exaggeration = 1.0 if self.exaggeration is None else float(self.exaggeration)
        self.embedding_ = np.array(embedding.embedding)
        self.kl_divergence_ = embedding.kl_divergence
        self.n_iter_ = embedding.n_iter
        self.learning_rate_ = (embedding.learning_rate if embedding.learning_rate is not None else
                               (n / exaggeration if self.learning_rate == "auto" else float(self.learning_rate)))
        self.tsne_embedding_ = embedding
        return self

    def prepare_initial(self, X, affinities=None, initialization=None):
        """The affinities and the initial embedding of ``X``, not optimised yet.

        Parameters
        ----------
        X : array of shape (n_samples, n_features) or None
            The data; may be None when ``affinities`` are given and the
            initialisation needs no data (spectral, random or an array).
        affinities : turbotsne.affinity.Affinities, optional
            Use these instead of computing perplexity-based ones from ``X``.
        initialization : {"pca", "spectral", "random"} or array, optional
            Overrides the ``initialization`` parameter.

        Returns
        -------
        TSNEEmbedding
            Optimise it with ``optimize``; ``fit`` runs the two phases.
        """
        return self._prepare_initial(X, affinities, initialization)

    def _prepare_initial(self, X, affinities=None, initialization=None):
        options = self._validate_params()
        if X is None and affinities is None:
            raise ValueError("TSNE needs the data X or precomputed affinities; got neither.")
        if X is not None:
            X = self._check_X(X, reset=True)
        n = X.shape[0] if affinities is None else affinities.P.shape[0]
        if X is not None and X.shape[0] != n:
            raise ValueError(f"X has {X.shape[0]} samples but the affinities {n}.")
        d = self.n_components
        random_state = check_random_state(self.random_state)
        engine = resolve_engine(self.device, self.backend, "TSNE")
        dense = affinities is not None and isinstance(affinities.P, np.ndarray)
        method = resolve_method(options.negative_gradient_method, n, d, engine, dense=dense, theta=options.theta)
        init = self.initialization if initialization is None else initialization
        self._check_fit_options(X, method, n, init, check_size=affinities is None)

        if affinities is not None:
            log.info("turbotsne: %d samples with precomputed affinities -> %d components (%s)", n, d, method)
        elif method == "exact":
            log.info("turbotsne: %d samples, %d features -> %d components (%s)", n, X.shape[1], d, method)
            if sp.issparse(X) and self.metric != "precomputed":
                X = X.toarray()
            affinities = PerplexityBasedDense(X, self.perplexity, metric=self.metric,
                                              metric_params=self.metric_params, n_jobs=self.n_jobs, **engine.params)
        else:
            log.info("turbotsne: %d samples, %d features -> %d components (%s)", n, X.shape[1], d, method)
            neighbors = engine.neighbors_for(self.neighbors, self.metric, self.metric_params, sp.issparse(X),
                                             self.n_jobs)
            affinities = PerplexityBasedNN(X, self.perplexity, method=neighbors, metric=self.metric,
                                           metric_params=self.metric_params, n_jobs=self.n_jobs,
                                           random_state=random_state, verbose=self.verbose,
                                           knn_kwargs=self.knn_kwargs, **engine.params)
        Y0 = self._initial_embedding(X, affinities, random_state, engine, init, n)

        params = {name: getattr(self, name) for name in EMBEDDING_PARAMS}
        return TSNEEmbedding(Y0, affinities, random_state=self.random_state,
                             **{**params, "negative_gradient_method": method, **engine.params})

    def _optimize_phases(self, embedding):
        """Early exaggeration, then the normal regime, in place."""
        exaggeration = 1.0 if self.exaggeration is None else float(self.exaggeration)
        early = early_exaggeration(self.early_exaggeration, self.exaggeration)
        try:
            embedding.optimize(self.early_exaggeration_iter, inplace=True, propagate_exception=True,
                               learning_rate=self.learning_rate, exaggeration=early, momentum=self.initial_momentum)
            embedding.optimize(self.n_iter, inplace=True, propagate_exception=True, learning_rate=self.learning_rate,
                               exaggeration=exaggeration, momentum=self.final_momentum)
        except OptimizationInterrupt as ex:
            # openTSNE raises too; the embedding (affinities, index, optimiser state) travels with the exception
            ex.tsne_embedding = embedding
            raise
        return embedding

    def _check_fit_options(self, X, method, n, init, check_size=True):
        """Checks that depend on the data, done before any expensive step (the method's own:
        :func:`turbotsne.options.resolve_method`)."""
        d = self.n_components
        if method == "exact" and X is not None and check_size:
            _affinity.check_exact_size(n, "TSNE")
            if sp.issparse(X) and self.metric == "precomputed":
                raise ValueError("negative_gradient_method='exact' needs a dense square distance matrix with "
                                 "metric='precomputed' (a sparse kNN graph lacks the other pairs); use 'bh' or 'fft'.")
        if isinstance(init, (np.ndarray, list, tuple)):
            with warnings.catch_warnings():  # the scale warning comes once, from _initial_embedding
                warnings.simplefilter("ignore")
                initialization.from_array(init, n, d)
        else:
            check_option(init, "initialization", "TSNE", _INITIALIZATIONS)

    def _initial_embedding(self, X, affinities, random_state, engine, init, n):
        d = self.n_components
        if isinstance(init, (np.ndarray, list, tuple)):
            return initialization.from_array(init, n, d)
        if init == "pca" and X is None:
            warnings.warn("PCA initialisation needs the data X; using 'spectral' on the given affinities instead.",
                          stacklevel=4)
            init = "spectral"
        if init == "pca" and self.metric == "precomputed":
            warnings.warn("PCA initialisation is not possible with metric='precomputed'; using 'spectral' instead.",
                          stacklevel=4)
            init = "spectral"
        if init == "pca":
            return engine.pca(X, d, random_state)
        if init == "spectral":
            return initialization.spectral(affinities.P, d, random_state=random_state)
        return initialization.random(n, d, random_state=random_state)

    def transform(self, X, *args, **kwargs):
        """Embed new points into the fitted embedding; the reference stays fixed.

        Extra arguments go to :meth:`turbotsne.TSNEEmbedding.transform`
        (``perplexity=5``, ``initialization="median"``, ``k=25``,
        ``learning_rate=0.1``, ``exaggeration=1.5``, ``n_iter=250``, ...).

        A dask array (or dask DataFrame) is placed block by block on the dask cluster and a lazy
        dask array is returned (:func:`turbotsne.dask.transform`).

        Returns
        -------
        ndarray of shape (n_new, n_components)
        """
        from sklearn.utils.validation import check_is_fitted

        check_is_fitted(self, "embedding_")
        if is_dask_collection(X):  # placed block by block on the dask cluster, lazily
            from .dask import transform

            return transform(self, X, *args, **kwargs)
        X = self._check_X(X, reset=False)
        kwargs.setdefault("n_jobs", self.n_jobs)
        return np.array(self.tsne_embedding_.transform(X, *args, **kwargs).embedding)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.input_tags.pairwise = self.metric == "precomputed"
        tags.non_deterministic = False
        return tags
