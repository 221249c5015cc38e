"""openTSNE's main API class: ``TSNE(...).fit(X) -> TSNEEmbedding``.

:class:`TSNE` takes the parameters of :class:`turbotsne.TSNE` (the scikit-learn
estimator) and runs the same pipeline — affinities, initialisation, early
exaggeration, the normal regime — through that estimator's own steps, so
``TSNE(**p).fit(X)`` and ``turbotsne.TSNE(**p).fit_transform(X)`` give the same
coordinates. It returns the :class:`~turbotsne.embedding.TSNEEmbedding` itself
(optimise it further, ``transform`` new points), accepts precomputed affinities
(``fit(affinities=...)``, ``X`` optional) and a list of perplexities (multiscale
affinities). ``negative_gradient_method="bh"`` with more than 3 components warns
(``FutureWarning``, as openTSNE) and sums the repulsion exactly (``theta=0``), where
:class:`turbotsne.TSNE` refuses. It is not a scikit-learn estimator: use
:class:`turbotsne.TSNE` for pipelines and ``check_estimator``.
"""
from __future__ import annotations

import inspect
import warnings

import numpy as np

from .affinity import Affinities, Multiscale
from .embedding import PartialTSNEEmbedding, TSNEEmbedding  # noqa: F401  (openTSNE's module holds them)
from .estimator import TSNE as _Estimator
from .optimizer import OptimizationInterrupt  # noqa: F401
from .options import canonical_method

__all__ = ["TSNE", "TSNEEmbedding", "PartialTSNEEmbedding", "OptimizationInterrupt", "kl_divergence_bh",
           "kl_divergence_fft"]

_PARAMS = tuple(inspect.signature(_Estimator.__init__).parameters)[1:]


