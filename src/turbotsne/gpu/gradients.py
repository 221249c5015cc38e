"""Gradient backends on PyTorch tensors: exact and FFT interpolation, any device.

The same quantities as the CPU backends (:mod:`turbotsne.gradients`), in openTSNE's scaling
and with their interface: a backend is built once per optimisation by :func:`make_backend`
(for transform, with a fixed reference embedding) and called once per iteration as
``kl = backend.gradient(Y, P, dof, exaggeration, out, compute_kl)``, ``Y`` and ``out`` being
``(n, d)`` tensors of the backend's ``dtype`` on its ``device``. ``P`` (scipy CSR, or a dense
ndarray for the exact method) is copied to the device once per distinct object and never
modified. The FFT repulsion follows the CPU's grid rule and interpolation; where its grid cap
binds, a fit sums that call's repulsion exactly and transform uses the coarser grid (each
logged once); points that shot off raise ``ValueError``. Memory is bounded by the chunk sizes
below. float32 (the default) agrees with the float64 CPU backends to ~1e-5; on CUDA
``index_add_`` is atomic, so results are not bit-reproducible from run to run. ``n_jobs`` is
informational: the caller sets torch's threads.
Design, precision and measurements: docs/design/gpu.md.
"""
from __future__ import annotations

import logging
import math

import numpy as np
import scipy.sparse as sp
import torch

from .._logging import log_once
from ..gradients.grid import ISOLATION_RADIUS, REFERENCE_GRID_MARGIN, STENCIL, cube_extent, grid_size, ladder_spacing

logger = logging.getLogger(__name__)

#: pair elements per exact tile (``rows * n``, times ``2 d + 3`` values each).
TILE_ELEMENTS = 2 ** 24
#: nonzeros of P per attraction chunk.
NNZ_CHUNK = 2 ** 22
#: stencil values (points x 3^d x channels) per spreading / gathering chunk.
POINT_CHUNK_ELEMENTS = 2 ** 24
#: cap on the nodes of the zero-padded FFT grid ``(2M)^d``, per dimension count (no
#: near/far split on torch: a wider embedding gets coarser boxes).
TORCH_MAX_GRID_NODES = {1: 2 ** 26, 2: 2 ** 26, 3: 2 ** 25}


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


def _pair_tile(YbT, RT, dof):
    """Differences ``(d, B, m)`` of the columns of ``YbT`` ``(d, B)`` and ``RT`` ``(d, m)`` (the
    coordinate axis first: the reductions over it and over ``m`` are contiguous), ``1 +
    d2/dof``, ``w = base^-dof`` and ``f = w / base``."""
    diff = YbT.unsqueeze(2) - RT.unsqueeze(1)
    base = diff.square().sum(0).mul_(1.0 / dof).add_(1.0)
    w = base.reciprocal() if dof == 1.0 else base.pow(-dof)
    f = w / base
    return diff, base, w, f


def _weighted_sum(coeff, diff):
    """``sum_j coeff_bj diff_kbj`` per row: ``(B, d)`` (elementwise, no matmul: no TF32)."""
    return (coeff * diff).sum(2).T


def _row_sum(w, acc):
    """``sum w`` with rows summed in ``w``'s dtype and the row sums in ``acc``."""
    return w.sum(1).to(acc).sum()


# ---------------------------------------------------------------------------------------
# attraction over sparse P
# ---------------------------------------------------------------------------------------
def _attraction(YT, RT, rows, cols, vals, dof, exaggeration, out):
    """``out = exaggeration * sum_j p_ij w_ij^(1/dof) (y_i - r_j)`` over the nonzeros
    (``YT``, ``RT``: the points as ``(d, n)`` columns)."""
    out.zero_()
    inv_dof = 1.0 / dof
    for a in range(0, rows.shape[0], NNZ_CHUNK):
        r = rows[a:a + NNZ_CHUNK]
        diff = YT.index_select(1, r) - RT.index_select(1, cols[a:a + NNZ_CHUNK])
        base = diff.square().sum(0).mul_(inv_dof).add_(1.0)
        coeff = vals[a:a + NNZ_CHUNK].mul(exaggeration).div_(base)
        out.index_add_(0, r, diff.mul_(coeff).T)


