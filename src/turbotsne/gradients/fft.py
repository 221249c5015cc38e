"""FFT-accelerated interpolation repulsion (FIt-SNE, Linderman et al. 2019) in 1, 2 and 3 dims.

:class:`FFTRepulsion` ``(Y, dof, out) -> Z`` writes ``out[i] = sum_j K2(y_i - y_j) (y_i - y_j)``
and returns ``Z = sum_{i != j} K1(y_i - y_j)``, with ``K1 = (1 + |.|^2/dof)^-dof`` and ``K2 =
(1 + |.|^2/dof)^-(dof+1)``; :class:`FFTReferenceRepulsion` ``(Y_new, dof, out, z)`` does the same
for new points against a fixed reference embedding, with one ``z_i`` per new point. Charges
``[1, y - c]`` are spread onto the grid of :mod:`turbotsne.gradients.grid` with quadratic
B-splines, convolved with the (B-spline-deconvolved) kernel spectra by ``scipy.fft`` with
``n_jobs`` workers, and gathered back; ``Z`` comes from the spectrum of the unit charges
(Parseval). On a capped grid (boxes wider than ``ints_in_interval``) the pairs within
:data:`NEAR_FIELD_RADIUS` boxes are summed directly. Results do not depend on the number of
threads. The numba kernels are in :mod:`turbotsne.gradients.fft_kernels`; the scheme, its
accuracy and the measurements behind its choices in docs/design/fft.md.
"""
from __future__ import annotations

import copy
import logging
import math

import numba
import numpy as np
import scipy.fft
import scipy.ndimage

from .._config import effective_n_jobs
from .._logging import log_once
from .exact import exact_reference_repulsion
from .fft_kernels import (apply_kernel as _apply_kernel, block_bounds as _block_bounds, boxes as _boxes,
                          cell_sorted as _cell_sorted, cells as _cells, gather as _gather,
                          interpolation_weights as _interpolation_weights, kernel_values as _kernel_values,
                          near_field as _near_field, sort_by_box as _sort_by_box, spread as _spread)
from .grid import (ISOLATION_RADIUS, MAX_GRID_NODES, REFERENCE_GRID_MARGIN, STENCIL, cube_extent,
                   grid_size, ladder_spacing)

#: :class:`FFTRepulsion` caps the padded 3-D grid at this many nodes per point (see
#: :func:`split_caps`), but not below ``SPLIT_MIN_NODES`` nor above ``MAX_GRID_NODES[3]``.
SPLIT_NODES_PER_POINT = 16
SPLIT_MIN_NODES = 2 ** 15
#: on a capped grid, pairs closer than this many box widths are summed directly.
NEAR_FIELD_RADIUS = 1.0
#: the near field's cells are ``1 / NEAR_FIELD_CELLS`` of its radius wide (each point scans
#: ``(2 NEAR_FIELD_CELLS + 1)^d`` cells: 125 in 3-D, 15.6 r_c^3 instead of 27 r_c^3)
NEAR_FIELD_CELLS = 2
#: points per batch of the near field's per-thread coordinate buffer (24 bytes each)
NEAR_FIELD_BATCH = 4096
#: cells per chunk of the near field's dynamic schedule (clusters make cells uneven)
NEAR_FIELD_CHUNK = 16
logger = logging.getLogger(__name__)
#: precision of the node grids, the K2 kernel and their FFTs (the interpolation error,
#: >= 1e-4, dominates single-precision rounding); K1 (for Z), weights and sums stay float64.
_REAL = np.float32
#: the ``z`` argument of :func:`~turbotsne.gradients.fft_kernels.gather` when no K1 potential is gathered
_NO_Z = np.empty(0)
_COMPLEX = np.complex64


def _log_capped_grid(d, extent, n_fit, width):
    """The ``on_cap`` hook of :func:`~turbotsne.gradients.grid.grid_size`: a notice, once per process."""
    log_once(logger, logging.INFO,
             "The %d-D embedding spans %.4g units: the FFT repulsion grid is capped at %d boxes per dimension, "
             "so its boxes are %.3g units wide instead of at most ints_in_interval = %g; pairs closer than %g "
             "box widths are summed directly (logged once).", d, extent, n_fit, extent / n_fit, width,
             NEAR_FIELD_RADIUS)


