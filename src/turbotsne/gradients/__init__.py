"""Gradient backends and their registry.

A backend is chosen once per optimisation and called once per iteration::

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

from .attractive import attractive_forces, attractive_forces_single, attractive_log_terms, entropy_term
from .exact import ExactReferenceRepulsion, ExactRepulsion, dense_log_terms, exact_dense_gradient

#: accepted names of each method (openTSNE's aliases plus "exact").
ALIASES = {
    "exact": "exact",
    "bh": "bh",
    "BH": "bh",
    "barneshut": "bh",
    "barnes-hut": "bh",
    "fft": "fft",
    "FFT": "fft",
    "interpolation": "fft",
    "auto": "auto",
}


def canonical_method(name) -> str:
    """Map a user-facing ``negative_gradient_method`` to "exact", "bh", "fft" or "auto"."""
    if not isinstance(name, str) or name not in ALIASES:
        raise ValueError(
            "The 'negative_gradient_method' parameter must be one of "
            f"{sorted(ALIASES)}. Got {name!r} instead."
        )
    return ALIASES[name]


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


def make_repulsion(method, *, theta=0.5, n_interpolation_points=3, min_num_intervals=50,
                   ints_in_interval=1, n_jobs=1, n_samples=None, n_components=2):
    """Build the repulsion callable of a canonical method ("exact", "bh", "fft")."""
    if method == "exact" or (method == "bh" and theta == 0):
        return ExactRepulsion()
    if method == "bh":
        from .barnes_hut import BarnesHutRepulsion

        if n_components > 3:
            raise ValueError(
                "negative_gradient_method='bh' (Barnes-Hut) supports at most 3 embedding dimensions; "
                f"got n_components={n_components}. Use negative_gradient_method='exact' instead."
            )
        return BarnesHutRepulsion(theta)
    if method == "fft":
        if n_components is not None and not 1 <= n_components <= 3:
            raise ValueError(
                "negative_gradient_method='fft' supports n_components of 1, 2 or 3 only; "
                f"got n_components={n_components}. Use negative_gradient_method='bh' or 'exact'."
            )
        from .fft import FFTRepulsion

        return FFTRepulsion(n_interpolation_points, min_num_intervals, ints_in_interval, n_jobs)
    raise ValueError(f"Unknown repulsion method {method!r}.")


#: below this many points "auto" picks Barnes-Hut, from it on FFT interpolation (1-3 dimensions).
AUTO_FFT_FROM = 10_000


def make_reference_repulsion(method, reference, *, theta=0.5, n_interpolation_points=3, min_num_intervals=50,
                             ints_in_interval=1, n_jobs=1):
    """Repulsion of new points by a fixed ``reference`` embedding, for transform.

    Returns a callable ``(Y_new, dof, out, z) -> None`` writing per new point
    ``out[i] = sum_j w_ij^((dof+1)/dof) (y_i - r_j)`` and ``z[i] = sum_j w_ij``
    (each new point has its own normaliser: new points do not interact).
    """
    if method == "auto":
        method = resolve_auto(reference.shape[0], reference.shape[1], reference=True)
    if method == "exact" or (method == "bh" and theta == 0):
        return ExactReferenceRepulsion(reference)
    if reference.shape[1] > 3:
        raise ValueError(f"negative_gradient_method={method!r} supports at most 3 embedding dimensions; got "
                         f"{reference.shape[1]}. Use negative_gradient_method='exact' instead.")
    if method == "bh":
        from .barnes_hut import BarnesHutReferenceRepulsion

        return BarnesHutReferenceRepulsion(reference, theta)
    if method == "fft":
        from .fft import FFTReferenceRepulsion

        return FFTReferenceRepulsion(reference, n_interpolation_points, min_num_intervals, ints_in_interval, n_jobs)
    raise ValueError(f"Unknown repulsion method {method!r}.")


def resolve_auto(n_samples, n_components, *, reference=False) -> str:
    """The method that "auto" stands for at this size.

    1-3 dimensions: Barnes-Hut below ``AUTO_FFT_FROM`` points, FFT interpolation
    from there on; more than 3 components: exact. Measured end to end in 3-D
    (``bench/bench_tsne.py --n-components 3``, 2 cores): 3,000 points FFT 6.1 s vs
    Barnes-Hut 6.3 s, 10,000 points 12.7 s vs 29.1 s, 70,000 points FFT 3.7x
    faster, at equal KL. With ``reference=True`` (the repulsion of new points by a
    fixed embedding, for ``transform``) 3-D stays on Barnes-Hut: the reference FFT
    has no near field, so its capped 3-D grid would be coarse.
    """
    if n_components > 3:
        return "exact"
    if n_samples < AUTO_FFT_FROM or (reference and n_components == 3):
        return "bh"
    return "fft"


def make_backend(method, P, **options):
    """Backend for a canonical method and an affinity matrix P.

    A dense ndarray P gets the fused dense exact kernel; a CSR P gets the sparse
    attraction plus the method's repulsion.
    """
    if method == "auto":
        method = resolve_auto(P.shape[0], options.get("n_components", 2))
    if isinstance(P, np.ndarray):
        if method != "exact":
            raise ValueError("A dense P is only supported by the exact method.")
        return DenseExactGradient()
    if not sp.issparse(P):
        raise TypeError(f"P must be a dense ndarray or a scipy sparse matrix, got {type(P).__name__}.")
    repulsion = make_repulsion(method, **options)
    return SparseGradient(repulsion, single_precision=not isinstance(repulsion, ExactRepulsion))
