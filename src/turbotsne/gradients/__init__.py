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

from .attractive import attractive_forces, attractive_log_terms, entropy_term
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
        self._entropy = None
        self._P_id = None

    def _scratch(self, Y):
        """An (n, d) array and two (n,) arrays."""
        n, d = Y.shape
        if self._buffers is None or self._buffers[0].shape != (n, d):
            self._buffers = (np.empty((n, d)), np.empty(n), np.empty(n))
        return self._buffers

    def _entropy_of(self, P, values):
        if self._P_id is not id(P):
            self._entropy, self._P_id = entropy_term(values), id(P)
        return self._entropy


#: from this size of the float64 positions on (bytes), an approximate backend's attraction reads
#: the neighbours' positions from a float32 copy: half the bytes at random addresses. Measured
#: per call, copy included (``python bench/bench_attraction.py --data mnist1m``, 2 threads, AMD
#: EPYC Zen 4 with 32 MB of L3): 1M points (16 MB of positions) 727 -> 401 ms; 250k (4 MB) 46.0 ->
#: 47.5 ms and 70k 10.7 -> 11.1 ms (no gain below the threshold). The forces' relative error,
#: ~1e-5 at 70k, is far below the FFT interpolation's ~1e-3; the exact method never does this.
FLOAT32_NEIGHBOURS_FROM_BYTES = 8 * 2 ** 20


class SparseGradient(_Backend):
    """Sparse attraction over CSR P plus a pluggable repulsion.

    ``float32_neighbours``: read the neighbours' positions in the attraction from a float32
    copy once the positions take ``FLOAT32_NEIGHBOURS_FROM_BYTES`` (approximate methods).
    """

    def __init__(self, repulsion, float32_neighbours=False):
        super().__init__()
        self.repulsion = repulsion
        self.name = getattr(repulsion, "name", type(repulsion).__name__)
        self.float32_neighbours = float32_neighbours
        self._y32 = None

    def _neighbour_positions(self, Y):
        """``Y`` itself, or its float32 copy (a buffer kept across iterations) for large ``Y``."""
        if not self.float32_neighbours or Y.nbytes < FLOAT32_NEIGHBOURS_FROM_BYTES:
            return Y
        if self._y32 is None or self._y32.shape != Y.shape:
            self._y32 = np.empty(Y.shape, dtype=np.float32)
        self._y32[...] = Y
        return self._y32

    def gradient(self, Y, P, dof, exaggeration, out, compute_kl=False):
        rep, log_w, _ = self._scratch(Y)
        R = self._neighbour_positions(Y)
        attractive_forces(P.indptr, P.indices, P.data, Y, R, float(dof), float(exaggeration), out)
        Z = self.repulsion(Y, float(dof), rep)
        rep *= 1.0 / Z  # in place: no temporary per iteration
        out -= rep
        if not compute_kl:
            return None
        attractive_log_terms(P.indptr, P.indices, P.data, Y, Y, float(dof), log_w)
        return float(self._entropy_of(P, P.data) - log_w.sum() + np.log(Z) * P.data.sum())


class DenseExactGradient(_Backend):
    """scikit-learn's exact method: dense all-pairs P, attraction and repulsion fused."""

    name = "exact"

    def gradient(self, Y, P, dof, exaggeration, out, compute_kl=False):
        rep, row_z, row_log = self._scratch(Y)
        Z = exact_dense_gradient(P, Y, float(dof), float(exaggeration), out, rep, row_z)
        if not compute_kl:
            return None
        dense_log_terms(P, Y, float(dof), row_log)
        return float(self._entropy_of(P, P.ravel()) - row_log.sum() + np.log(Z) * P.sum())


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
        return float((self._entropy_of(P, P.data) - log_w.sum() + np.dot(row_sums, np.log(z))) / n)


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
    return SparseGradient(repulsion, float32_neighbours=not isinstance(repulsion, ExactRepulsion))
