"""FFT-accelerated interpolation repulsion (FIt-SNE, Linderman et al. 2019) in 1, 2 and 3 dims.

The repulsion ``r_i = sum_j K2(y_i - y_j) (y_i - y_j)`` and ``Z = sum_{i != j} K1(y_i - y_j)``
with ``K1 = w = (1 + |.|^2/dof)^-dof`` and ``K2 = w^((dof+1)/dof) = (1 + |.|^2/dof)^-(dof+1)``
are both sums of translation-invariant kernels against per-point charges::

    r_i = (y_i - c) * phi_0(y_i) - phi_{1..d}(y_i),   phi_0 = K2 * 1,  phi_k = K2 * (y_k - c_k)
    Z   = sum_a q_a (K1 * q)_a - n,                    q = the unit charges spread on the nodes

(``c`` is the centre of the bounding box, which keeps the cancellation in ``r``
small, and ``n`` removes the self-interactions ``w_ii = 1``). ``Z`` needs no
inverse transform: by Parseval it is ``sum_m |Q_m|^2 K1hat_m / (2M)^d`` over the
spectrum ``Q`` of the unit charges, which is computed anyway. So one call costs
``d + 1`` forward and ``d + 1`` inverse FFTs plus two DCTs of the kernels, for
any ``dof`` (FIt-SNE's ``dof = 1`` trick with charges ``[1, y, |y|^2]`` needs
``d + 2`` of each and suffers cancellation in ``Z``).

Precision: node grids, the K2 spectrum and the charge FFTs are single precision
(complex64), which halves the FFT time; the interpolation error (>= 1e-4 in
the tests) dominates the float32 rounding; so are the near field's pair terms (below).
Weights, the K1 spectrum, the Parseval sum and the final ``r`` stay float64.

Grid (openTSNE semantics): the cube ``[lo_k, lo_k + extent]`` per dimension
(``extent`` = the largest side of the bounding box of ``Y``) is covered by
``n_boxes = max(min_num_intervals, ceil(extent' / ints_in_interval))`` boxes per
dimension, each holding ``p = n_interpolation_points`` equispaced nodes, so all
``M = n_boxes * p`` nodes per dimension are equispaced (spacing at most
``ints_in_interval / p``) and the node-to-node sum is a discrete (Toeplitz)
convolution. ``extent' = extent + 2 ints_in_interval / p`` leaves one node of margin
on each side for the interpolation stencils: node ``j`` lies at ``lo + (j - 1/2)
spacing`` with ``spacing = extent / (M - 2)``. Two more changes to openTSNE's rule:

* ``n_boxes`` is rounded *up* to the next count for which the padded FFT length
  ``2 M`` is 5-smooth (``scipy.fft.next_fast_len``): a finer grid is both more
  accurate and faster to transform than an awkward size;
* in 3-D, ``min_num_intervals`` is capped at :data:`MIN_INTERVALS_3D` (10): a
  small embedding needs no 50^3-box grid. With 10 boxes the node spacing is
  finer than the 2-D rule's up to extent 10, and the force error stays <= 1.2e-3
  at extents 0.5-10 (3,000 clustered points); with 24 boxes, the earlier value,
  the grid of the early-exaggeration phase (MNIST-70k: 7-11 units wide) cost 4
  FFT pairs of 3.8e6 padded nodes per call instead of 0.4e6-0.9e6.

Interpolation (not FIt-SNE's): FIt-SNE interpolates each point from the ``p^d``
nodes of its own box by Lagrange polynomials of degree ``p - 1``; near the box
edges that extrapolates, and at the defaults (quadratic, spacing 1/3) the
normalised force has a systematic error of ~3e-2 at the extents t-SNE reaches
(100-200 units), which costs ~2.5 % in final KL. Here every point is spread to and
gathered from the ``3^d`` nodes around its *nearest* node with the (centred,
C^1) quadratic B-spline, the same number of weights as FIt-SNE's p = 3, and the
kernel spectra are divided by the squared B-spline spectrum ``sinc(w/2)^6`` per
axis (smooth particle-mesh Ewald's deconvolution; the kernels' spectra decay like
``exp(-|w|)``, so at spacing 1/3 the grid resolves them and the deconvolution only
corrects the B-spline's smoothing). ``p`` keeps its meaning: it sets the node
spacing. Measured (``bench/fft_accuracy_compare.py``: 3,000 of 70k clustered 2-D
points, extent ~200, dof = 1): force error 2.9e-2 -> 2.2e-3, Z error 2e-3 -> 3e-5
(p = 4: 8.4e-3 -> 8e-4), at the same cost per call; centred cubic Lagrange (4^d
weights) gives only ~7e-3, cubic B-splines ~1.5e-3 at 16/9 the weights
(``bench/proto_schemes.py``).

The node spacing sets the accuracy; the 3-D rule keeps the 2-D resolution while the
zero-padded grid ``(2M)^d`` fits :data:`MAX_GRID_NODES` (2^26 in 1-D and 2-D, 2^22 ~ 161^3
in 3-D: ~0.1 GB): 2-D extents up to ~1350, 3-D up to ~25 units. :class:`FFTRepulsion`
caps a 3-D grid lower, at 16 nodes per point (:func:`split_caps`): 3-D t-SNE with more
than a few thousand points always ends on a capped grid.

Wider embeddings (3-D t-SNE reaches 100-200 units) get the largest grid under the
cap and a near/far split of both kernels: below ``r_c = NEAR_FIELD_RADIUS`` (1)
box width each kernel is replaced by its quadratic Taylor polynomial in ``r^2``
about ``r_c^2``, a smooth far part (equal to the kernel beyond ``r_c``, C^2 there)
that interpolates well on the coarse grid; the remainder ``K - P`` (>= 0, zero
beyond ``r_c``) is summed directly over the pairs in neighbouring cells
(:func:`_near_field`: cells of side ``r_c / 2``, coordinates copied in cell order;
the ``5^(d-1)`` contiguous runs around a cell are copied into one buffer, which each
of its points sweeps in one vectorised loop; parallel over cells, each point owning
its row). Measured on 3-D MNIST-70k embeddings
(``turbotsne.TSNE(n_components=3)``, 150 and 200 iterations after early
exaggeration: extents 88 and 122, 25 boxes of 3.5 and 4.9 units), force error
against the exact sum on 2,000 points / ms per call on 2 cores: ``r_c`` = 1 box:
3.4e-3 / 111, 2.8e-3 / 113; 1.5 boxes: 5.4e-4 / 146, 4.1e-4 / 154; 2 boxes:
1.6e-4 / 184, 1.2e-4 / 200 (the near field before it streamed cell runs, at 2
boxes: 1,101 ms of a 1,171 ms call). One box matches the 2-D defaults' accuracy
(~2e-3); a larger cap (2^23, 2^24 nodes) only moves time from the near field to
the FFTs (171 and 437 ms at 1 box). (These figures predate the near field's per-cell
buffer, which took it from 70 to 26 ms per call on a 3-D MNIST-70k embedding of extent
185: ``python bench/profile_gradient.py --data mnist70k --n-components 3``.)

Only boxes wider than :data:`MAX_COARSENING` x ``ints_in_interval`` (3-D: extent
> ~1600, 2-D: > ~86000, i.e. points that shot off) raise a ``ValueError`` that
names the cause and the fixes (``max_step_norm``, Barnes-Hut).

Steps of one call, all kernels numba, all FFTs ``scipy.fft`` with ``workers``:

1. per point (parallel): box (of its stencil's first node), flat base node and
   the ``3^d`` tensor-product B-spline weights, computed once and used both for
   spreading and gathering;
2. a stable counting sort of the points by box (serial, O(n));
3. spreading (parallel over slabs of boxes along axis 0): stencils of
   neighbouring boxes overlap, so the slabs are coloured (2 colours for p >= 2,
   3 for p = 1) and the slabs of one colour, whose node rows are disjoint, run in
   parallel, each in point order; no races, no dependence on the thread count;
4. per charge channel: a pruned zero-padded FFT (the last axis is padded in
   the grid buffer itself, and the transforms along every other axis skip the
   all-zero lines), multiplication by the kernel spectrum in place, and a
   pruned inverse FFT that only keeps the ``M^d`` useful outputs. The kernel
   is real and even, so its spectrum is real and is computed
   with a DCT-I of the ``(M + 1)^d`` kernel values (a quarter of the work of the
   padded ``(2 M)^d`` FFT in 2-D), times the B-spline deconvolution factors; it is
   cached on the object while the grid size, node spacing and ``dof`` are unchanged,
   and the node spacing is taken from a fixed ladder (:func:`ladder_spacing`), so it
   stays unchanged for many iterations while the embedding grows;
5. gathering (parallel over blocks of points in box order; each point writes its own row).

Results are bit-identical for any number of numba threads.
"""
from __future__ import annotations