class TSNE:
    """t-SNE with openTSNE's main API: :meth:`fit` returns a :class:`TSNEEmbedding`.

    The parameters, their defaults and their meaning are those of
    :class:`turbotsne.TSNE`; ``perplexity`` may also be a list of
    perplexities (multiscale affinities, :class:`turbotsne.affinity.Multiscale`).
    """

    def __init__(self, n_components=2, perplexity=30, learning_rate="auto", early_exaggeration_iter=250,
                 early_exaggeration="auto", n_iter=500, exaggeration=None, dof=1, theta=0.5,
                 n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1, initialization="pca",
                 metric="euclidean", metric_params=None, initial_momentum=0.8, final_momentum=0.8,
                 max_grad_norm=None, max_step_norm=5, n_jobs=1, neighbors="auto",
                 negative_gradient_method="auto", callbacks=None, callbacks_every_iters=50,
                 random_state=None, verbose=False, *, n_iter_without_progress=None, min_grad_norm=None,
                 device="cpu", backend="auto", knn_kwargs=None):
        values = locals()
        for name in _PARAMS:
            setattr(self, name, values[name])
        if isinstance(initialization, np.ndarray) and (initialization.ndim != 2
                                                       or initialization.shape[1] != n_components):
            raise ValueError(f"The 'initialization' array must have n_components = {n_components} columns; got "
                             f"shape {initialization.shape}.")

    def __repr__(self):
        changed = {n: getattr(self, n) for n in _PARAMS
                   if not _same(getattr(self, n), inspect.signature(_Estimator).parameters[n].default)}
        return f"TSNE({', '.join(f'{k}={v!r}' for k, v in changed.items())})"

    def _estimator(self):
        params = {name: getattr(self, name) for name in _PARAMS}
        if isinstance(self.perplexity, (list, tuple, np.ndarray)):
            params["perplexity"] = 30  # the affinities are built here; the value is not used
        if _is_bh(self.negative_gradient_method) and self.n_components > 3 and self.theta != 0:
            warnings.warn(f"A Barnes-Hut tree has at most 3 dimensions; with n_components={self.n_components} "
                          "the repulsion is summed exactly (theta=0, O(N^2) per iteration). openTSNE warns here "
                          "and plans to refuse; turbotsne.TSNE refuses. Pass negative_gradient_method='exact'.",
                          FutureWarning, stacklevel=3)
            params["theta"] = 0.0
        return _Estimator(**params)

    def _affinities(self, X):
        """Multiscale affinities when ``perplexity`` is a list; otherwise None (the estimator's own)."""
        if not isinstance(self.perplexity, (list, tuple, np.ndarray)):
            return None
        if X is None:
            raise ValueError("TSNE needs the data X or precomputed affinities; got neither.")
        return Multiscale(X, self.perplexity, method=self.neighbors, metric=self.metric,
                          metric_params=self.metric_params, n_jobs=self.n_jobs, random_state=self.random_state,
                          knn_kwargs=self.knn_kwargs)

    def _check_affinities(self, X, affinities):
        if affinities is None:
            return self._affinities(X)
        if not isinstance(affinities, Affinities):
            raise ValueError(f"The 'affinities' parameter of TSNE.fit must be an Affinities object or None. Got "
                             f"{type(affinities).__name__} instead.")
        return affinities

    def prepare_initial(self, X=None, affinities=None, initialization=None):
        """The affinities and the initial embedding, not optimised yet.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), optional
            The data; may be None when ``affinities`` are given (a ``"pca"``
            initialisation then falls back to ``"spectral"`` with a warning).
        affinities : turbotsne.affinity.Affinities, optional
            Precomputed affinities (e.g. ``PerplexityBasedNN``, ``Multiscale``).
        initialization : {"pca", "spectral", "random"} or array, optional
            Overrides the ``initialization`` parameter.

        Returns
        -------
        TSNEEmbedding
        """
        affinities = self._check_affinities(X, affinities)
        return self._estimator().prepare_initial(X, affinities=affinities, initialization=initialization)

    def fit(self, X=None, affinities=None, initialization=None):
        """Embed ``X`` (or the given ``affinities``): early exaggeration, then the normal regime.

        Parameters are those of :meth:`prepare_initial`.

        Returns
        -------
        TSNEEmbedding
            The optimised embedding; ``np.asarray`` gives the coordinates.
        """
        estimator = self._estimator()
        affinities = self._check_affinities(X, affinities)
        embedding = estimator.prepare_initial(X, affinities=affinities, initialization=initialization)
        return estimator._optimize_phases(embedding)


def _is_bh(method):
    try:
        return canonical_method(method) == "bh"
    except ValueError:  # reported by the estimator's own checks
        return False


def _same(a, b):
    try:
        return bool(a == b) and type(a) is type(b)
    except (TypeError, ValueError):
        return False


def kl_divergence_bh(embedding, P, dof=1, theta=0.5, n_jobs=1, reference_embedding=None):
    """KL(P || Q) of ``embedding`` with the Barnes-Hut approximation of Q's normalisation.

    ``reference_embedding`` (new points against a fixed reference) is not supported.
    """
    return _kl(embedding, P, "bh", reference_embedding, dof=dof, theta=theta, n_jobs=n_jobs)


def kl_divergence_fft(embedding, P, dof=1, n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1,
                      n_jobs=1, reference_embedding=None):
    """KL(P || Q) of ``embedding`` with the interpolation (FFT) approximation of Q's normalisation."""
    return _kl(embedding, P, "fft", reference_embedding, dof=dof, n_interpolation_points=n_interpolation_points,
               min_num_intervals=min_num_intervals, ints_in_interval=ints_in_interval, n_jobs=n_jobs)


def _kl(embedding, P, method, reference_embedding, **params):
    from .metrics import kl_divergence

    if reference_embedding is not None:
        raise ValueError("kl_divergence with a reference_embedding is not supported; embed the points with "
                         "TSNEEmbedding.transform and read PartialTSNEEmbedding.kl_divergence.")
    return kl_divergence(P, np.asarray(embedding, dtype=np.float64), method=method, **params)