def split_caps(n_points):
    """Grid caps of :class:`FFTRepulsion` for ``n_points`` points: :data:`MAX_GRID_NODES`,
    except in 3-D, where the cap is :data:`SPLIT_NODES_PER_POINT` nodes per point (at
    least :data:`SPLIT_MIN_NODES`).

    A wide 3-D embedding is always on a capped grid with a near field, and there the
    cap sets the balance: the FFTs cost ~ the node count, the near field ~ ``n^2 /
    nodes`` (the pairs within a box width); a coarser grid is also *more* accurate (its
    near field, summed exactly, is wider). The measurements behind the value: docs/design/fft.md.
    """
    caps = dict(MAX_GRID_NODES)
    caps[3] = int(min(MAX_GRID_NODES[3], max(SPLIT_MIN_NODES, SPLIT_NODES_PER_POINT * n_points)))
    return caps


def _far_coefficients(dof, s_cut):
    """Taylor coefficients in ``t = d2 - s_cut`` (value, slope, half curvature) of K1 and
    K2 at ``d2 = s_cut``. K1 and K2 are completely monotone in ``d2``, so the quadratic
    Taylor polynomial stays below the kernel: the near-field part ``K - P`` is >= 0,
    zero from ``s_cut`` on, and C^2 there."""
    q = 1.0 + s_cut / dof
    a = dof
    b = dof + 1.0
    return np.array([
        q ** -a, -q ** -(a + 1), 0.5 * (a + 1) / dof * q ** -(a + 2),
        q ** -b, -b / dof * q ** -(b + 1), 0.5 * b * (b + 1) / dof ** 2 * q ** -(b + 2),
    ])


def _check_dims(d):
    if d not in (1, 2, 3):
        raise ValueError(
            "negative_gradient_method='fft' supports n_components of 1, 2 or 3 only; "
            f"got {d}. Use negative_gradient_method='bh' or 'exact'."
        )