import logging
import math

import numba
import numpy as np
import scipy.fft
import scipy.ndimage

from .._config import FASTMATH, effective_n_jobs
from .exact import exact_reference_repulsion

#: cap on the number of nodes of the zero-padded grid ``(2 M)^d``, per dimension count:
#: 8192^2 in 2-D (~0.5 GB per complex spectrum), 161^3 in 3-D (~0.1 GB in all). A wider
#: embedding gets the largest grid under the cap plus a direct near field.
MAX_GRID_NODES = {1: 2 ** 26, 2: 2 ** 26, 3: 2 ** 22}
#: :class:`FFTRepulsion` caps the padded 3-D grid at this many nodes per point (see
#: :func:`split_caps`), but not below ``SPLIT_MIN_NODES`` nor above ``MAX_GRID_NODES[3]``.
SPLIT_NODES_PER_POINT = 16
SPLIT_MIN_NODES = 2 ** 15
#: when the grid is capped, boxes may be at most this many times ``ints_in_interval``
#: wide; a wider embedding raises (points that shot off).
MAX_COARSENING = 64.0
#: on a capped grid, pairs closer than this many box widths are summed directly.
NEAR_FIELD_RADIUS = 1.0
#: the near field's cells are ``1 / NEAR_FIELD_CELLS`` of its radius wide (each point scans
#: ``(2 NEAR_FIELD_CELLS + 1)^d`` cells: 125 in 3-D, 15.6 r_c^3 instead of 27 r_c^3)
NEAR_FIELD_CELLS = 2
#: points per batch of the near field's per-thread coordinate buffer (24 bytes each)
NEAR_FIELD_BATCH = 4096
#: cells per chunk of the near field's dynamic schedule (clusters make cells uneven)
NEAR_FIELD_CHUNK = 16
#: FFTReferenceRepulsion's grid extends this fraction of its extent beyond the points on every side
REFERENCE_GRID_MARGIN = 0.1
#: nodes per dimension of the interpolation stencil (the quadratic B-spline's support).
STENCIL = 3
#: in 3-D, ``min_num_intervals`` is capped at this value.
MIN_INTERVALS_3D = 10
#: :class:`FFTReferenceRepulsion` with ``dof > 1``: new points with no reference point
#: within about this distance (checked box-wise) are summed exactly (see the class).
ISOLATION_RADIUS = 1.0
logger = logging.getLogger(__name__)
#: points per parallel block of the per-point kernels (fixed: independent of threads).
_BLOCK = 256
#: precision of the node grids, the K2 kernel and their FFTs (the interpolation error,
#: >= 1e-4, dominates single-precision rounding); K1 (for Z), weights and sums stay float64.
_REAL = np.float32
#: the ``z`` argument of :func:`_gather` when no K1 potential is gathered
_NO_Z = np.empty(0)
_COMPLEX = np.complex64
#: node and point positions as unsigned integers in the spreading loop (never negative): numba
#: then emits no negative-index wraparound code per grid access (2.1 -> 1.85 ms per call at
#: MNIST-70k's final 2-D grid, ``bench/profile_gradient.py``; no change when gathering)
_U = numba.uint64


