"""Gradient backends on PyTorch tensors: exact and FFT interpolation, any device.

The same quantities as the CPU backends (:mod:`turbotsne.gradients`), in openTSNE's
scaling: with ``w_ij = (1 + |y_i - y_j|^2 / dof)^-dof``,

    g_i = exaggeration * sum_j p_ij w_ij^(1/dof) (y_i - y_j) - (1/Z) sum_{j != i} w_ij^((dof+1)/dof) (y_i - y_j)

``Z = sum_{i != j} w_ij``, and (when asked) the KL divergence of the un-exaggerated P,
``sum p log p - sum p log w + log(Z) sum p``. For transform (:class:`TorchPartialGradient`)
P is ``(n_new, n_ref)`` with rows summing to 1, the reference is fixed, each new point
has its own normaliser ``z_i = sum_j w_ij`` and the KL is the mean over new points.

A backend is built once per optimisation (:func:`make_torch_backend`,
:func:`make_torch_reference_backend`) and called once per iteration as
``kl = backend.gradient(Y, P, dof, exaggeration, out, compute_kl)``: ``Y`` and ``out``
are ``(n, d)`` tensors of the backend's ``dtype`` on its ``device`` (the full gradient
is written into ``out``), and ``P`` is the caller's scipy CSR matrix (or dense ndarray)
-- the same object every iteration. It is copied to the device once (on the first call,
and again only when a different object is passed: compared with ``is``) and never
modified. Without ``compute_kl`` nothing is copied back to the host by the exact
backend; the FFT backend reads the bounding box of ``Y`` (``2 d`` numbers) each call
to size its grid.

Attraction: the nonzeros of P are kept as row, column and value tensors; per chunk of
:data:`NNZ_CHUNK` nonzeros the terms ``p_ij w_ij^(1/dof) (y_i - y_j)`` are computed and
accumulated into ``out`` with ``index_add_``.

Exact repulsion: tiles of rows against all points, each tile holding at most
:data:`TILE_ELEMENTS` pair elements (the ``(rows, n, d)`` differences and a few
``(rows, n)`` arrays), so memory is ``O(n)`` beyond the output. A dense P (the exact
method on dense affinities) is fused: attraction and repulsion from the same tile.

FFT repulsion: the scheme of :mod:`turbotsne.gradients.fft` (see its docstring):
charges ``[1, y - c]`` spread with the quadratic B-spline onto the ``3^d`` nodes around
each point's nearest node (``index_add_`` on a flat grid), convolution with the kernels
``K2 = w^((dof+1)/dof)`` by ``torch.fft.rfftn`` / ``irfftn`` of the zero-padded
``(2M)^d`` grid, kernel spectra deconvolved by the squared B-spline spectrum
``sinc(w/2)^6`` per axis, gathering with the same weights. The grid rule is the CPU's
(:func:`torch_grid_size` equals :func:`turbotsne.gradients.fft.grid_size` wherever the
CPU's cap does not bind), so both backends use identical grids up to that cap.
``Z`` is the Parseval sum ``sum_m |Q_m|^2 K1hat_m / (2M)^d - n`` over the spectrum of
the unit charges (computed anyway): no extra inverse transform. The kernel spectra are
cached while the grid size, node spacing and ``dof`` are unchanged.

Differences from the CPU FFT backend:

* no near/far split. The padded grid is capped at :data:`TORCH_MAX_GRID_NODES` nodes
  (``2^26`` in 1-D and 2-D, ``2^25`` ~ 322^3 in 3-D, eight times the CPU's 3-D cap, so
  3-D embeddings up to ~50 units keep the fine grid); a wider embedding gets the
  largest grid under the cap (coarser boxes, logged once). In 3-D that costs accuracy
  at the extents t-SNE reaches. Measured: MEASURE_ME. Boxes wider than ``MAX_COARSENING`` x ``ints_in_interval`` (points
  that shot off) raise a ``ValueError``, as on the CPU;
* the kernel spectra come from a real FFT of the ``(2M)^d`` periodic kernel (no DCT
  in torch), and the transforms are not pruned.

Precision: ``dtype`` (float32 by default) for the node grids, the K2 spectrum, the
charge FFTs and every per-pair term; sums that feed ``Z``, the KL divergence, the
interpolation weights, the K1 spectrum and the Parseval sum are accumulated in float64
(float32 on devices without float64, i.e. MPS). The reference (transform) FFT path
convolves rarely (once per grid and ``dof``) and keeps its potentials in float64.
float32 agrees with the float64 CPU backends to ~1e-6 of the largest gradient (exact).

Memory: exact tiles are bounded by :data:`TILE_ELEMENTS`, attraction chunks by
:data:`NNZ_CHUNK`, spreading and gathering chunks by :data:`POINT_CHUNK_ELEMENTS`; the
FFT grids take about ``(2 d + 6) (2M)^d`` values of ``dtype`` (~2 GB at the 2-D cap,
~1 GB in 3-D).

Determinism: on the CPU every operation is deterministic (``index_add_`` accumulates
in index order). On CUDA ``index_add_`` uses atomic additions, so results are not
bit-reproducible from run to run (differences at rounding level).

``n_jobs`` is informational: the caller sets torch's thread count.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp
import torch

logger = logging.getLogger(__name__)

#: pair elements per exact tile (``rows * n``, times ``2 d + 3`` values each).
TILE_ELEMENTS = 2 ** 24
#: nonzeros of P per attraction chunk.
NNZ_CHUNK = 2 ** 22


def _accumulation_dtype(device):
    """float64 for sums, unless the device lacks it (MPS)."""
    return torch.float32 if device.type == "mps" else torch.float64


def _check_dtype(dtype):
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"The 'dtype' parameter must be torch.float32 or torch.float64. Got {dtype!r} instead.")
    return dtype


def _tiles(n_rows, n_cols, d):
    """Row blocks ``(b0, b1)`` of at most ``TILE_ELEMENTS`` pair elements (of ``2d + 3`` values)."""
    block = max(1, TILE_ELEMENTS // max(1, n_cols * (2 * d + 3)))
    for b0 in range(0, n_rows, block):
        yield b0, min(n_rows, b0 + block)


def _pair_tile(Yb, R, dof):
    """Differences ``(B, m, d)``, ``1 + d2/dof``, ``w = base^-dof`` and ``f = w / base``."""
    diff = Yb.unsqueeze(1) - R.unsqueeze(0)
    base = diff.square().sum(-1).mul_(1.0 / dof).add_(1.0)
    w = base.reciprocal() if dof == 1.0 else base.pow(-dof)
    f = w / base
    return diff, base, w, f


def _weighted_sum(coeff, diff):
    """``sum_j coeff_bj diff_bj`` per row: ``(B, d)`` (elementwise, no matmul: no TF32)."""
    return (coeff.unsqueeze(-1) * diff).sum(1)


# ---------------------------------------------------------------------------------------
# attraction over sparse P
# ---------------------------------------------------------------------------------------
def _attraction(Y, R, rows, cols, vals, dof, exaggeration, out):
    """``out = exaggeration * sum_j p_ij w_ij^(1/dof) (y_i - r_j)`` over the nonzeros."""
    out.zero_()
    inv_dof = 1.0 / dof
    for a in range(0, rows.shape[0], NNZ_CHUNK):
        r = rows[a:a + NNZ_CHUNK]
        diff = Y.index_select(0, r) - R.index_select(0, cols[a:a + NNZ_CHUNK])
        base = diff.square().sum(1).mul_(inv_dof).add_(1.0)
        coeff = vals[a:a + NNZ_CHUNK].mul(exaggeration).div_(base)
        out.index_add_(0, r, diff.mul_(coeff.unsqueeze(1)))


def _log_w_sum(Y, R, rows, cols, vals, dof, acc):
    """``sum p_ij log w_ij`` over the nonzeros (0-d tensor of dtype ``acc``)."""
    total = torch.zeros((), dtype=acc, device=Y.device)
    for a in range(0, rows.shape[0], NNZ_CHUNK):
        diff = Y.index_select(0, rows[a:a + NNZ_CHUNK]) - R.index_select(0, cols[a:a + NNZ_CHUNK])
        log1p = diff.square().sum(1).mul_(1.0 / dof).log1p_()
        total += (vals[a:a + NNZ_CHUNK] * log1p).sum(dtype=acc)
    return total * -dof


def _entropy(values):
    """``sum p log p`` over the positive entries (float64, on the host)."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[v > 0]
    return float(np.dot(v, np.log(v)))


