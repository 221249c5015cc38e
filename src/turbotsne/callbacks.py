"""Callbacks and progress reporting for the optimiser.

Two kinds of hooks reach into :func:`turbotsne.optimizer.gradient_descent`:

*callbacks*
    ``callback(iteration, error, embedding) -> stop`` every
    ``callbacks_every_iters`` iterations (openTSNE's protocol; a truthy return
    value stops the optimisation). :class:`Callback` is the optional base
    class: its :meth:`~Callback.optimization_about_to_start` is called once
    before each ``optimize`` call. :class:`ErrorLogger` logs the KL divergence.
*progress*
    An object with ``start(n_iter)``, ``update(iteration, kl)`` (every
    iteration; ``kl`` is ``None`` on iterations where the KL divergence was not
    computed) and ``close()``. :class:`ProgressBar` draws a tqdm bar with the
    last known KL divergence and the time left; ``TSNEEmbedding.optimize``
    makes one per optimisation phase when ``verbose`` is true.
"""
from __future__ import annotations

import contextlib
import logging
import time

__all__ = ["Callback", "ErrorLogger", "VerifyExaggerationError", "ProgressBar", "make_progress", "progress_options"]

log = logging.getLogger(__name__)

#: keyword arguments of the bars that :func:`make_progress` makes (see :func:`progress_options`).
_PROGRESS_DEFAULTS = {}


class Callback:
    """Base class of optimisation callbacks (openTSNE's protocol).

    Subclasses implement ``__call__(iteration, error, embedding)`` and return
    a truthy value to stop the optimisation. Plain functions of the same
    signature work as callbacks too.
    """

    def optimization_about_to_start(self):
        """Called once at the start of every ``optimize`` call (a new phase)."""

    def __call__(self, iteration, error, embedding):  # pragma: no cover - interface
        """Receive the state of the optimisation.

        Parameters
        ----------
        iteration : int
            Iteration number within the current ``optimize`` call (from 1).
        error : float
            KL divergence of the un-exaggerated affinities at this iteration.
        embedding : ndarray of shape (n_samples, n_components)
            A copy of the current coordinates.

        Returns
        -------
        stop : bool
            True to stop the optimisation.
        """
        raise NotImplementedError


class ErrorLogger(Callback):
    """Log the KL divergence through :mod:`logging` each time it is called.

    Like openTSNE's ``ErrorLogger``, but the record goes to the
    ``turbotsne.callbacks`` logger at level ``INFO`` (no ``print``)::

        Iteration   50, KL divergence 2.3130, 50 iterations in 0.2101 s

    Parameters
    ----------
    logger : logging.Logger, optional
        Where to log (default: this module's logger).
    level : int, default=logging.INFO

    Attributes
    ----------
    history : list of (int, float)
        Every ``(iteration, error)`` received since construction.
    """

    def __init__(self, logger=None, level=logging.INFO):
        self.logger = logger if logger is not None else log
        self.level = level
        self.history = []
        self._last_time = None
        self._last_iter = 0

    def optimization_about_to_start(self):
        """Reset the timer and the iteration counter for a new phase."""
        self._last_time = time.perf_counter()
        self._last_iter = 0

    def __call__(self, iteration, error, embedding):
        """Log ``error`` at ``iteration``; never stops the optimisation."""
        now = time.perf_counter()
        if self._last_time is None or iteration < self._last_iter:
            self._last_time, self._last_iter = now, 0
        n_iters = iteration - self._last_iter
        self.logger.log(self.level, "Iteration %4d, KL divergence %6.4f, %d iterations in %.4f s",
                        iteration, float("nan") if error is None else error, n_iters, now - self._last_time)
        self.history.append((int(iteration), None if error is None else float(error)))
        self._last_time, self._last_iter = now, iteration
        return False


class VerifyExaggerationError(Callback):
    """Check, at every call, that the affinities of ``embedding`` are those it started with.

    Exaggeration must act on the gradient, never on ``P`` itself: the error a
    callback receives is the KL divergence of the un-exaggerated affinities.
    Raises ``RuntimeError`` when ``embedding.affinities.P`` has changed.
    """

    def __init__(self, embedding):
        self.embedding = embedding
        self.P = embedding.affinities.P.copy()

    def __call__(self, iteration, error, embedding):
        import numpy as np
        import scipy.sparse as sp

        P = self.embedding.affinities.P
        diff = abs(P - self.P).max() if sp.issparse(P) else np.abs(P - self.P).max()
        if diff > 0:
            raise RuntimeError(f"The affinities changed during the optimisation (by up to {diff:g}) at "
                               f"iteration {iteration}.")
        return False