# ---------------------------------------------------------------------------------------
# numba kernels
# ---------------------------------------------------------------------------------------
@numba.njit(fastmath=FASTMATH, cache=True, inline="always")
def _nearest_node(y, origin, inv_h, m_nodes):
    """Node units ``s`` of a coordinate and its nearest node ``j`` (clamped to ``[1, M - 2]``)."""
    s = (y - origin) * inv_h
    j = int(s + 0.5) if s > 0.0 else 0
    if j > m_nodes - 2:
        j = m_nodes - 2
    if j < 1:
        j = 1
    return s, j


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _boxes(Y, origin, inv_h, m_nodes, p, n_boxes, box):
    """Flat box index of each point (in the points' own order): per dimension, the box of
    its stencil's first node, ``(j - 1) // p``."""
    n, d = Y.shape
    for i in numba.prange(n):
        b_flat = 0
        for k in range(d):
            _, j = _nearest_node(Y[i, k], origin[k], inv_h, m_nodes)
            b_flat = b_flat * n_boxes + (j - 1) // p
        box[i] = b_flat


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _interpolation_weights(Y, centre, order, origin, inv_h, m_nodes, combo, strides, base,
                           weights, charges):
    """In box order (position ``ii`` holds point ``order[ii]``): the flat first stencil
    node ``base[ii]``, the ``3^d`` tensor-product quadratic B-spline weights
    ``weights[ii, t]`` and the centred coordinates ``charges[ii] = y - centre``.

    Node ``j`` of axis ``k`` lies at ``origin[k] + j / inv_h``; a point at ``s = (y -
    origin) * inv_h`` node units has its stencil ``j - 1, j, j + 1`` around the nearest
    node ``j`` (clamped to ``[1, M - 2]``; the grid leaves a margin, so clamping only
    absorbs rounding). The 1-D weights at ``x = s - j`` in ``[-1/2, 1/2]`` are
    ``(1/2 - x)^2 / 2, 3/4 - x^2, (1/2 + x)^2 / 2``. ``combo[t, k]`` is the stencil
    digit along dimension ``k`` of weight ``t``; ``strides[k]`` the flat stride of grid
    axis ``k`` (the last axis is zero-padded to 2M). Storing all of it in box order makes
    spreading and gathering read memory in sequence: only this pass reads ``Y`` (and the
    gathering writes the forces) in the points' own order.
    """
    n, d = Y.shape
    n_combo = combo.shape[0]
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        lw = np.empty((3, 3))  # per-dimension 1-D weights (d <= 3), one per block
        if d == 2:  # the hot case with scalars (combo is C order: t = 3 a + b): 1.7 -> 1.0 ms
            for ii in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
                i = order[ii]
                s0, j0 = _nearest_node(Y[i, 0], origin[0], inv_h, m_nodes)
                s1, j1 = _nearest_node(Y[i, 1], origin[1], inv_h, m_nodes)
                x = s0 - j0
                u0 = 0.5 * (0.5 - x) * (0.5 - x)
                u1 = 0.75 - x * x
                u2 = 0.5 * (0.5 + x) * (0.5 + x)
                x = s1 - j1
                v0 = 0.5 * (0.5 - x) * (0.5 - x)
                v1 = 0.75 - x * x
                v2 = 0.5 * (0.5 + x) * (0.5 + x)
                base[ii] = (j0 - 1) * strides[0] + (j1 - 1) * strides[1]
                charges[ii, 0] = Y[i, 0] - centre[0]
                charges[ii, 1] = Y[i, 1] - centre[1]
                weights[ii, 0] = u0 * v0
                weights[ii, 1] = u0 * v1
                weights[ii, 2] = u0 * v2
                weights[ii, 3] = u1 * v0
                weights[ii, 4] = u1 * v1
                weights[ii, 5] = u1 * v2
                weights[ii, 6] = u2 * v0
                weights[ii, 7] = u2 * v1
                weights[ii, 8] = u2 * v2
            continue
        for ii in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            i = order[ii]
            node_flat = 0
            for k in range(d):
                s, j = _nearest_node(Y[i, k], origin[k], inv_h, m_nodes)
                x = s - j
                a = 0.5 - x
                c = 0.5 + x
                lw[k, 0] = 0.5 * a * a
                lw[k, 1] = 0.75 - x * x
                lw[k, 2] = 0.5 * c * c
                node_flat += (j - 1) * strides[k]
                charges[ii, k] = Y[i, k] - centre[k]
            base[ii] = node_flat
            for t in range(n_combo):
                w = 1.0
                for k in range(d):
                    w *= lw[k, combo[t, k]]
                weights[ii, t] = w