# ---------------------------------------------------------------------------------------
# exact repulsion
# ---------------------------------------------------------------------------------------
def _exact_repulsion(Y, R, dof, out, acc, skip_self):
    """``out[i] = sum_j w_ij^((dof+1)/dof) (y_i - r_j)``; returns the per-row ``z_i = sum_j
    w_ij`` (dtype ``acc``); with ``skip_self`` (``R`` is ``Y``) the pair ``j = i`` is left out."""
    n, d = Y.shape
    z = torch.empty(n, dtype=acc, device=Y.device)
    for b0, b1 in _tiles(n, R.shape[0], d):
        diff, _, w, f = _pair_tile(Y[b0:b1], R, dof)
        if skip_self:
            w.diagonal(b0).zero_()
        out[b0:b1] = _weighted_sum(f, diff)
        z[b0:b1] = w.sum(1, dtype=acc)
    return z


class TorchExactRepulsion:
    """All-pairs repulsion, tiled; a callable ``(Y, dof, out) -> Z`` (0-d tensor)."""

    name = "exact"

    def __call__(self, Y, dof, out):
        return _exact_repulsion(Y, Y, float(dof), out, _accumulation_dtype(Y.device), True).sum()


class TorchExactReferenceRepulsion:
    """All-pairs repulsion of new points by a fixed reference; a callable
    ``(Y_new, dof, out) -> z`` (per new point, no self pairs)."""

    name = "exact"

    def __init__(self, reference, device, dtype):
        self.reference = torch.tensor(np.asarray(reference, dtype=np.float64), dtype=dtype, device=device)

    def __call__(self, Y, dof, out):
        return _exact_repulsion(Y, self.reference, float(dof), out, _accumulation_dtype(Y.device), False)