def _log_w_sum(YT, RT, rows, cols, vals, dof, acc):
    """``sum p_ij log w_ij`` over the nonzeros (0-d tensor of dtype ``acc``)."""
    total = torch.zeros((), dtype=acc, device=YT.device)
    for a in range(0, rows.shape[0], NNZ_CHUNK):
        diff = YT.index_select(1, rows[a:a + NNZ_CHUNK]) - RT.index_select(1, cols[a:a + NNZ_CHUNK])
        log1p = diff.square().sum(0).mul_(1.0 / dof).log1p_()
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
def _exact_repulsion(Y, dof, out, acc):
    """``out[i] = sum_{j != i} w_ij^((dof+1)/dof) (y_i - y_j)``; returns ``Z = sum_{i != j} w_ij``
    (0-d tensor of dtype ``acc``)."""
    n, d = Y.shape
    YT = Y.T.contiguous()
    Z = torch.zeros((), dtype=acc, device=Y.device)
    for b0, b1 in _tiles(n, n, d):
        diff, _, w, f = _pair_tile(YT[:, b0:b1], YT, dof)
        w.diagonal(b0).zero_()
        out[b0:b1] = _weighted_sum(f, diff)
        Z += _row_sum(w, acc)
    return Z


def _exact_reference_repulsion(Y, RT, dof, out, acc):
    """Normalised repulsion of new points by the reference (``RT``: ``(d, m)``): ``out[i] =
    sum_j w_ij^((dof+1)/dof) (y_i - r_j) / z_i``; returns ``z_i = sum_j w_ij`` (dtype ``acc``).

    Per row the kernel is scaled by its largest value (``w_ij / max_j w_ij``, computed
    from the logarithms), so that a new point far from every reference point keeps its
    force in float32 (at ``dof = 100`` its ``w_ij`` would underflow)."""
    n, d = Y.shape
    YT = Y.T.contiguous()
    z = torch.empty(n, dtype=acc, device=Y.device)
    for b0, b1 in _tiles(n, RT.shape[1], d):
        diff = YT[:, b0:b1].unsqueeze(2) - RT.unsqueeze(1)
        log_base = diff.square().sum(0).mul_(1.0 / dof).log1p_()
        log_min = log_base.amin(1, keepdim=True)
        w = log_base.sub(log_min).mul_(-dof).exp_()  # w_ij / max_j w_ij
        f = w * log_base.neg_().exp_()  # ... times w_ij^(1/dof)
        w_sum = w.sum(1)
        out[b0:b1] = _weighted_sum(f, diff) / w_sum.unsqueeze(1)
        z[b0:b1] = w_sum.to(acc) * torch.exp(log_min.squeeze(1).to(acc) * -dof)
    return z


class TorchExactRepulsion:
    """All-pairs repulsion, tiled; a callable ``(Y, dof, out) -> Z`` (0-d tensor)."""

    name = "exact"

    def __call__(self, Y, dof, out):
        return _exact_repulsion(Y, float(dof), out, _accumulation_dtype(Y.device))


class TorchExactReferenceRepulsion:
    """All-pairs repulsion of new points by a fixed reference; a callable
    ``(Y_new, dof, out) -> z`` writing the *normalised* repulsion ``r_i / z_i`` into ``out``
    and returning ``z_i`` (per new point, no self pairs)."""

    name = "exact"

    def __init__(self, reference, device, dtype):
        self.reference_T = torch.tensor(np.asarray(reference, dtype=np.float64).T, dtype=dtype, device=device)

    def __call__(self, Y, dof, out):
        return _exact_reference_repulsion(Y, self.reference_T, float(dof), out, _accumulation_dtype(Y.device))


