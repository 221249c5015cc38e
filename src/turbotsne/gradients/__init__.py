"""The CPU gradient backends: one family for fit and transform, built by :func:`make_backend`.

The engine (:mod:`turbotsne.engine`) picks the module that builds backends (this one on the
CPU, :mod:`turbotsne.gpu.gradients` on torch); :func:`make_backend` maps a method ("exact",
"bh", "fft") and an optional fixed reference embedding (transform) to its backend. A backend is
chosen once per optimisation and called once per iteration::

    kl = backend.gradient(Y, P, dof, exaggeration, out, compute_kl)

It writes the full gradient (openTSNE's scaling: a quarter of dKL/dy, see
``tests/reference.py``) into ``out`` and returns the KL divergence of the
un-exaggerated P when ``compute_kl`` is true, else ``None``. All CPU backends
share the sparse attractive term (:mod:`.attractive`) and differ only in the
*repulsion*: a callable ``repulsion(Y, dof, out) -> Z`` that writes the
unnormalised repulsive forces ``r_i = sum_j w_ij^((dof+1)/dof) (y_i - y_j)``
into ``out`` and returns the normaliser ``Z = sum_{i != j} w_ij``.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ..engine import AUTO_FFT_FROM, AUTO_FFT_FROM_2D_FIT, NUMBA  # noqa: F401  (the CPU "auto" rule's thresholds)
from ..options import canonical_method, check_method
from .attractive import attractive_forces, attractive_forces_single, attractive_log_terms, entropy_term
from .exact import ExactReferenceRepulsion, ExactRepulsion, dense_log_terms, exact_dense_gradient


class _Backend:
    """Scratch buffers (kept while the shape is unchanged: no allocation per iteration) and the
    cached ``sum p log p`` of P, shared by every CPU backend."""

    def __init__(self):
        self._buffers = None
        self._entropy = (None, None)  # (the values it was computed from, sum p log p)

    def _scratch(self, Y):
        """An (n, d) array and two (n,) arrays."""
        n, d = Y.shape
        if self._buffers is None or self._buffers[0].shape != (n, d):
            self._buffers = (np.empty((n, d)), np.empty(n), np.empty(n))
        return self._buffers

    def _entropy_of(self, values):
        if self._entropy[0] is not values:  # P's values (dense: P itself), kept while the same array
            self._entropy = (values, entropy_term(values.ravel()))
        return self._entropy[1]


class SparseGradient(_Backend):
    """Sparse attraction over CSR P plus a pluggable repulsion.

    ``single_precision`` (the approximate methods): the attraction runs in float32
    (:func:`.attractive.attractive_forces_single`) over a float32 copy of the positions,
    refreshed per call, and P's values in float32 (P's own array when it is float32, as the
    affinities make it from ``neighbors.COMPACT_KNN_FROM_ENTRIES`` kNN entries on, else a copy
    made once per backend). Its relative error, <= ~4e-5, is far below the repulsions' ~1e-3.
    The exact method stays in float64 throughout; the KL divergence is float64 for all.
    """

    def __init__(self, repulsion, single_precision=False):
        super().__init__()
        self.repulsion = repulsion
        self.name = getattr(repulsion, "name", type(repulsion).__name__)
        self.single_precision = single_precision
        self._y32 = None
        self._p32 = (None, None)  # (P.data it was made from, its float32 values)

    def _attract(self, Y, P, dof, exaggeration, out):
        if not self.single_precision:
            attractive_forces(P.indptr, P.indices, P.data, Y, Y, dof, exaggeration, out)
            return
        if self._y32 is None or self._y32.shape != Y.shape:
            self._y32 = np.empty(Y.shape, dtype=np.float32)
        self._y32[...] = Y
        values = P.data
        if values.dtype != np.float32:
            if self._p32[0] is not values:
                self._p32 = (values, values.astype(np.float32))
            values = self._p32[1]
        attractive_forces_single(P.indptr, P.indices, values, Y, self._y32, dof, exaggeration, out)

    def gradient(self, Y, P, dof, exaggeration, out, compute_kl=False):
        rep, log_w, _ = self._scratch(Y)
        self._attract(Y, P, float(dof), float(exaggeration), out)
        Z = self.repulsion(Y, float(dof), rep)
        rep *= 1.0 / Z  # in place: no temporary per iteration
        out -= rep
        if not compute_kl:
            return None
        attractive_log_terms(P.indptr, P.indices, P.data, Y, Y, float(dof), log_w)
        return float(self._entropy_of(P.data) - log_w.sum() + np.log(Z) * P.data.sum())


class DenseExactGradient(_Backend):
    """scikit-learn's exact method: dense all-pairs P, attraction and repulsion fused."""

    name = "exact"

    def gradient(self, Y, P, dof, exaggeration, out, compute_kl=False):
        rep, row_z, row_log = self._scratch(Y)
        Z = exact_dense_gradient(P, Y, float(dof), float(exaggeration), out, rep, row_z)
        if not compute_kl:
            return None
        dense_log_terms(P, Y, float(dof), row_log)
        return float(self._entropy_of(P) - row_log.sum() + np.log(Z) * P.sum())