# ---------------------------------------------------------------------------------------
# the backends
# ---------------------------------------------------------------------------------------
class _TorchBackend:
    """Device, dtype and the device copy of P (rebuilt only for a different P object)."""

    def __init__(self, device, dtype):
        self.device = torch.device(device)
        self.dtype = _check_dtype(dtype)
        self.acc = _accumulation_dtype(self.device)
        self._P = None  # the caller's object whose device copy is held
        #: how many times a P was copied to the device (once per distinct P object).
        self.n_P_conversions = 0
        self._rep = None

    def _use(self, P):
        if P is not self._P:
            self._P = None
            self._convert(P)
            self._P = P
            self.n_P_conversions += 1

    def _scratch(self, Y):
        if self._rep is None or self._rep.shape != Y.shape or self._rep.device != Y.device:
            self._rep = torch.empty_like(Y)
        return self._rep

    def _check(self, Y, out):
        if Y.dtype != self.dtype or out.dtype != self.dtype:
            raise ValueError(f"Y and out must be {self.dtype} tensors; got {Y.dtype} and {out.dtype}.")
        if Y.shape != out.shape or Y.ndim != 2:
            raise ValueError(f"Y and out must have the same (n, d) shape; got {tuple(Y.shape)} and "
                             f"{tuple(out.shape)}.")