@numba.njit(cache=True)
def _sort_by_box(box, n_box_total, start, order):
    """Stable counting sort: points of box ``b`` are ``order[start[b]:start[b + 1]]``."""
    n = box.shape[0]
    for b in range(n_box_total + 1):
        start[b] = 0
    for i in range(n):
        start[box[i] + 1] += 1
    for b in range(n_box_total):
        start[b + 1] += start[b]
    fill = start[:n_box_total].copy()
    for i in range(n):
        b = box[i]
        order[fill[b]] = i
        fill[b] += 1


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _spread(charges, start, base, n_boxes, n_colours, m_nodes, strides, weights, offset, grid):
    """Charges ``[1, y_1 - c_1, ..., y_d - c_d]`` onto the nodes: ``grid[c, node]``
    (``charges``, ``base`` and ``weights`` in box order, as :func:`_interpolation_weights`
    leaves them).

    Stencils of neighbouring boxes overlap, so the slabs of boxes along axis 0 are
    coloured: slabs ``b`` and ``b + n_colours`` touch disjoint node rows (a slab of box
    row ``b`` writes rows ``b p .. b p + p + 1``). Colour by colour, the slabs of one
    colour run in parallel, each accumulating its points in sorted order. Every node is
    written by one thread at a time in a fixed order: no races, and the result does not
    depend on the thread count. In the first phase, a slab ``b`` (colour 0) first zeroes
    the node rows of the boxes ``b .. b + n_colours - 1``, which hold all it writes (the
    padding of the last axis is never written and stays zero).
    """
    d = charges.shape[1]
    n_combo = offset.shape[0]
    n_channels = grid.shape[0]
    row = strides[0]
    p = m_nodes // n_boxes
    slab = 1
    for _ in range(d - 1):
        slab *= n_boxes
    for colour in range(n_colours):
        n_slabs = (n_boxes - colour + n_colours - 1) // n_colours
        for q in numba.prange(n_slabs):
            b0 = colour + q * n_colours
            if colour == 0:
                r_end = min(m_nodes, (b0 + n_colours) * p)
                for c in range(n_channels):
                    for f in range(b0 * p * row, r_end * row):
                        grid[c, f] = 0.0
            lo = _U(start[b0 * slab])
            hi = _U(start[(b0 + 1) * slab])
            # 2-D and 3-D: scalar charges and one row view per channel (as in _gather; in 2-D
            # the last view adds zeros): 1.85 -> 1.6 ms per 2-D call at MNIST-70k's final grid
            if d >= 2:
                g0 = grid[0]
                g1 = grid[1]
                g2 = grid[2]
                g3 = grid[d]
                for ii in range(lo, hi):
                    node0 = _U(base[ii])
                    q1 = charges[ii, 0]
                    q2 = charges[ii, 1]
                    q3 = charges[ii, 2] if d == 3 else 0.0
                    for t in range(n_combo):
                        node = node0 + _U(offset[t])
                        w = weights[ii, t]
                        g0[node] += w
                        g1[node] += w * q1
                        g2[node] += w * q2
                        g3[node] += w * q3
                continue
            for ii in range(lo, hi):
                node0 = base[ii]
                for t in range(n_combo):
                    node = _U(node0 + offset[t])
                    w = weights[ii, t]
                    grid[0, node] += w
                    for k in range(d):
                        grid[k + 1, node] += w * charges[ii, k]


@numba.njit(fastmath=FASTMATH, cache=True)
def _kernel_values(d2, dof, s_cut, coef, k1, k2):
    """``K1 = (1 + d2/dof)^-dof`` and ``K2 = (1 + d2/dof)^-(dof+1)`` elementwise (flat arrays).

    With ``s_cut > 0``, the smooth far-field parts instead: below ``d2 = s_cut`` the
    kernels are replaced by their quadratic Taylor polynomials in ``d2`` about ``s_cut``
    (``coef``, see :func:`_far_coefficients`).
    """
    unit = dof == 1.0
    for f in range(d2.shape[0]):
        s = d2[f]
        if s < s_cut:
            t = s - s_cut
            k1[f] = coef[0] + t * (coef[1] + t * coef[2])
            k2[f] = coef[3] + t * (coef[4] + t * coef[5])
        elif unit:
            w = 1.0 / (1.0 + s)
            k1[f] = w
            k2[f] = w * w
        else:
            q = 1.0 + s / dof
            w = q ** (-dof)
            k1[f] = w
            k2[f] = w / q


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


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _cells(Y, lo, inv_c, n_cells, cell):
    """Flat index of the cell (``n_cells^d``, width ``1 / inv_c``) of every point."""
    n, d = Y.shape
    for i in numba.prange(n):
        c_flat = 0
        for k in range(d):
            c = int((Y[i, k] - lo[k]) * inv_c)
            if c >= n_cells:
                c = n_cells - 1
            if c < 0:
                c = 0
            c_flat = c_flat * n_cells + c
        cell[i] = c_flat


@numba.njit(parallel=True, cache=True)
def _cell_sorted(Y, order, lo, ys):
    """``ys[k, ii] = Y[order[ii], k] - lo[k]`` for ``k < d``: the points' coordinates in
    cell order, one contiguous row per dimension (the near-field loops then stream them)."""
    n, d = Y.shape
    for ii in numba.prange(n):
        i = order[ii]
        for k in range(d):
            ys[k, ii] = Y[i, k] - lo[k]