def _tqdm():
    try:
        from tqdm.auto import tqdm
    except ImportError as e:  # pragma: no cover - tqdm is a runtime dependency
        raise ImportError("Progress bars need the 'tqdm' package: pip install tqdm") from e
    return tqdm


class ProgressBar:
    """A tqdm progress bar for one optimisation phase, with the KL divergence and the time left.

    Passed as ``progress`` to :func:`turbotsne.optimizer.gradient_descent`,
    which calls :meth:`start`, then :meth:`update` after every iteration and
    :meth:`close` at the end (also when the run stops early or is
    interrupted). The KL divergence shown is the last one computed (every 50
    iterations with ``verbose``).

    Parameters
    ----------
    desc : str, optional
        Label in front of the bar.
    disable : bool or None, default=None
        tqdm's rule: ``None`` hides the bar when the output is not a terminal.
    file : file-like, optional
        Where to draw (default ``sys.stderr``).
    leave : bool, default=True
        Keep the finished bar on screen.
    **tqdm_kwargs
        Passed on to ``tqdm`` (``mininterval``, ``ncols``, ...).

    Attributes
    ----------
    n : int
        Iterations reported so far.
    kl : float or None
        The last KL divergence received.
    bar : tqdm.tqdm or None
        The bar while the phase runs.
    """

    def __init__(self, desc=None, *, disable=None, file=None, leave=True, **tqdm_kwargs):
        self.desc = desc
        self.disable = disable
        self.file = file
        self.leave = leave
        self.tqdm_kwargs = tqdm_kwargs
        self.n = 0
        self.kl = None
        self.bar = None

    def start(self, n_iter):
        """Open a bar of ``n_iter`` iterations (closing any previous one)."""
        self.close()
        self.n, self.kl = 0, None
        self.bar = _tqdm()(total=int(n_iter), desc=self.desc, unit="it", disable=self.disable, file=self.file,
                           leave=self.leave, dynamic_ncols=True, **self.tqdm_kwargs)
        return self

    def update(self, iteration, kl=None):
        """Advance the bar to ``iteration``; show ``kl`` when it is not None."""
        if self.bar is None:
            return
        if kl is not None:
            self.kl = float(kl)
            self.bar.set_postfix_str(f"KL={self.kl:.4f}", refresh=False)
        if iteration > self.n:
            self.bar.update(iteration - self.n)
            self.n = iteration

    def close(self):
        """Close the bar (idempotent)."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def make_progress(verbose, exaggeration=1.0):
    """The progress hook ``TSNEEmbedding.optimize`` uses for ``verbose``.

    Parameters
    ----------
    verbose : bool, ProgressBar or None
        False/None: no bar; True: a :class:`ProgressBar` labelled by the
        phase; a ``ProgressBar`` (or any object with ``start``/``update``/
        ``close``): used as is.
    exaggeration : float, default=1.0
        Shown in the label (early exaggeration vs the normal regime).

    Returns
    -------
    ProgressBar or None
    """
    if not verbose:
        return None
    if all(hasattr(verbose, a) for a in ("start", "update", "close")):
        return verbose
    desc = "t-SNE" if exaggeration == 1 else f"t-SNE (exaggeration {exaggeration:g})"
    return ProgressBar(desc, **_PROGRESS_DEFAULTS)


@contextlib.contextmanager
def progress_options(**kwargs):
    """Set the options of the bars ``verbose`` makes, within a ``with`` block.

    Parameters
    ----------
    **kwargs
        :class:`ProgressBar` keyword arguments, e.g. ``disable=False`` to draw
        bars even when stderr is not a terminal, or ``file=...``.

    Examples
    --------
    >>> from turbotsne.callbacks import progress_options
    >>> with progress_options(disable=True):      # no bars, logging only
    ...     pass
    """
    previous = dict(_PROGRESS_DEFAULTS)
    _PROGRESS_DEFAULTS.update(kwargs)
    try:
        yield
    finally:
        _PROGRESS_DEFAULTS.clear()
        _PROGRESS_DEFAULTS.update(previous)