def _finite_bounds(Y):
    """Per-dimension ``(lo, hi)`` of ``Y`` in one parallel pass; ``ValueError`` on NaN or inf."""
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    d = Y.shape[1]
    n_blocks = max(1, min(64, Y.shape[0] // 4096))
    part = np.empty((n_blocks, 2, d))
    if Y.shape[0] == 0 or not _block_bounds(Y, part, np.empty(n_blocks, dtype=np.bool_)):
        raise ValueError("The embedding contains NaN or inf; the FFT repulsion needs finite values.")
    return part[:, 0].min(axis=0), part[:, 1].max(axis=0)


class _Layout:
    """Index arithmetic of a grid of ``n_boxes^d`` boxes with ``p^d`` nodes each; the last
    axis of the node grid is zero-padded to ``2M`` (``M = n_boxes * p``). ``offset[t]`` is
    the flat offset of node ``t`` of the ``3^d`` interpolation stencil (digits ``combo``);
    ``n_colours`` slabs of boxes apart, stencils touch disjoint node rows."""

    def __init__(self, d, n_boxes, p):
        self.d, self.n_boxes, self.p = d, n_boxes, p
        self.m_nodes = m = n_boxes * p
        self.n_colours = 1 + -(-(STENCIL - 1) // p)
        self.shape = (m,) * (d - 1) + (2 * m,)
        strides = np.ones(d, dtype=np.int64)
        for k in range(d - 2, -1, -1):
            strides[k] = strides[k + 1] * self.shape[k + 1]
        digits = np.indices((STENCIL,) * d).reshape(d, -1).T  # (3^d, d), C order
        self.strides = strides
        self.combo = np.ascontiguousarray(digits, dtype=np.int64)
        self.offset = np.ascontiguousarray(digits @ strides, dtype=np.int64)
        self.size = int(np.prod(self.shape))
        self.spec_shape = (2 * m,) * (d - 1) + (m + 1,)


class _Interpolation:
    """Per-point box, flat base node and B-spline weights of one point set on a grid,
    plus the stable box order (``order``, ``start``) used for spreading and locality."""

    def __init__(self):
        self._key = None

    def compute(self, Y, origin, spacing, layout, centre):
        """``box`` per point (own order); ``order``/``start`` of the box sort; ``base``,
        ``weights`` and the centred ``charges`` in box order."""
        n, d = Y.shape
        key = (n, d, layout.n_boxes, layout.p)
        if self._key != key:
            self.box = np.empty(n, dtype=np.int64)
            self.base = np.empty(n, dtype=np.int64)
            self.order = np.empty(n, dtype=np.int64)
            self.weights = np.empty((n, STENCIL ** d))
            self.charges = np.empty((n, d))
            self.scratch = np.empty((n, d))  # gathered forces in box order
            self.scratch_z = np.empty(n)
            self.start = np.empty(layout.n_boxes ** d + 1, dtype=np.int64)
            self.fill = np.empty(layout.n_boxes ** d, dtype=np.int64)  # the sort's cursors
            self._key = key
        origin = np.ascontiguousarray(origin, dtype=np.float64)
        _boxes(Y, origin, 1.0 / spacing, layout.m_nodes, layout.p, layout.n_boxes, self.box)
        _sort_by_box(self.box, layout.n_boxes ** d, self.start, self.order, self.fill)
        _interpolation_weights(Y, np.ascontiguousarray(centre, dtype=np.float64), self.order, origin,
                               1.0 / spacing, layout.m_nodes, layout.combo, layout.strides, self.base,
                               self.weights, self.charges)


def _kernel_spectra(d, m_nodes, spacing, dof, workers, k2_dtype, s_cut=0.0):
    """Compact real spectra of K2 (``k2_dtype``) and K1 (float64), ``((M + 1)^(d-1), M + 1)``:
    the DCT-I of the ``(M + 1)^d`` kernel values on the node lattice (their far-field
    parts if ``s_cut > 0``), deconvolved by the squared B-spline spectrum (the charges
    are spread with the B-spline and the potentials gathered with it again)."""
    size = m_nodes + 1
    x2 = (np.arange(size) * spacing) ** 2
    d2 = x2
    for _ in range(d - 1):
        d2 = np.add.outer(d2, x2)
    d2 = d2.reshape(-1)
    k1 = np.empty(d2.shape[0])  # float64: Z = (Parseval sum) - n cancels
    k2 = np.empty(d2.shape[0], dtype=k2_dtype)
    _kernel_values(d2, dof, s_cut, _far_coefficients(dof, max(s_cut, 1e-300)), k1, k2)
    del d2
    shape = (size,) * d
    # DCT-I of the (M+1)^d values == real FFT of the even 2M-periodic extension.
    khat2 = scipy.fft.dctn(k2.reshape(shape), type=1, workers=workers, overwrite_x=True)
    khat1 = scipy.fft.dctn(k1.reshape(shape), type=1, workers=workers, overwrite_x=True)
    # deconvolution: divide by |B^(w)|^2 per axis, B^(w) = sinc(w / 2)^3 the spectrum of
    # the quadratic B-spline at the frequencies w = pi m / M of the 2M-periodic grid
    inv_b2 = np.sinc(np.arange(size) / (2.0 * m_nodes)) ** -(2 * STENCIL)
    for k in range(d):
        factor = inv_b2.reshape((1,) * k + (size,) + (1,) * (d - 1 - k))
        khat2 *= factor.astype(khat2.dtype)
        khat1 *= factor
    return khat2.reshape(-1, size), khat1.reshape(-1, size)


def _fft_inplace(view, axis, forward, workers):
    fn = scipy.fft.fft if forward else scipy.fft.ifft
    res = fn(view, axis=axis, workers=workers, overwrite_x=True)
    if not np.shares_memory(res, view):
        view[...] = res


def _forward(channel, spec, layout, workers):
    """Half spectrum of one zero-padded charge grid into ``spec``, pruned: the last axis is
    padded in the grid itself; along every other axis only the first M (non-zero) lines
    are transformed before that axis."""
    d, m = layout.d, layout.m_nodes
    half = scipy.fft.rfft(channel.reshape(layout.shape), axis=d - 1, workers=workers)
    if d == 1:
        spec[...] = half
    elif d == 2:
        spec[:m] = half
        spec[m:] = 0
        _fft_inplace(spec, 0, True, workers)
    else:
        spec[:m, :m] = half
        spec[:m, m:] = 0
        spec[m:] = 0
        _fft_inplace(spec[:m], 1, True, workers)
        _fft_inplace(spec, 0, True, workers)


def _inverse(spec, layout, workers):
    """The first ``M^d`` outputs of the inverse transform of ``spec`` (overwritten), flat."""
    d, m = layout.d, layout.m_nodes
    if d == 1:
        res = scipy.fft.irfft(spec, n=2 * m, workers=workers)
    elif d == 2:
        _fft_inplace(spec, 0, False, workers)
        res = scipy.fft.irfft(spec[:m], n=2 * m, axis=1, workers=workers)
    else:
        _fft_inplace(spec, 0, False, workers)
        _fft_inplace(spec[:m], 1, False, workers)
        res = scipy.fft.irfft(spec[:m, :m], n=2 * m, axis=2, workers=workers)
    return res.reshape(-1)


class _FFTBase:
    """Parameters and the grid rule shared by the FFT backends."""

    name = "fft"

    def __init__(self, n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1,
                 n_jobs=1):
        p = int(n_interpolation_points)
        if not 1 <= p <= 8:
            raise ValueError(
                "The 'n_interpolation_points' parameter must be an integer in [1, 8]. "
                f"Got {n_interpolation_points!r} instead."
            )
        if not int(min_num_intervals) >= 1:
            raise ValueError(
                "The 'min_num_intervals' parameter must be a positive integer. "
                f"Got {min_num_intervals!r} instead."
            )
        if not float(ints_in_interval) > 0:
            raise ValueError(
                "The 'ints_in_interval' parameter must be a positive number. "
                f"Got {ints_in_interval!r} instead."
            )
        self.n_interpolation_points = p
        self.min_num_intervals = int(min_num_intervals)
        self.ints_in_interval = float(ints_in_interval)
        self.n_jobs = n_jobs
        self._workers = effective_n_jobs(n_jobs)
        self._layout = None
        self._kernel_key = None
        self._khat = None

    def _grid_for(self, lo, hi, d, caps=None):
        """``(lo, extent, n_boxes, spacing)`` of the grid covering the box ``[lo, hi]``.

        Node ``j`` lies at ``lo + (j - 1/2) spacing``: the ``M = n_boxes p`` nodes leave a
        margin of one node on each side of ``[lo, lo + extent]`` for the stencils, which
        :func:`grid_size` is asked to fit (so the node spacing stays at most
        ``ints_in_interval / p``) under ``caps`` (default :data:`MAX_GRID_NODES`)."""
        p = self.n_interpolation_points
        extent = cube_extent(lo, hi)
        margin = (STENCIL - 1) * self.ints_in_interval / p
        n_boxes = grid_size(extent + margin, d, p, self.min_num_intervals,
                            self.ints_in_interval, caps=caps, on_cap=_log_capped_grid)
        n_boxes = max(n_boxes, -(-(STENCIL + 1) // p))  # at least one node inside
        spacing = ladder_spacing(extent / (n_boxes * p - (STENCIL - 1)), self.ints_in_interval / p)
        return np.ascontiguousarray(lo, dtype=np.float64), extent, n_boxes, spacing

    def _get_layout(self, d, n_boxes):
        lay = self._layout
        if lay is None or lay.d != d or lay.n_boxes != n_boxes:
            lay = self._layout = _Layout(d, n_boxes, self.n_interpolation_points)
        return lay

    def _kernel_spectra(self, d, m_nodes, spacing, dof, k2_dtype, s_cut=0.0):
        """Cached while the grid size, node spacing, ``dof``, cut and precision are unchanged."""
        key = (d, m_nodes, spacing, dof, np.dtype(k2_dtype), s_cut)
        if self._kernel_key != key:
            self._kernel_key = self._khat = None
            self._khat = _kernel_spectra(d, m_nodes, spacing, dof, self._workers, k2_dtype,
                                         s_cut)
            self._kernel_key = key
        return self._khat


class FFTRepulsion(_FFTBase):
    """Repulsion by FFT-accelerated interpolation; a callable ``(Y, dof, out) -> Z``.

    Parameters follow openTSNE: ``n_interpolation_points`` nodes per box and
    dimension, ``min_num_intervals`` boxes per dimension at least, boxes at most
    ``ints_in_interval`` wide (3-D: see :func:`grid_size`). ``n_jobs`` is the
    ``workers`` count of ``scipy.fft``; the numba kernels use the caller's numba
    thread count.
    """

    def __init__(self, n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1,
                 n_jobs=1):
        super().__init__(n_interpolation_points, min_num_intervals, ints_in_interval, n_jobs)
        self._points = _Interpolation()
        self._buffers_key = None
        self._near_key = None
        self._near_bufs = None

    def _grid_buffers(self, layout):
        """Node grids (the padding of the last axis stays zero), potentials, spectrum."""
        key = (layout.d, layout.n_boxes)
        if self._buffers_key != key:
            self._buffers_key = None
            d = layout.d
            self._grid = np.zeros((d + 1, layout.size), dtype=_REAL)
            self._phi = np.empty((d + 1, layout.size), dtype=_REAL)
            self._spec = np.empty(layout.spec_shape, dtype=_COMPLEX)
            self._buffers_key = key

    def _convolve(self, layout, khat2, khat1):
        """Potentials ``phi[c] = K2 * grid[c]`` (first M nodes per axis); returns the
        Parseval sum of the unit charges against K1 (``Z`` plus the self terms)."""
        m, d = layout.m_nodes, layout.d
        z_total = 0.0
        for c in range(d + 1):
            _forward(self._grid[c], self._spec, layout, self._workers)
            z = _apply_kernel(self._spec.reshape(-1, m + 1), khat2, khat1, m, d, c == 0)
            if c == 0:
                z_total = z
            self._phi[c] = _inverse(self._spec, layout, self._workers)
        return z_total

    def __call__(self, Y, dof, out):
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        n, d = Y.shape
        _check_dims(d)
        dof = float(dof)
        if n < 2:
            out[...] = 0.0
            return 0.0
        lo, extent, n_boxes, spacing = self._grid_for(*_finite_bounds(Y), d, split_caps(n))
        h = spacing * self.n_interpolation_points  # box width
        centre = np.ascontiguousarray(lo + 0.5 * extent)
        layout = self._get_layout(d, n_boxes)
        self._grid_buffers(layout)
        pts = self._points
        pts.compute(Y, lo - 0.5 * spacing, spacing, layout, centre)
        _spread(pts.charges, pts.start, pts.base, n_boxes, layout.n_colours, layout.m_nodes,
                layout.strides, pts.weights, layout.offset, self._grid)
        # boxes wider than ints_in_interval (a capped grid): split off the near field
        split = h > self.ints_in_interval * (1.0 + 1e-12)
        s_cut = (NEAR_FIELD_RADIUS * h) ** 2 if split else 0.0
        khat2, khat1 = self._kernel_spectra(d, layout.m_nodes, spacing, dof, _REAL, s_cut)
        z_total = self._convolve(layout, khat2, khat1)
        _gather(pts.charges, pts.order, pts.base, pts.weights, layout.offset, self._phi, out, _NO_Z,
                pts.scratch, _NO_Z)
        if not split:
            return float(z_total - n)
        coef = _far_coefficients(dof, s_cut)
        z_near = self._near(Y, lo, extent, dof, s_cut, coef, out)
        # self terms: the far kernel at 0 is P1(0), not 1
        p1_0 = coef[0] - s_cut * (coef[1] - s_cut * coef[2])
        return float(z_total - n * p1_0 + z_near)

    def _near_buffers(self):
        """One ``(3, NEAR_FIELD_BATCH)`` coordinate buffer per numba thread (kept)."""
        shape = (numba.config.NUMBA_NUM_THREADS, 3, NEAR_FIELD_BATCH)
        if self._near_bufs is None or self._near_bufs.shape != shape:
            self._near_bufs = np.empty(shape, dtype=np.float32)
        return self._near_bufs

    def _near(self, Y, lo, extent, dof, s_cut, coef, out):
        """Adds the near-field forces to ``out``; returns the near-field part of ``Z``."""
        n, d = Y.shape
        reach = NEAR_FIELD_CELLS
        n_cells = max(1, int(extent * reach / math.sqrt(s_cut)))
        key = (n, d, n_cells)
        if self._near_key != key:
            self._near_key = None
            self._cell = np.empty(n, dtype=np.int64)
            self._cell_order = np.empty(n, dtype=np.int64)
            self._cell_start = np.empty(n_cells ** d + 1, dtype=np.int64)
            self._cell_fill = np.empty(n_cells ** d, dtype=np.int64)
            self._cell_ys = np.zeros((3, n), dtype=np.float32)  # rows d.. stay zero (see _near_field)
            self._near_acc = np.empty((n, d))
            self._row_z = np.empty(n)
            self._near_key = key
        _cells(Y, lo, n_cells / extent, n_cells, self._cell)
        _sort_by_box(self._cell, n_cells ** d, self._cell_start, self._cell_order, self._cell_fill)
        _cell_sorted(Y, self._cell_order, lo, self._cell_ys)
        bufs = self._near_buffers()
        with numba.parallel_chunksize(NEAR_FIELD_CHUNK):
            _near_field(self._cell_ys, self._cell_order, self._cell_start, n_cells, reach, dof,
                        s_cut, coef, out, self._row_z, self._near_acc, bufs)
        return float(self._row_z.sum())


class FFTReferenceRepulsion(_FFTBase):
    """Repulsion of new points by a fixed reference embedding, by FFT interpolation.

    A callable ``(Y_new, dof, out, z) -> None`` writing ``out[i] = sum_j
    w_ij^((dof+1)/dof) (y_i - r_j)`` and ``z[i] = sum_j w_ij`` over all reference
    points (no self pairs; each new point has its own normaliser, so ``z`` is the
    gathered K1 potential, not a Parseval sum).

    The grid is chosen (same rule as :class:`FFTRepulsion`) for the union of the
    reference's and the new points' bounding boxes, and kept while every new point
    stays inside it. The reference charges are spread once per grid and the node
    potentials ``K2 * [1, r - c]`` and ``K1 * 1`` once per grid and ``dof``; a call
    with an unchanged grid only interpolates (``O(n p^d)``). As the convolution runs
    rarely, this path is double precision throughout.

    Isolated new points: with ``dof > 1`` the kernel's tail is lighter than Cauchy's
    (near Gaussian at ``dof = 100``), its log-slope ``2 dof r / (dof + r^2)`` grows
    with the distance, and so does the *relative* interpolation error of ``z_i`` and
    ``r_i`` of a point far from every reference point (x10 at 4 units for dof = 100).
    FFTRepulsion does not care (such points add little to the global ``Z``), but here
    each point is normalised by its own ``z_i``. So for ``dof > 1`` a new point whose
    box has no reference point within :data:`ISOLATION_RADIUS` (rounded up to whole
    boxes) is summed exactly over the reference (``O(m)`` each; in ``transform`` such
    points are rare). With ``dof <= 1`` interpolation is accurate at any distance.
    """

    def __init__(self, reference, n_interpolation_points=3, min_num_intervals=50,
                 ints_in_interval=1, n_jobs=1):
        super().__init__(n_interpolation_points, min_num_intervals, ints_in_interval, n_jobs)
        R = np.ascontiguousarray(reference, dtype=np.float64)
        if R.ndim != 2:
            raise ValueError(f"The reference embedding must be 2-D (m, d); got shape {R.shape}.")
        _check_dims(R.shape[1])
        if R.shape[0]:
            self._ref_bounds = _finite_bounds(R)
        self.reference = R
        self._ref_points = _Interpolation()
        self._points = _Interpolation()
        self._grid_key = None  # (lo, extent, n_boxes, spacing) of the current grid
        self._grid_id = 0  # counts the grids chosen so far
        self._charges = None  # spread reference charges on the current grid
        self._phi_key = None  # (grid id, dof) of the cached potentials
        self._phi = None

    def _regrid(self, lo_y, hi_y):
        """Grid over the union box, widened by :data:`REFERENCE_GRID_MARGIN` of its extent on
        every side (new points move a little each iteration: without the margin almost every
        iteration of a transform would leave the grid and rebuild it); spreads the reference
        charges on it."""
        R = self.reference
        d = R.shape[1]
        lo = np.minimum(lo_y, self._ref_bounds[0])
        hi = np.maximum(hi_y, self._ref_bounds[1])
        margin = REFERENCE_GRID_MARGIN * float(np.max(hi - lo))
        lo, hi = lo - margin, hi + margin
        self._grid_key = self._charges = self._phi_key = self._phi = None
        lo, extent, n_boxes, spacing = self._grid_for(lo, hi, d)
        layout = self._get_layout(d, n_boxes)
        pts = self._ref_points
        pts.compute(R, lo - 0.5 * spacing, spacing, layout, lo + 0.5 * extent)
        charges = np.zeros((d + 1, layout.size))
        _spread(pts.charges, pts.start, pts.base, n_boxes, layout.n_colours, layout.m_nodes,
                layout.strides, pts.weights, layout.offset, charges)
        self._charges = charges
        # boxes with a reference point within ISOLATION_RADIUS boxes-rounded-up (for dof > 1)
        occupied = (np.diff(pts.start) > 0).reshape((n_boxes,) * d)
        reach = int(math.ceil(ISOLATION_RADIUS / (spacing * layout.p)))
        self._near = scipy.ndimage.maximum_filter(occupied, size=2 * reach + 1,
                                                  mode="constant").reshape(-1)
        self._grid_key = (lo, extent, n_boxes, spacing)
        self._grid_id += 1

    def _potentials(self, dof):
        """Node potentials ``phi[c] = K2 * q_c`` (c <= d) and ``phi[d + 1] = K1 * q_0``."""
        spacing = self._grid_key[3]
        layout = self._layout
        d, m = layout.d, layout.m_nodes
        khat2, khat1 = self._kernel_spectra(d, m, spacing, dof, np.float64)
        phi = np.empty((d + 2, layout.size))
        spec = np.empty(layout.spec_shape, dtype=np.complex128)
        for c in range(d + 1):
            _forward(self._charges[c], spec, layout, self._workers)
            if c == 0:
                spec1 = spec.copy()
                _apply_kernel(spec1.reshape(-1, m + 1), khat1, khat1, m, d, False)
                phi[d + 1] = _inverse(spec1, layout, self._workers)
                del spec1
            _apply_kernel(spec.reshape(-1, m + 1), khat2, khat1, m, d, False)
            phi[c] = _inverse(spec, layout, self._workers)
        return phi

    def prepare(self, lo, hi, dof):
        """Choose the grid for new points within the box ``[lo, hi]`` now: spread the reference
        charges and compute the potentials for ``dof`` (what the first call would do)."""
        self._regrid(np.asarray(lo, dtype=np.float64), np.asarray(hi, dtype=np.float64))
        self._phi = self._potentials(float(dof))
        self._phi_key = (self._grid_id, float(dof))

    def fork(self, n_jobs=None):
        """A copy that reads this one's grid, charges and potentials (never writing them: a new
        grid or ``dof`` is built in the copy) with its own per-call buffers."""
        new = copy.copy(self)
        new._ref_points = _Interpolation()
        new._points = _Interpolation()
        if n_jobs is not None:
            new.n_jobs, new._workers = n_jobs, effective_n_jobs(n_jobs)
        return new

    def __call__(self, Y, dof, out, z):
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        n, d = Y.shape
        if d != self.reference.shape[1]:
            raise ValueError(
                f"Y has {d} dimensions but the reference embedding has "
                f"{self.reference.shape[1]}."
            )
        dof = float(dof)
        if n == 0:
            return
        if self.reference.shape[0] == 0:
            out[...] = 0.0
            z[...] = 0.0
            return
        lo_y, hi_y = _finite_bounds(Y)
        key = self._grid_key
        if key is None or np.any(lo_y < key[0]) or np.any(hi_y > key[0] + key[1]):
            self._regrid(lo_y, hi_y)
        if self._phi_key != (self._grid_id, dof):
            self._phi_key = None
            self._phi = self._potentials(dof)
            self._phi_key = (self._grid_id, dof)
        lo, extent, n_boxes, spacing = self._grid_key
        layout = self._layout
        pts = self._points
        pts.compute(Y, lo - 0.5 * spacing, spacing, layout, lo + 0.5 * extent)
        _gather(pts.charges, pts.order, pts.base, pts.weights, layout.offset, self._phi, out, z,
                pts.scratch, pts.scratch_z)
        if dof > 1.0:
            far = np.flatnonzero(~self._near[pts.box])
            if far.size:
                out_far = np.empty((far.size, d))
                z_far = np.empty(far.size)
                exact_reference_repulsion(np.ascontiguousarray(Y[far]), self.reference, dof,
                                          out_far, z_far)
                out[far] = out_far
                z[far] = z_far