@numba.njit(fastmath=FASTMATH, cache=True, inline="always")
def _near_terms(s, one, dof, unit, s_cut, c0, c1, c2, c3, c4, c5):
    """``(K2 - P2, K1 - P1)`` at squared distance ``s``, zero from ``s_cut`` on, in the
    precision of ``s`` and ``one`` (every constant comes in that precision)."""
    if unit:
        w = one / (one + s)
        k2 = w * w
    else:
        q = one + s / dof
        w = q ** (-dof)
        k2 = w / q
    u = s - s_cut
    f = k2 - (c3 + u * (c4 + u * c5))
    g = w - (c0 + u * (c1 + u * c2))
    if s >= s_cut:
        f = one - one
        g = one - one
    return f, g


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _near_field(ys, order, start, n_cells, reach, dof, s_cut, coef, out, row_z, acc_sorted, bufs):
    """Adds the near-field part ``K - P`` (nonzero below ``d2 = s_cut`` only) directly:
    ``out[i] += sum_j (K2 - P2)(y_i - y_j) (y_i - y_j)``, ``row_z[i] = sum_{j != i} (K1 - P1)``.

    ``ys`` holds the coordinates in cell order (cells at least ``sqrt(s_cut) / reach``
    wide, ``start`` their ranges). The points of a cell scan the ``(2 reach + 1)^d``
    cells around it; the cells of one row along the last axis are consecutive in that
    order, so that is ``(2 reach + 1)^(d-1)`` contiguous runs of ``ys``, which has three
    rows whatever ``d`` (rows ``d`` on are zero: one loop serves every ``d``). Once per cell,
    the runs are copied into the thread's buffer (``bufs[thread]``, ``(3, B)``), and
    every point of the cell sweeps the buffer in one branch-free loop that the compiler
    vectorises (pairs beyond the cut are masked); runs holding more than ``B`` points
    are swept in batches of ``B``. (Sweeping the ~25 runs one by one, as before, paid a
    vector epilogue and a horizontal reduction per run: 70 -> 25 ms per call on a 3-D
    MNIST-70k embedding. The sweep stays in this loop body and is written once, for three
    coordinates: compiled as a function of its own, or with a second loop for ``d < 3``
    beside it, the same loop was not vectorised, 4-16x slower.) The point itself adds nothing to the
    force (zero offset) and ``K1(0) - P1(0)`` to ``row_z``, subtracted at the end.
    Parallel over cells; each point writes its own row; the order of every sum depends
    on the cells and ``B`` only, not on the thread count. The coordinates, buffers and
    pair terms are single precision (per point a float32 sum over at most ``B`` pairs,
    added to float64): twice the lanes per vector, 26 -> 16 ms per call on that
    embedding, the terms within ~5e-6 of the largest force (test against a float64 dense
    sum), far below the split's ~1e-3 interpolation error.
    """
    n = ys.shape[1]
    d = out.shape[1]
    unit = dof == 1.0
    self_z = 1.0 - (coef[0] - s_cut * (coef[1] - s_cut * coef[2]))
    # the pair terms in single precision, like ys and the buffers (16 lanes per vector)
    one = np.float32(1.0)
    c0, c1, c2, c3, c4, c5 = (np.float32(coef[0]), np.float32(coef[1]), np.float32(coef[2]),
                              np.float32(coef[3]), np.float32(coef[4]), np.float32(coef[5]))
    dof_r = np.float32(dof)
    s_cut_r = np.float32(s_cut)
    width = 2 * reach + 1
    n_rows = width ** (d - 1)
    n_total = n_cells ** d
    batch = bufs.shape[2]
    for cell in numba.prange(n_total):
        lo = start[cell]
        hi = start[cell + 1]
        if lo == hi:
            continue
        buf = bufs[numba.get_thread_id()]
        digit = np.empty(3, dtype=np.int64)
        rest = cell
        for k in range(d - 1, -1, -1):
            digit[k] = rest % n_cells
            rest //= n_cells
        # the contiguous runs [run_lo, run_hi) of ys that hold the neighbouring cells
        run_lo = np.empty(n_rows, dtype=np.int64)
        run_hi = np.empty(n_rows, dtype=np.int64)
        n_runs = 0
        last_lo = max(digit[d - 1] - reach, 0)
        last_hi = min(digit[d - 1] + reach, n_cells - 1)
        for t in range(n_rows):
            row = 0
            code = t
            inside = True
            for k in range(d - 1):
                c = digit[k] + (code % width) - reach
                code //= width
                if c < 0 or c >= n_cells:
                    inside = False
                row = row * n_cells + c
            if inside:
                run_lo[n_runs] = start[row * n_cells + last_lo]
                run_hi[n_runs] = start[row * n_cells + last_hi + 1]
                n_runs += 1
        for ii in range(lo, hi):
            for k in range(d):
                acc_sorted[ii, k] = 0.0
            row_z[ii] = -self_z
        r = 0
        jj = run_lo[0] if n_runs > 0 else 0
        while r < n_runs:
            # fill the buffer with up to ``batch`` points of the runs, from run r, point jj on
            n_buf = 0
            while r < n_runs and n_buf < batch:
                take = min(run_hi[r] - jj, batch - n_buf)
                for q in range(take):
                    buf[0, n_buf + q] = ys[0, jj + q]
                    buf[1, n_buf + q] = ys[1, jj + q]
                    buf[2, n_buf + q] = ys[2, jj + q]
                n_buf += take
                jj += take
                if jj == run_hi[r]:
                    r += 1
                    if r < n_runs:
                        jj = run_lo[r]
            b0 = buf[0, :n_buf]
            b1 = buf[1, :n_buf]
            b2 = buf[2, :n_buf]
            for ii in range(lo, hi):
                x0 = ys[0, ii]
                x1 = ys[1, ii]
                x2 = ys[2, ii]
                a0 = one - one
                a1 = one - one
                a2 = one - one
                zi = one - one
                for q in range(n_buf):
                    t0 = x0 - b0[q]
                    t1 = x1 - b1[q]
                    t2 = x2 - b2[q]
                    f, g = _near_terms(t0 * t0 + t1 * t1 + t2 * t2, one, dof_r, unit, s_cut_r,
                                       c0, c1, c2, c3, c4, c5)
                    zi += g
                    a0 += f * t0
                    a1 += f * t1
                    a2 += f * t2
                acc_sorted[ii, 0] += a0
                if d > 1:
                    acc_sorted[ii, 1] += a1
                if d > 2:
                    acc_sorted[ii, 2] += a2
                row_z[ii] += zi
    # into the points' own order in a pass of its own (as in _gather)
    for ii in numba.prange(n):
        i = order[ii]
        for k in range(d):
            out[i, k] += acc_sorted[ii, k]