class _SparseP(_TorchBackend):
    """CSR P held as device row, column and value tensors plus host-side constants."""

    def _convert(self, P):
        if not sp.issparse(P):
            raise TypeError(f"P must be a scipy sparse matrix, got {type(P).__name__}.")
        P = P.tocsr()
        indptr = np.asarray(P.indptr, dtype=np.int64)
        rows = np.repeat(np.arange(P.shape[0], dtype=np.int64), np.diff(indptr))
        self._rows = torch.tensor(rows, device=self.device)
        self._cols = torch.tensor(np.asarray(P.indices, dtype=np.int64), device=self.device)
        self._vals = torch.tensor(np.asarray(P.data, dtype=np.float64), dtype=self.dtype, device=self.device)
        self._entropy = _entropy(P.data)
        self._p_sum = float(np.sum(P.data, dtype=np.float64))
        self._row_sums = torch.tensor(np.asarray(P.sum(axis=1), dtype=np.float64).ravel(), dtype=self.acc,
                                      device=self.device)


class TorchSparseGradient(_SparseP):
    """Sparse attraction over CSR P plus a pluggable repulsion ``(Y, dof, out) -> Z``."""

    def __init__(self, repulsion, device, dtype=torch.float32):
        super().__init__(device, dtype)
        self.repulsion = repulsion
        self.name = getattr(repulsion, "name", type(repulsion).__name__)

    def gradient(self, Y, P, dof, exaggeration, out, compute_kl=False):
        self._check(Y, out)
        self._use(P)
        dof = float(dof)
        _attraction(Y, Y, self._rows, self._cols, self._vals, dof, float(exaggeration), out)
        rep = self._scratch(Y)
        Z = self.repulsion(Y, dof, rep)
        out.sub_(rep.mul_(Z.reciprocal().to(self.dtype)))
        if not compute_kl:
            return None
        log_w = _log_w_sum(Y, Y, self._rows, self._cols, self._vals, dof, self.acc)
        return float(self._entropy - log_w.item() + math.log(Z.item()) * self._p_sum)


class TorchPartialGradient(_SparseP):
    """Gradient of new points against a fixed reference (transform); the semantics of
    :class:`turbotsne.gradients.PartialGradient`. ``repulsion(Y_new, dof, out) -> z``."""

    def __init__(self, reference, repulsion, device, dtype=torch.float32):
        super().__init__(device, dtype)
        self.reference = torch.tensor(np.asarray(reference, dtype=np.float64), dtype=self.dtype,
                                      device=self.device)
        self.repulsion = repulsion
        self.name = getattr(repulsion, "name", type(repulsion).__name__)

    def gradient(self, Y, P, dof, exaggeration, out, compute_kl=False):
        self._check(Y, out)
        if Y.shape[1] != self.reference.shape[1]:
            raise ValueError(f"Y has {Y.shape[1]} dimensions but the reference embedding has "
                             f"{self.reference.shape[1]}.")
        self._use(P)
        dof = float(dof)
        R = self.reference
        _attraction(Y, R, self._rows, self._cols, self._vals, dof, float(exaggeration), out)
        rep = self._scratch(Y)
        z = self.repulsion(Y, dof, rep)
        out.sub_(rep.div_(z.to(self.dtype).unsqueeze(1)))
        if not compute_kl:
            return None
        log_w = _log_w_sum(Y, R, self._rows, self._cols, self._vals, dof, self.acc)
        log_z = torch.dot(self._row_sums, z.to(self.acc).log())
        return float((self._entropy - log_w.item() + log_z.item()) / Y.shape[0])