# ---------------------------------------------------------------------------------------
# FFT interpolation
# ---------------------------------------------------------------------------------------
def torch_grid_size(extent, d, n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1.0):
    """Boxes per dimension for a bounding cube of side ``extent``: the rule of
    :func:`turbotsne.gradients.fft.grid_size` under the cap :data:`TORCH_MAX_GRID_NODES`.

    A wider embedding gets the largest grid under the cap (boxes wider than
    ``ints_in_interval``; logged once per process) as long as its boxes are at most
    ``MAX_COARSENING`` times ``ints_in_interval`` wide; beyond that a ``ValueError``.
    """
    return grid_size(extent, d, n_interpolation_points, min_num_intervals, ints_in_interval,
                     caps=TORCH_MAX_GRID_NODES, cap_name="TORCH_MAX_GRID_NODES", fallback="exact",
                     on_cap=_log_capped_grid)


def _log_capped_grid(d, extent, n_fit, width):
    """The ``on_cap`` hook of :func:`torch_grid_size`: a warning, once per process."""
    log_once(logger, logging.WARNING,
             "The %d-D embedding spans %.4g units: the torch FFT repulsion grid is capped at %d boxes per "
             "dimension (TORCH_MAX_GRID_NODES[%d]), so its boxes are %.3g units wide instead of at most "
             "ints_in_interval = %g and the repulsion is much less accurate (see turbotsne.gpu.gradients; "
             "logged once).", d, extent, n_fit, d, extent / n_fit, width)


def _finite_bounds(Y):
    """Per-dimension ``(lo, hi)`` of ``Y`` as float64 host arrays; ``ValueError`` on NaN or inf."""
    bounds = torch.stack([Y.amin(0), Y.amax(0)]).to("cpu", torch.float64).numpy()
    if not np.all(np.isfinite(bounds)):
        raise ValueError("The embedding contains NaN or inf; the FFT repulsion needs finite values.")
    return bounds[0], bounds[1]


def _check_fft_params(n_interpolation_points, min_num_intervals, ints_in_interval):
    p = int(n_interpolation_points)
    if not 1 <= p <= 8:
        raise ValueError("The 'n_interpolation_points' parameter must be an integer in [1, 8]. "
                         f"Got {n_interpolation_points!r} instead.")
    if not int(min_num_intervals) >= 1:
        raise ValueError("The 'min_num_intervals' parameter must be a positive integer. "
                         f"Got {min_num_intervals!r} instead.")
    if not float(ints_in_interval) > 0:
        raise ValueError("The 'ints_in_interval' parameter must be a positive number. "
                         f"Got {ints_in_interval!r} instead.")
    return p, int(min_num_intervals), float(ints_in_interval)


class _Grid:
    """One grid: ``n_boxes^d`` boxes of ``p^d`` nodes, ``M = n_boxes p`` nodes per axis at
    ``origin + j spacing`` (flat, C order, unpadded: ``rfftn`` pads to ``2M``), the flat
    offsets of the ``3^d`` stencil nodes and the stencil digits."""

    def __init__(self, lo, extent, n_boxes, spacing, d, p, device):
        self.lo, self.extent, self.n_boxes, self.spacing = lo, extent, n_boxes, spacing
        self.d, self.p = d, p
        self.m = m = n_boxes * p
        self.origin = lo - 0.5 * spacing  # node j at lo + (j - 1/2) spacing
        self.centre = lo + 0.5 * extent
        digits = np.indices((STENCIL,) * d).reshape(d, -1).T  # (3^d, d), C order
        strides = m ** np.arange(d - 1, -1, -1, dtype=np.int64)
        self.combo = torch.tensor(digits, device=device)
        self.strides = torch.tensor(strides, device=device)
        self.offset = torch.tensor(digits @ strides, device=device)
        self.size = m ** d

    def key(self):
        return (self.d, self.m, self.spacing)

    def stencil(self, Y, acc):
        """Per point: flat first stencil node ``base``, flat box ``box`` and the ``3^d``
        quadratic B-spline weights (dtype ``acc``) around the nearest node (see
        :func:`turbotsne.gradients.fft_kernels.interpolation_weights`)."""
        dev = Y.device
        origin = torch.tensor(self.origin, dtype=acc, device=dev)
        s = (Y.to(acc) - origin) * (1.0 / self.spacing)
        j = torch.floor(s + 0.5).clamp_(1, self.m - 2)
        x = s - j
        a, c = 0.5 - x, 0.5 + x
        lw = torch.stack([0.5 * a * a, 0.75 - x * x, 0.5 * c * c], dim=-1)  # (n, d, 3)
        jj = j.long() - 1
        base = (jj * self.strides).sum(1)
        box_strides = self.n_boxes ** torch.arange(self.d - 1, -1, -1, device=dev)
        box = (torch.div(jj, self.p, rounding_mode="floor") * box_strides).sum(1)
        weights = lw[:, 0, self.combo[:, 0]]
        for k in range(1, self.d):
            weights = weights * lw[:, k, self.combo[:, k]]
        return base, box, weights