@numba.njit(fastmath=FASTMATH, cache=True)
def _apply_kernel(spec, khat2, khat1, m_nodes, d, want_total):
    """``spec *= khat2`` in place; with ``want_total`` returns ``sum_m |spec_m|^2 khat1_m /
    (2M)^d`` (before the product), which by Parseval is ``sum_a q_a (K1 * q)_a`` -- ``Z``
    plus the self terms when ``spec`` is the spectrum of the unit charges (else 0).

    ``spec`` is a half spectrum ``(R, M + 1)`` with ``R = (2 M)^(d-1)`` rows over the
    padded axes; ``khat*`` are compact real kernel spectra ``((M + 1)^(d-1), M + 1)``,
    mirrored (``m -> 2M - m``) on the full axes. Serial: a parallel version was slower, its
    worker threads competing with scipy.fft's in the transform that follows.
    """
    n_rows, n_cols = spec.shape
    full = 2 * m_nodes
    size = m_nodes + 1
    total = 0.0
    for r in range(n_rows):
        div = 1
        kr = 0
        stride = 1
        for _ in range(d - 1):
            m = (r // div) % full
            div *= full
            if m > m_nodes:
                m = full - m
            kr += m * stride
            stride *= size
        row = 0.0
        for col in range(n_cols):
            v = spec[r, col]
            if want_total:
                a = np.float64(v.real)
                b = np.float64(v.imag)
                wgt = 2.0 if (col != 0 and col != m_nodes) else 1.0
                row += wgt * (a * a + b * b) * khat1[kr, col]
            spec[r, col] = v * khat2[kr, col]
        total += row
    return total / np.float64(full) ** d


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gather(charges, order, base, weights, offset, phi, out, z, sorted_out, z_sorted):
    """Interpolate the potentials back to the points, in box order: ``out[order[ii]] = r``.

    ``phi[0]`` = K2 * 1 and ``phi[1 + k]`` = K2 * (y_k - c_k) on the nodes; with a
    ``phi[d + 1]`` (= K1 * 1, the fixed-reference case) ``z[order[ii]]`` receives it too.
    Each point writes only its own row. ``sorted_out`` / ``z_sorted`` are scratch of the
    shapes of ``out`` / ``z``.
    """
    n, d = charges.shape
    n_out = phi.shape[0]
    n_combo = offset.shape[0]
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        # the repulsion's own cases (2-D and 3-D, no K1 channel) with scalar accumulators and
        # one row view per channel (in 2-D the last one is read twice, unused): 1.8 -> ~1.0 ms
        # per 2-D call at MNIST-70k's final grid, 4.4 -> 2.4 ms in 3-D
        if n_out == d + 1 and d >= 2:
            p0 = phi[0]
            p1 = phi[1]
            p2 = phi[2]
            p3 = phi[d]
            for ii in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
                node0 = _U(base[ii])
                a0 = 0.0
                a1 = 0.0
                a2 = 0.0
                a3 = 0.0
                for t in range(n_combo):
                    node = node0 + _U(offset[t])
                    w = weights[ii, t]
                    a0 += w * p0[node]
                    a1 += w * p1[node]
                    a2 += w * p2[node]
                    a3 += w * p3[node]
                sorted_out[ii, 0] = charges[ii, 0] * a0 - a1
                sorted_out[ii, 1] = charges[ii, 1] * a0 - a2
                if d == 3:
                    sorted_out[ii, 2] = charges[ii, 2] * a0 - a3
            continue
        acc = np.empty(5)
        for ii in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            for c in range(n_out):
                acc[c] = 0.0
            node0 = base[ii]
            for t in range(n_combo):
                node = node0 + offset[t]
                w = weights[ii, t]
                for c in range(n_out):
                    acc[c] += w * phi[c, node]
            for k in range(d):
                sorted_out[ii, k] = charges[ii, k] * acc[0] - acc[k + 1]
            if n_out > d + 1:
                z_sorted[ii] = acc[d + 1]
    # back to the points' own order in a pass of its own: scattered stores inside the
    # accumulation loop above stalled it (measured at 70k: 4.2 ms -> 2.5 ms for both passes)
    for blk in numba.prange(n_blocks):
        for ii in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            i = order[ii]
            for k in range(d):
                out[i, k] = sorted_out[ii, k]
            if n_out > d + 1:
                z[i] = z_sorted[ii]


# ---------------------------------------------------------------------------------------
# grid choice
# ---------------------------------------------------------------------------------------
def _fast_n_boxes(n_boxes, p):
    """Smallest ``>= n_boxes`` box count whose padded FFT length ``2 n p`` is 5-smooth."""
    while scipy.fft.next_fast_len(2 * n_boxes * p, real=True) != 2 * n_boxes * p:
        n_boxes += 1
    return n_boxes


def grid_size(extent, d, n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1.0, *,
              caps=None, cap_name="MAX_GRID_NODES", fallback="bh", on_cap=None):
    """Boxes per dimension for a bounding cube of side ``extent`` (see the module docstring).

    If the padded grid would exceed ``caps[d]`` nodes (default :data:`MAX_GRID_NODES`), the
    largest grid under the cap is used instead, with boxes wider than ``ints_in_interval``:
    ``on_cap(d, extent, n_boxes)`` is called (default: log once per process;
    :class:`FFTRepulsion` then splits off a direct near field), as long as the boxes are at
    most :data:`MAX_COARSENING` times ``ints_in_interval`` wide; beyond that (points that
    shot off) a ``ValueError`` is raised that names ``cap_name`` and suggests
    ``negative_gradient_method=fallback``. The torch backend uses the same rule with its
    own caps.
    """
    p = n_interpolation_points
    min_boxes, width = min_num_intervals, float(ints_in_interval)
    if d == 3:
        min_boxes = min(min_boxes, MIN_INTERVALS_3D)
    ratio = extent / width
    if not ratio < 2 ** 40:
        n_req = 2 ** 40
    else:
        n_req = max(int(min_boxes), int(math.ceil(ratio)), 1)
    cap = (MAX_GRID_NODES if caps is None else caps)[d]
    if (2 * n_req * p) ** d <= cap:
        n_boxes = _fast_n_boxes(n_req, p)
        if (2 * n_boxes * p) ** d > cap:  # rounding up crossed the cap: keep n_req
            n_boxes = n_req
        return n_boxes
    n_fit = _largest_fitting_n_boxes(cap, d, p)
    if ratio > MAX_COARSENING * n_fit:
        raise ValueError(
            f"The FFT repulsion grid would need {n_req} boxes x {p} interpolation points = "
            f"{n_req * p} nodes per dimension ({(2 * n_req * p) ** d:.3g} padded nodes in {d}-D); "
            f"even the largest grid under the cap of {cap} nodes ({cap_name}[{d}]) would "
            f"have boxes {extent / n_fit:.3g} units wide, more than MAX_COARSENING = "
            f"{MAX_COARSENING} x ints_in_interval, because the embedding spans {extent:.4g} "
            "units: points have probably shot off. Limit the step size (set max_step_norm or "
            f"lower the learning rate), or use negative_gradient_method='{fallback}'."
        )
    (on_cap or _log_capped_grid)(d, extent, n_fit, width)
    return n_fit


class CappedGridNotice:
    """The ``on_cap`` hook of :func:`grid_size` that logs, once per process (``done``),
    ``template`` formatted with the fields ``d``, ``extent``, ``n_fit``, ``box`` (the
    capped box width) and ``width`` (``ints_in_interval``); the numba and torch FFT
    backends each keep one."""

    def __init__(self, log, level, template):
        self.log, self.level, self.template = log, level, template
        self.done = False

    def __call__(self, d, extent, n_fit, width):
        if not self.done:
            self.done = True
            self.log.log(self.level, self.template.format(
                d=d, extent=extent, n_fit=n_fit, box=extent / n_fit, width=width))


_log_capped_grid = CappedGridNotice(
    logger, logging.INFO,
    "The {d}-D embedding spans {extent:.4g} units: the FFT repulsion grid is capped at {n_fit} "
    "boxes per dimension, so its boxes are {box:.3g} units wide instead of at most "
    "ints_in_interval = {width:g}; pairs closer than " + f"{NEAR_FIELD_RADIUS:g}" + " box widths "
    "are summed directly (logged once).")


#: steps per octave of the node-spacing ladder (see :func:`ladder_spacing`)
SPACING_STEPS_PER_OCTAVE = 16


def ladder_spacing(fit, base):
    """The node spacing actually used: the smallest ``base * 2^(-k/16)`` (k >= 0) not below
    ``fit``, the spacing at which the grid's nodes would just cover the embedding (``fit``
    itself when it is not below ``base = ints_in_interval / p``, i.e. on a capped grid).

    A spacing from a fixed ladder (steps of 4.4 %) changes only every few iterations while
    the embedding grows, so the kernel spectra (two DCTs and the kernel values: ~2.8 ms per
    call at 70k points) are reused across iterations instead of recomputed each time. The
    grid keeps its node count and covers the points with room to spare, at a spacing at
    most 4.4 % coarser than ``fit`` and never above ``base`` (the rule's bound).
    """
    if not fit < base:  # a capped grid (boxes wider than ints_in_interval): no ladder
        return fit
    k = math.floor(SPACING_STEPS_PER_OCTAVE * math.log2(base / fit))
    h = base * 2.0 ** (-k / SPACING_STEPS_PER_OCTAVE)
    while h < fit:  # rounding in log2
        k -= 1
        h = base * 2.0 ** (-k / SPACING_STEPS_PER_OCTAVE)
    return h


def split_caps(n_points):
    """Grid caps of :class:`FFTRepulsion` for ``n_points`` points: :data:`MAX_GRID_NODES`,
    except in 3-D, where the cap is :data:`SPLIT_NODES_PER_POINT` nodes per point (at
    least :data:`SPLIT_MIN_NODES`).

    A wide 3-D embedding is always on a capped grid with a near field, and there the
    cap sets the balance: the FFTs cost ~ the node count, the near field ~ ``n^2 /
    nodes`` (the pairs within a box width). Measured per call on 3-D MNIST embeddings
    (2 cores, extents 120-170): 3,000 points: 51 ms under 2^22 nodes, 6 ms under
    2^16-2^17; 10,000: 57 ms under 2^22, 15 ms under 2^18-2^19; 70,000: 113 ms under
    2^22, 107 ms under 2^21. A coarser grid is also *more* accurate here (its near
    field, summed exactly, is wider): 2.1e-3 -> 3.8e-4 at 3,000 points. Re-measured at
    70,000 points (extent 185) once the near field had its per-cell buffer and single
    precision (``python bench/bench_split_3d.py --data mnist70k``, three runs, ms per
    call): 8 nodes per point 53, 12: 52, **16: 44-50**, 24: 45-55, 32 (the value until
    then): 48-60, 48: 60-64, 64: 69-79; force error 8.3e-4 at 8, 1.1e-3 at 16, 1.5e-3 at
    32, 1.9e-3 at 64. A near field of 1.5 boxes: 1.7e-4 at 16 nodes, 59 ms.
    """
    caps = dict(MAX_GRID_NODES)
    caps[3] = int(min(MAX_GRID_NODES[3], max(SPLIT_MIN_NODES, SPLIT_NODES_PER_POINT * n_points)))
    return caps


def _largest_fitting_n_boxes(cap, d, p):
    """Largest box count whose padded grid ``(2 n p)^d`` fits ``cap``, preferring a
    5-smooth FFT length (at most 10 % fewer boxes)."""
    n = 1
    while (2 * (n + 1) * p) ** d <= cap:
        n += 1
    for m in range(n, max(1, int(0.9 * n)) - 1, -1):
        if scipy.fft.next_fast_len(2 * m * p, real=True) == 2 * m * p:
            return m
    return n


# ---------------------------------------------------------------------------------------
# shared helpers
# ---------------------------------------------------------------------------------------
def _check_dims(d):
    if d not in (1, 2, 3):
        raise ValueError(
            "negative_gradient_method='fft' supports n_components of 1, 2 or 3 only; "
            f"got {d}. Use negative_gradient_method='bh' or 'exact'."
        )


def _finite_bounds(Y):
    """Per-dimension ``(lo, hi)`` of ``Y``; ``ValueError`` on NaN or inf.

    One parallel pass (numpy's ``Y.min(axis=0)`` on an (n, 2) C-order array took ~1.3 ms
    at 70k points, twice per call: ~7 % of a 2-D FFT gradient)."""
    Y = np.ascontiguousarray(Y, dtype=np.float64)
    d = Y.shape[1]
    n_blocks = max(1, min(64, Y.shape[0] // 4096))
    part = np.empty((n_blocks, 2, d))
    if Y.shape[0] == 0 or not _block_bounds(Y, part):
        raise ValueError("The embedding contains NaN or inf; the FFT repulsion needs finite values.")
    return part[:, 0].min(axis=0), part[:, 1].max(axis=0)


@numba.njit(parallel=True, cache=True)
def _block_bounds(Y, part):
    """Per block of rows, the column minima ``part[b, 0]`` and maxima ``part[b, 1]``;
    returns False if any value is NaN or infinite."""
    n, d = Y.shape
    n_blocks = part.shape[0]
    ok = np.ones(n_blocks, dtype=np.bool_)
    for b in numba.prange(n_blocks):
        lo_row = b * n // n_blocks
        hi_row = (b + 1) * n // n_blocks
        for k in range(d):
            part[b, 0, k] = np.inf
            part[b, 1, k] = -np.inf
        for i in range(lo_row, hi_row):
            for k in range(d):
                v = Y[i, k]
                if not np.isfinite(v):
                    ok[b] = False
                if v < part[b, 0, k]:
                    part[b, 0, k] = v
                if v > part[b, 1, k]:
                    part[b, 1, k] = v
    return ok.all()


def _cube_extent(lo, hi):
    """Side of the bounding cube of ``[lo, hi]``, floored away from zero (identical points)."""
    extent = float(np.max(hi - lo))
    floor = 1e-10 * max(1.0, float(np.max(np.abs(np.concatenate([lo, hi])))))
    return max(extent, floor)


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
            self._key = key
        origin = np.ascontiguousarray(origin, dtype=np.float64)
        _boxes(Y, origin, 1.0 / spacing, layout.m_nodes, layout.p, layout.n_boxes, self.box)
        _sort_by_box(self.box, layout.n_boxes ** d, self.start, self.order)
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
        extent = _cube_extent(lo, hi)
        margin = (STENCIL - 1) * self.ints_in_interval / p
        n_boxes = grid_size(extent + margin, d, p, self.min_num_intervals,
                            self.ints_in_interval, caps=caps)
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


# ---------------------------------------------------------------------------------------
# the backends
# ---------------------------------------------------------------------------------------
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
            self._cell_ys = np.zeros((3, n), dtype=np.float32)  # rows d.. stay zero (see _near_field)
            self._near_acc = np.empty((n, d))
            self._row_z = np.empty(n)
            self._near_key = key
        _cells(Y, lo, n_cells / extent, n_cells, self._cell)
        _sort_by_box(self._cell, n_cells ** d, self._cell_start, self._cell_order)
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