class TorchDenseExactGradient(_TorchBackend):
    """scikit-learn's exact method on a dense P: attraction and repulsion fused per tile."""

    name = "exact"

    def _convert(self, P):
        P = np.asarray(P)
        self._Pt = torch.tensor(np.asarray(P, dtype=np.float64), dtype=self.dtype, device=self.device)
        self._entropy = _entropy(P)
        self._p_sum = float(np.sum(P, dtype=np.float64))

    def gradient(self, Y, P, dof, exaggeration, out, compute_kl=False):
        self._check(Y, out)
        self._use(P)
        dof = float(dof)
        n, d = Y.shape
        rep = self._scratch(Y)
        Pt, acc = self._Pt, self.acc
        Z = torch.zeros((), dtype=acc, device=Y.device)
        log_w = torch.zeros((), dtype=acc, device=Y.device)
        for b0, b1 in _tiles(n, n, d):
            diff, base, w, f = _pair_tile(Y[b0:b1], Y, dof)
            w.diagonal(b0).zero_()
            Pb = Pt[b0:b1]
            out[b0:b1] = _weighted_sum(Pb / base, diff).mul_(float(exaggeration))
            rep[b0:b1] = _weighted_sum(f, diff)
            Z += w.sum(dtype=acc)
            if compute_kl:
                log_w += torch.where(Pb > 0, Pb * base.log(), 0.0).sum(dtype=acc) * -dof
        out.sub_(rep.mul_(Z.reciprocal().to(self.dtype)))
        if not compute_kl:
            return None
        return float(self._entropy - log_w.item() + math.log(Z.item()) * self._p_sum)


# ---------------------------------------------------------------------------------------
# factories
# ---------------------------------------------------------------------------------------
def _check_method(method):
    if method == "bh":
        raise ValueError("negative_gradient_method='bh' is not available with backend='torch'; use 'fft' or "
                         "'exact'")
    if method not in ("exact", "fft"):
        raise ValueError(f"negative_gradient_method must be 'exact' or 'fft' with backend='torch'; got {method!r}.")


def make_torch_backend(method, P, *, device, dtype=torch.float32, theta=0.5, n_interpolation_points=3,
                       min_num_intervals=50, ints_in_interval=1, n_jobs=1, n_samples=None, n_components=2):
    """Torch backend for a canonical method ("exact" or "fft") and an affinity matrix P.

    ``P`` is a scipy CSR matrix (symmetric, sum 1) or a dense ndarray (only with
    "exact": the fused dense kernel). ``theta`` (Barnes-Hut only), ``n_jobs`` and
    ``n_samples`` are accepted for the CPU factory's signature and not used.
    """
    _check_method(method)
    _check_dtype(dtype)
    if isinstance(P, np.ndarray):
        if method != "exact":
            raise ValueError("A dense P is only supported by the exact method.")
        return TorchDenseExactGradient(device, dtype)
    if not sp.issparse(P):
        raise TypeError(f"P must be a dense ndarray or a scipy sparse matrix, got {type(P).__name__}.")
    if method == "exact":
        return TorchSparseGradient(TorchExactRepulsion(), device, dtype)
    if n_components is not None and not 1 <= n_components <= 3:
        raise ValueError(
            "negative_gradient_method='fft' supports n_components of 1, 2 or 3 only; "
            f"got n_components={n_components}. Use negative_gradient_method='exact'."
        )
    return TorchSparseGradient(TorchFFTRepulsion(n_interpolation_points, min_num_intervals, ints_in_interval),
                               device, dtype)


def make_torch_reference_backend(method, reference, *, device, dtype=torch.float32, theta=0.5,
                                 n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1, n_jobs=1):
    """Torch backend for transform: new points against the fixed ``reference`` ``(n_ref, d)``.

    Its ``gradient`` takes the ``(n_new, n_ref)`` CSR P of the new points (rows summing
    to 1); semantics of :class:`turbotsne.gradients.PartialGradient`.
    """
    _check_method(method)
    _check_dtype(dtype)
    reference = np.asarray(reference, dtype=np.float64)
    if reference.ndim != 2:
        raise ValueError(f"The reference embedding must be 2-D (m, d); got shape {reference.shape}.")
    if method == "exact":
        repulsion = TorchExactReferenceRepulsion(reference, device, dtype)
    else:
        if not 1 <= reference.shape[1] <= 3:
            raise ValueError(f"negative_gradient_method='fft' supports at most 3 embedding dimensions; got "
                             f"{reference.shape[1]}. Use negative_gradient_method='exact' instead.")
        repulsion = TorchFFTReferenceRepulsion(reference, device, dtype, n_interpolation_points,
                                               min_num_intervals, ints_in_interval)
    return TorchPartialGradient(reference, repulsion, device, dtype)