def _point_chunks(n, d):
    step = max(1, POINT_CHUNK_ELEMENTS // (STENCIL ** d * (d + 3)))
    for a in range(0, n, step):
        yield a, min(n, a + step)


def _spread(grid, Y, base, weights, centre, out_dtype):
    """Charges ``[1, y - c]`` onto a ``(d + 1, M^d)`` node grid of ``out_dtype``."""
    n, d = Y.shape
    nodes = torch.zeros((d + 1, grid.size), dtype=out_dtype, device=Y.device)
    c = torch.tensor(centre, dtype=weights.dtype, device=Y.device)
    for a, b in _point_chunks(n, d):
        charges = torch.cat([torch.ones(1, b - a, dtype=weights.dtype, device=Y.device),
                             (Y[a:b].to(weights.dtype) - c).T])
        vals = (charges.unsqueeze(2) * weights[a:b].unsqueeze(0)).to(out_dtype)
        index = (base[a:b].unsqueeze(1) + grid.offset).reshape(-1)
        nodes.index_add_(1, index, vals.reshape(d + 1, -1))
    return nodes


def _gather(phi, Y, base, weights, grid, acc):
    """Interpolated potentials ``(channels, n)`` (dtype ``acc``) at the points."""
    n, d = Y.shape
    res = torch.empty((phi.shape[0], n), dtype=acc, device=Y.device)
    for a, b in _point_chunks(n, d):
        index = (base[a:b].unsqueeze(1) + grid.offset).reshape(-1)
        vals = phi.index_select(1, index).view(phi.shape[0], b - a, -1).to(acc)
        res[:, a:b] = (vals * weights[a:b].to(acc)).sum(-1)
    return res


def _forces(pot, Y, centre, acc):
    """``r_i = (y_i - c) phi_0 - phi_{1..d}`` from the gathered potentials."""
    c = torch.tensor(centre, dtype=acc, device=Y.device)
    d = Y.shape[1]
    return (Y.to(acc) - c) * pot[0].unsqueeze(1) - pot[1:d + 1].T


def _kernel_spectrum(d, m, spacing, dof, which, dtype, device):
    """Real half spectrum ``((2M)^(d-1), ..., M + 1)`` of K1 (``which = 1``) or K2 on the
    2M-periodic node lattice, deconvolved by the squared B-spline spectrum per axis."""
    length = 2 * m
    idx = torch.arange(length, dtype=dtype, device=device)
    x2 = (torch.minimum(idx, length - idx) * spacing) ** 2
    d2 = x2
    for _ in range(d - 1):
        d2 = d2.unsqueeze(-1) + x2
    base = d2.mul_(1.0 / dof).add_(1.0)
    del d2
    kern = base.pow_(-dof) if which == 1 else base.pow_(-(dof + 1.0))
    spec = torch.fft.rfftn(kern, dim=tuple(range(d))).real
    del kern, base
    # 1 / |B^(w)|^2 per axis, B^(w) = sinc(w / 2)^3 at the frequencies w = pi m / M
    full = torch.sinc(torch.minimum(idx, length - idx) / length) ** -(2 * STENCIL)
    half = full[:m + 1]
    for k in range(d):
        factor = half if k == d - 1 else full
        spec = spec * factor.reshape((1,) * k + (-1,) + (1,) * (d - 1 - k))
    return spec.contiguous()


class _FFTBase:
    """Parameters, grid rule and cached kernel spectra shared by the FFT repulsions."""

    name = "fft"

    def __init__(self, n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1):
        p, min_int, ints = _check_fft_params(n_interpolation_points, min_num_intervals, ints_in_interval)
        self.n_interpolation_points, self.min_num_intervals, self.ints_in_interval = p, min_int, ints
        self._spectra_key = None
        self._spectra = None

    def _grid_for(self, lo, hi, d, device):
        """The grid covering ``[lo, hi]`` (see :meth:`turbotsne.gradients.fft._FFTBase._grid_for`)."""
        p = self.n_interpolation_points
        extent = cube_extent(lo, hi)
        margin = (STENCIL - 1) * self.ints_in_interval / p
        n_boxes = torch_grid_size(extent + margin, d, p, self.min_num_intervals, self.ints_in_interval)
        n_boxes = max(n_boxes, -(-(STENCIL + 1) // p))  # at least one node inside
        spacing = ladder_spacing(extent / (n_boxes * p - (STENCIL - 1)), self.ints_in_interval / p)
        return _Grid(np.asarray(lo, dtype=np.float64), extent, n_boxes, spacing, d, p, device)

    def _kernel_spectra(self, grid, dof, k2_dtype, k1_dtype, device):
        """``(khat2, khat1)``, cached while the grid size, spacing, ``dof`` and dtypes are unchanged."""
        key = grid.key() + (dof, k2_dtype, k1_dtype, str(device))
        if self._spectra_key != key:
            self._spectra_key = self._spectra = None
            acc = _accumulation_dtype(device)
            k2 = _kernel_spectrum(grid.d, grid.m, grid.spacing, dof, 2, acc, device).to(k2_dtype)
            k1 = _kernel_spectrum(grid.d, grid.m, grid.spacing, dof, 1, acc, device).to(k1_dtype)
            self._spectra, self._spectra_key = (k2, k1), key
        return self._spectra


def _transform_dims(d):
    return tuple(range(1, d + 1))


def _log_exact_fallback(d, grid):
    """A warning, once per process, that a capped grid's repulsion is summed exactly."""
    log_once(logger, logging.WARNING,
             "The %d-D embedding spans %.4g units: the torch FFT grid would need boxes %.3g units "
             "wide (TORCH_MAX_GRID_NODES[%d] binds), too coarse to be accurate; the repulsion is "
             "summed exactly on such iterations instead (logged once).",
             d, grid.extent, grid.spacing * grid.p, d)


class TorchFFTRepulsion(_FFTBase):
    """Repulsion by FFT-accelerated interpolation; a callable ``(Y, dof, out) -> Z`` (0-d
    tensor). Parameters as :class:`turbotsne.gradients.fft.FFTRepulsion`."""

    def __call__(self, Y, dof, out):
        n, d = Y.shape
        if d not in (1, 2, 3):
            raise ValueError("negative_gradient_method='fft' supports n_components of 1, 2 or 3 only; "
                             f"got {d}. Use negative_gradient_method='exact'.")
        dev, dtype = Y.device, Y.dtype
        acc = _accumulation_dtype(dev)
        dof = float(dof)
        if n < 2:
            out.zero_()
            return torch.zeros((), dtype=acc, device=dev)
        grid = self._grid_for(*_finite_bounds(Y), d, dev)
        self.grid = grid
        if grid.spacing * grid.p > self.ints_in_interval * (1 + 1e-9):  # the cap binds: coarse boxes
            _log_exact_fallback(d, grid)
            return _exact_repulsion(Y, dof, out, acc).sum()
        base, _, weights = grid.stencil(Y, acc)
        nodes = _spread(grid, Y, base, weights, grid.centre, dtype)
        khat2, khat1 = self._kernel_spectra(grid, dof, dtype, acc, dev)
        length, dims = 2 * grid.m, _transform_dims(d)
        spec = torch.fft.rfftn(nodes.view((d + 1,) + (grid.m,) * d), s=(length,) * d, dim=dims)
        del nodes
        # Z by Parseval over the half spectrum of the unit charges (columns 1..M-1 count twice)
        q0 = spec[0]
        power = (q0.real.to(acc).square() + q0.imag.to(acc).square()).mul_(khat1)  # no in-place on views of spec
        z_total = 2.0 * power.sum(dtype=acc) - power[..., 0].sum(dtype=acc) - power[..., -1].sum(dtype=acc)
        del power, q0
        spec *= khat2
        phi = torch.fft.irfftn(spec, s=(length,) * d, dim=dims)
        del spec
        phi = phi[(slice(None),) + (slice(0, grid.m),) * d].reshape(d + 1, -1)
        pot = _gather(phi, Y, base, weights, grid, acc)
        out.copy_(_forces(pot, Y, grid.centre, acc))
        return z_total / float(length) ** d - n


class TorchFFTReferenceRepulsion(_FFTBase):
    """Repulsion of new points by a fixed reference by FFT interpolation; a callable
    ``(Y_new, dof, out) -> z`` writing the normalised repulsion ``r_i / z_i`` into ``out``
    and returning ``z_i`` (per new point, float64 where the device has it).

    As :class:`turbotsne.gradients.fft.FFTReferenceRepulsion`: the grid covers the union
    of the reference's and the new points' bounding boxes widened by
    ``REFERENCE_GRID_MARGIN`` of its extent on every side, and is kept while every new
    point stays inside it (a point outside triggers a new grid, so points outside the
    reference's box are handled by the grid itself). The reference charges are spread
    once per grid, the node potentials ``K2 * [1, r - c]`` and ``K1 * 1`` computed once
    per grid and ``dof`` (in float64); a call with an unchanged grid only interpolates.
    With ``dof > 1`` a new point whose box has no reference point within
    ``ISOLATION_RADIUS`` (rounded up to whole boxes) is summed exactly over the reference.
    """

    def __init__(self, reference, device, dtype=torch.float32, n_interpolation_points=3, min_num_intervals=50,
                 ints_in_interval=1):
        super().__init__(n_interpolation_points, min_num_intervals, ints_in_interval)
        R = np.array(reference, dtype=np.float64)
        if R.ndim != 2:
            raise ValueError(f"The reference embedding must be 2-D (m, d); got shape {R.shape}.")
        self.device = torch.device(device)
        self.acc = _accumulation_dtype(self.device)
        self._exact = TorchExactReferenceRepulsion(R, self.device, dtype)
        self._R = torch.tensor(R, dtype=self.acc, device=self.device)
        self._ref_bounds = (R.min(axis=0), R.max(axis=0)) if R.shape[0] else None
        self.grid = None
        self.n_grids = 0  # grids chosen so far
        self._phi_key = None
        self._phi = None

    def _regrid(self, lo_y, hi_y):
        d = self._R.shape[1]
        lo = np.minimum(lo_y, self._ref_bounds[0])
        hi = np.maximum(hi_y, self._ref_bounds[1])
        margin = REFERENCE_GRID_MARGIN * float(np.max(hi - lo))
        self.grid = self._phi = self._phi_key = None
        grid = self._grid_for(lo - margin, hi + margin, d, self.device)
        base, box, weights = grid.stencil(self._R, self.acc)
        self._charges = _spread(grid, self._R, base, weights, grid.centre, self.acc)
        # boxes with a reference point within ISOLATION_RADIUS, rounded up to whole boxes
        occupied = torch.zeros(grid.n_boxes ** d, dtype=self.acc, device=self.device)
        occupied[box] = 1.0
        reach = int(math.ceil(ISOLATION_RADIUS / (grid.spacing * grid.p)))
        pool = (torch.nn.functional.max_pool1d, torch.nn.functional.max_pool2d,
                torch.nn.functional.max_pool3d)[d - 1]
        near = pool(occupied.view((1, 1) + (grid.n_boxes,) * d), 2 * reach + 1, stride=1, padding=reach)
        self._near = near.reshape(-1) > 0
        self.grid = grid
        self.n_grids += 1

    def _potentials(self, dof):
        grid, acc = self.grid, self.acc
        d, length, dims = grid.d, 2 * grid.m, _transform_dims(grid.d)
        khat2, khat1 = self._kernel_spectra(grid, dof, acc, acc, self.device)
        spec = torch.fft.rfftn(self._charges.view((d + 1,) + (grid.m,) * d), s=(length,) * d, dim=dims)
        spec = torch.cat([spec * khat2, (spec[0] * khat1).unsqueeze(0)])
        phi = torch.fft.irfftn(spec, s=(length,) * d, dim=dims)
        return phi[(slice(None),) + (slice(0, grid.m),) * d].reshape(d + 2, -1).contiguous()

    def __call__(self, Y, dof, out):
        n, d = Y.shape
        dof = float(dof)
        if self._ref_bounds is None or n == 0:
            out.zero_()
            return torch.zeros(n, dtype=self.acc, device=Y.device)
        lo_y, hi_y = _finite_bounds(Y)
        grid = self.grid
        if grid is None or np.any(lo_y < grid.lo) or np.any(hi_y > grid.lo + grid.extent):
            self._regrid(lo_y, hi_y)
            grid = self.grid
        if self._phi_key != (self.n_grids, dof):
            self._phi_key = None
            self._phi = self._potentials(dof)
            self._phi_key = (self.n_grids, dof)
        base, box, weights = grid.stencil(Y, self.acc)
        pot = _gather(self._phi, Y, base, weights, grid, self.acc)
        z = pot[d + 1].contiguous()
        out.copy_(_forces(pot, Y, grid.centre, self.acc).div_(z.unsqueeze(1)))
        if dof > 1.0:
            far = torch.nonzero(~self._near[box]).squeeze(1)
            if far.numel():
                out_far = torch.empty((far.numel(), d), dtype=Y.dtype, device=Y.device)
                z[far] = self._exact(Y.index_select(0, far), dof, out_far).to(z.dtype)
                out[far] = out_far
        return z


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
        YT = Y.T.contiguous()
        _attraction(YT, YT, self._rows, self._cols, self._vals, dof, float(exaggeration), out)
        rep = self._scratch(Y)
        Z = self.repulsion(Y, dof, rep)
        out.sub_(rep.mul_(Z.reciprocal().to(self.dtype)))
        if not compute_kl:
            return None
        log_w = _log_w_sum(YT, YT, self._rows, self._cols, self._vals, dof, self.acc)
        return float(self._entropy - log_w.item() + math.log(Z.item()) * self._p_sum)


class TorchPartialGradient(_SparseP):
    """Gradient of new points against a fixed reference (transform); the semantics of
    :class:`turbotsne.gradients.PartialGradient`. ``repulsion(Y_new, dof, out) -> z`` writes
    the repulsion already divided by each point's ``z_i`` (see
    :func:`_exact_reference_repulsion`) and returns ``z``."""

    def __init__(self, reference, repulsion, device, dtype=torch.float32):
        super().__init__(device, dtype)
        self.reference_T = torch.tensor(np.asarray(reference, dtype=np.float64).T, dtype=self.dtype,
                                        device=self.device)
        self.repulsion = repulsion
        self.name = getattr(repulsion, "name", type(repulsion).__name__)

    def gradient(self, Y, P, dof, exaggeration, out, compute_kl=False):
        self._check(Y, out)
        RT = self.reference_T
        if Y.shape[1] != RT.shape[0]:
            raise ValueError(f"Y has {Y.shape[1]} dimensions but the reference embedding has {RT.shape[0]}.")
        self._use(P)
        dof = float(dof)
        YT = Y.T.contiguous()
        _attraction(YT, RT, self._rows, self._cols, self._vals, dof, float(exaggeration), out)
        rep = self._scratch(Y)
        z = self.repulsion(Y, dof, rep)  # rep: already divided by z
        out.sub_(rep)
        if not compute_kl:
            return None
        log_w = _log_w_sum(YT, RT, self._rows, self._cols, self._vals, dof, self.acc)
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
        YT = Y.T.contiguous()
        Z = torch.zeros((), dtype=acc, device=Y.device)
        log_w = torch.zeros((), dtype=acc, device=Y.device)
        for b0, b1 in _tiles(n, n, d):
            diff, base, w, f = _pair_tile(YT[:, b0:b1], YT, dof)
            w.diagonal(b0).zero_()
            Pb = Pt[b0:b1]
            out[b0:b1] = _weighted_sum(Pb / base, diff).mul_(float(exaggeration))
            rep[b0:b1] = _weighted_sum(f, diff)
            Z += _row_sum(w, acc)
            if compute_kl:
                log_w += _row_sum(torch.where(Pb > 0, Pb * base.log(), 0.0), acc) * -dof
        out.sub_(rep.mul_(Z.reciprocal().to(self.dtype)))
        if not compute_kl:
            return None
        return float(self._entropy - log_w.item() + math.log(Z.item()) * self._p_sum)


# ---------------------------------------------------------------------------------------
# factories
# ---------------------------------------------------------------------------------------
def make_repulsion(method, *, reference=None, device, dtype=torch.float32, n_interpolation_points=3,
                   min_num_intervals=50, ints_in_interval=1, **_):
    """The torch repulsion of "exact" or "fft", one family for fit and transform.

    Without ``reference``: ``(Y, dof, out) -> Z``. With a fixed ``reference`` ``(m, d)``:
    ``(Y_new, dof, out) -> z``, ``out`` already divided by each new point's ``z_i``.
    Other options (``theta``, ``n_jobs``) belong to the CPU methods and are ignored.
    """
    if method == "exact":
        return TorchExactRepulsion() if reference is None else TorchExactReferenceRepulsion(reference, device, dtype)
    grid = (n_interpolation_points, min_num_intervals, ints_in_interval)
    if reference is None:
        return TorchFFTRepulsion(*grid)
    return TorchFFTReferenceRepulsion(reference, device, dtype, *grid)


def make_backend(method, P=None, *, reference=None, device, dtype=torch.float32, n_components=None, **options):
    """The torch gradient backend of "exact" or "fft" for ``P``, on ``device`` in ``dtype``.

    ``P`` is a scipy CSR matrix (symmetric, sum 1) or a dense ndarray (only with "exact": the
    fused dense kernel). With a fixed ``reference`` embedding the backend optimises new points
    against it (:class:`TorchPartialGradient`; ``P`` is then given per call).
    """
    from ..engine import TorchEngine
    from ..options import check_method

    _check_dtype(dtype)
    dense = isinstance(P, np.ndarray)
    if reference is not None:
        reference = np.asarray(reference, dtype=np.float64)
        if reference.ndim != 2:
            raise ValueError(f"The reference embedding must be 2-D (m, d); got shape {reference.shape}.")
        n_components = reference.shape[1]
    elif not dense and not sp.issparse(P):
        raise TypeError(f"P must be a dense ndarray or a scipy sparse matrix, got {type(P).__name__}.")
    engine = TorchEngine(torch.device(device))
    if method == "auto":
        method = engine.auto_method(0, n_components or 2, dense=dense, reference=reference is not None)
    check_method(method, 2 if n_components is None else n_components, engine, dense=dense)
    if dense:
        return TorchDenseExactGradient(device, dtype)
    repulsion = make_repulsion(method, reference=reference, device=device, dtype=dtype, **options)
    if reference is not None:
        return TorchPartialGradient(reference, repulsion, device, dtype)
    return TorchSparseGradient(repulsion, device, dtype)