class PartialGradient(_Backend):
    """Gradient of new points against a fixed reference embedding (transform).

    P is ``(n_new, n_ref)`` with rows summing to 1; each new point has its own
    normaliser ``z_i`` (new points do not interact, so the result for a point
    does not depend on which other points are transformed with it). The KL
    returned is the mean over new points of ``KL(p_i || q_i)``.
    """

    def __init__(self, reference, repulsion):
        super().__init__()
        self.reference = np.ascontiguousarray(reference, dtype=np.float64)
        self.repulsion = repulsion
        self.name = getattr(repulsion, "name", type(repulsion).__name__)

    def gradient(self, Y, P, dof, exaggeration, out, compute_kl=False):
        n = Y.shape[0]
        rep, z, log_w = self._scratch(Y)
        attractive_forces(P.indptr, P.indices, P.data, Y, self.reference, float(dof), float(exaggeration), out)
        self.repulsion(Y, float(dof), rep, z)
        rep /= z[:, None]
        out -= rep
        if not compute_kl:
            return None
        attractive_log_terms(P.indptr, P.indices, P.data, Y, self.reference, float(dof), log_w)
        row_sums = np.asarray(P.sum(axis=1)).ravel()
        return float((self._entropy_of(P.data) - log_w.sum() + np.dot(row_sums, np.log(z))) / n)


def make_repulsion(method, *, reference=None, theta=0.5, n_interpolation_points=3, min_num_intervals=50,
                   ints_in_interval=1, n_jobs=1, n_samples=None, n_components=None):
    """The repulsion of a method ("exact", "bh", "fft"; "auto" by the CPU rule), one family for fit
    and transform.

    Without ``reference``: a callable ``(Y, dof, out) -> Z`` of the points among themselves. With a
    fixed ``reference`` embedding ``(m, d)`` (transform): ``(Y_new, dof, out, z) -> None`` writing per
    new point ``out[i] = sum_j w_ij^((dof+1)/dof) (y_i - r_j)`` and ``z[i] = sum_j w_ij`` (each new
    point has its own normaliser: new points do not interact). Barnes-Hut at ``theta=0`` is the exact sum.
    """
    if reference is not None:
        n_samples, n_components = reference.shape
    if method == "auto":
        method = NUMBA.auto_method(n_samples or 0, n_components or 2, reference=reference is not None)
    if method == "exact" or (method == "bh" and theta == 0):
        return ExactRepulsion() if reference is None else ExactReferenceRepulsion(reference)
    if n_components is not None:
        check_method(method, n_components, NUMBA, theta=theta)
    if method == "bh":
        from .barnes_hut import BarnesHutReferenceRepulsion, BarnesHutRepulsion

        return BarnesHutRepulsion(theta) if reference is None else BarnesHutReferenceRepulsion(reference, theta)
    if method == "fft":
        from .fft import FFTReferenceRepulsion, FFTRepulsion

        grid = (n_interpolation_points, min_num_intervals, ints_in_interval, n_jobs)
        return FFTRepulsion(*grid) if reference is None else FFTReferenceRepulsion(reference, *grid)
    raise ValueError(f"Unknown repulsion method {method!r}.")


def make_backend(method, P=None, *, reference=None, n_samples=None, n_components=None, **options):
    """The CPU gradient backend of a method for an affinity matrix ``P``.

    A dense ndarray P gets the fused dense exact kernel; a CSR P the sparse attraction plus the
    method's repulsion (in single precision for the approximate methods). With a fixed
    ``reference`` embedding the backend optimises new points against it (:class:`PartialGradient`;
    ``P`` is then given per call). ``options``: the repulsion's (``theta``, grid parameters, ``n_jobs``).
    """
    dense = isinstance(P, np.ndarray)
    if reference is None:
        if not dense and not sp.issparse(P):
            raise TypeError(f"P must be a dense ndarray or a scipy sparse matrix, got {type(P).__name__}.")
        n_samples = P.shape[0]
        n_components = 2 if n_components is None else n_components
    else:
        reference = np.ascontiguousarray(reference, dtype=np.float64)
        n_samples, n_components = reference.shape
    if method == "auto":
        method = NUMBA.auto_method(n_samples, n_components, dense=dense, reference=reference is not None)
    if dense:
        check_method(method, n_components, NUMBA, dense=True)
        return DenseExactGradient()
    repulsion = make_repulsion(method, reference=reference, n_samples=n_samples, n_components=n_components,
                               **options)
    if reference is not None:
        return PartialGradient(reference, repulsion)
    return SparseGradient(repulsion, single_precision=not isinstance(repulsion, ExactRepulsion))
