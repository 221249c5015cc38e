"""Numba kernels of the FFT repulsion (:mod:`turbotsne.gradients.fft`).

Per point (in blocks of :data:`_BLOCK` points): its box, base node and ``3^d`` quadratic
B-spline weights (:func:`interpolation_weights`), kept in box order (:func:`sort_by_box`);
spreading the charges onto the node grid (:func:`spread`, in parallel over slabs of boxes
coloured so that no two threads write one node), the kernel values and the product with the
kernel spectrum (:func:`kernel_values`, :func:`apply_kernel`), gathering the potentials back
(:func:`gather`), and the direct near field of a capped grid (:func:`cells`,
:func:`cell_sorted`, :func:`near_field`). Kernels write into arrays the caller allocated; every
sum runs in an order fixed by the data, so results do not depend on the thread count. Compiled
on first use, cached on disk. Why the loops have the shapes they have: docs/design/fft.md.
"""
from __future__ import annotations

import numba
import numpy as np

from .._config import FASTMATH

#: points per parallel block of the per-point kernels (fixed: independent of threads).
_BLOCK = 256

#: node and point positions as unsigned integers in the spreading loop (never negative): numba
#: then emits no negative-index wraparound code per grid access
_U = numba.uint64


@numba.njit(fastmath=FASTMATH, cache=True, inline="always")
def nearest_node(y, origin, inv_h, m_nodes):
    """Node units ``s`` of a coordinate and its nearest node ``j`` (clamped to ``[1, M - 2]``)."""
    s = (y - origin) * inv_h
    # np.int64 truncates as int() does (whose overload compiles a routine of its own)
    j = np.int64(s + 0.5) if s > 0.0 else 0
    if j > m_nodes - 2:
        j = m_nodes - 2
    if j < 1:
        j = 1
    return s, j


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def boxes(Y, origin, inv_h, m_nodes, p, n_boxes, box):
    """Flat box index of each point (in the points' own order): per dimension, the box of
    its stencil's first node, ``(j - 1) // p``."""
    n, d = Y.shape
    for i in numba.prange(n):
        b_flat = 0
        for k in range(d):
            _, j = nearest_node(Y[i, k], origin[k], inv_h, m_nodes)
            b_flat = b_flat * n_boxes + (j - 1) // p
        box[i] = b_flat


def interpolation_weights(Y, centre, order, origin, inv_h, m_nodes, combo, strides, base, weights,
                          charges):
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
    kernel = _interpolation_weights_2d if Y.shape[1] == 2 else _interpolation_weights_any
    kernel(Y, centre, order, origin, inv_h, m_nodes, combo, strides, base, weights, charges)


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _interpolation_weights_2d(Y, centre, order, origin, inv_h, m_nodes, combo, strides, base,
                              weights, charges):
    # d = 2 with scalars (combo is C order: t = 3 a + b)
    n = Y.shape[0]
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        hi = (blk + 1) * _BLOCK
        for ii in range(blk * _BLOCK, hi if hi < n else n):
            i = order[ii]
            s0, j0 = nearest_node(Y[i, 0], origin[0], inv_h, m_nodes)
            s1, j1 = nearest_node(Y[i, 1], origin[1], inv_h, m_nodes)
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


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _interpolation_weights_any(Y, centre, order, origin, inv_h, m_nodes, combo, strides, base,
                               weights, charges):
    n, d = Y.shape
    n_combo = combo.shape[0]
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        lw = np.empty((3, 3))  # per-dimension 1-D weights (d <= 3), one per block
        for ii in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            i = order[ii]
            node_flat = 0
            for k in range(d):
                s, j = nearest_node(Y[i, k], origin[k], inv_h, m_nodes)
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
def sort_by_box(box, n_box_total, start, order, fill):
    """Stable counting sort: points of box ``b`` are ``order[start[b]:start[b + 1]]``.

    ``fill`` (``n_box_total`` int64, overwritten) holds the boxes' fill cursors; the caller
    hands it in, as an allocation in a kernel compiles numba's ``np.empty`` on the first run."""
    n = box.shape[0]
    for b in range(n_box_total + 1):
        start[b] = 0
    for i in range(n):
        start[box[i] + 1] += 1
    for b in range(n_box_total):
        start[b + 1] += start[b]
    for b in range(n_box_total):
        fill[b] = start[b]
    for i in range(n):
        b = box[i]
        order[fill[b]] = i
        fill[b] += 1


def spread(charges, start, base, n_boxes, n_colours, m_nodes, strides, weights, offset, grid):
    """Charges ``[1, y_1 - c_1, ..., y_d - c_d]`` onto the nodes: ``grid[c, node]``
    (``charges``, ``base`` and ``weights`` in box order, as :func:`interpolation_weights`
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
    kernel = _spread_2d3d if charges.shape[1] >= 2 else _spread_any
    kernel(charges, start, base, n_boxes, n_colours, m_nodes, strides, weights, offset, grid)


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _spread_2d3d(charges, start, base, n_boxes, n_colours, m_nodes, strides, weights, offset, grid):
    # 2-D and 3-D: scalar charges and one row view per channel (as in gather; in 2-D the last
    # view adds zeros)
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
                r_end = (b0 + n_colours) * p
                r_end = r_end if r_end < m_nodes else m_nodes
                for c in range(n_channels):
                    for f in range(b0 * p * row, r_end * row):
                        grid[c, f] = 0.0
            lo = _U(start[b0 * slab])
            hi = _U(start[(b0 + 1) * slab])
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


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _spread_any(charges, start, base, n_boxes, n_colours, m_nodes, strides, weights, offset, grid):
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
            for ii in range(lo, hi):
                node0 = base[ii]
                for t in range(n_combo):
                    node = _U(node0 + offset[t])
                    w = weights[ii, t]
                    grid[0, node] += w
                    for k in range(d):
                        grid[k + 1, node] += w * charges[ii, k]


@numba.njit(fastmath=FASTMATH, cache=True)
def kernel_values(d2, dof, s_cut, coef, k1, k2):
    """``K1 = (1 + d2/dof)^-dof`` and ``K2 = (1 + d2/dof)^-(dof+1)`` elementwise (flat arrays).

    With ``s_cut > 0``, the smooth far-field parts instead: below ``d2 = s_cut`` the
    kernels are replaced by their quadratic Taylor polynomials in ``d2`` about ``s_cut``
    (``coef``, see :func:`turbotsne.gradients.fft._far_coefficients`).
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


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def cells(Y, lo, inv_c, n_cells, cell):
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
def cell_sorted(Y, order, lo, ys):
    """``ys[k, ii] = Y[order[ii], k] - lo[k]`` for ``k < d``: the points' coordinates in
    cell order, one contiguous row per dimension (the near-field loops then stream them)."""
    n, d = Y.shape
    for ii in numba.prange(n):
        i = order[ii]
        for k in range(d):
            ys[k, ii] = Y[i, k] - lo[k]


@numba.njit(fastmath=FASTMATH, cache=True, inline="always")
def near_terms(s, one, dof, unit, s_cut, c0, c1, c2, c3, c4, c5):
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
def near_field(ys, order, start, n_cells, reach, dof, s_cut, coef, out, row_z, acc_sorted, bufs):
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
    are swept in batches of ``B``. The sweep stays in this loop body and is written once,
    for three coordinates (split off or duplicated, it is not vectorised). The point
    itself adds nothing to the force (zero offset) and ``K1(0) - P1(0)`` to ``row_z``,
    subtracted at the end. Parallel over cells; each point writes its own row; the order
    of every sum depends on the cells and ``B`` only, not on the thread count. The
    coordinates, buffers and pair terms are single precision (per point a float32 sum over
    at most ``B`` pairs, added to float64), far below the split's interpolation error.
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
                    f, g = near_terms(t0 * t0 + t1 * t1 + t2 * t2, one, dof_r, unit, s_cut_r,
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
    # into the points' own order in a pass of its own (as in gather)
    for ii in numba.prange(n):
        i = order[ii]
        for k in range(d):
            out[i, k] += acc_sorted[ii, k]


@numba.njit(fastmath=FASTMATH, cache=True)
def apply_kernel(spec, khat2, khat1, m_nodes, d, want_total):
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
            # a complex value times a real one, written out: numba's complex product compiles
            # its inf / NaN recovery (~0.2 s on the first run) for products by ``k + 0j``
            k = khat2[kr, col]
            spec[r, col] = complex(v.real * k, v.imag * k)
        total += row
    norm = 1.0  # (2M)^d, exact in float64 (a product loop: ``**`` compiles a power routine)
    for _ in range(d):
        norm *= full
    return total / norm


def gather(charges, order, base, weights, offset, phi, out, z, sorted_out, z_sorted):
    """Interpolate the potentials back to the points, in box order: ``out[order[ii]] = r``.

    ``phi[0]`` = K2 * 1 and ``phi[1 + k]`` = K2 * (y_k - c_k) on the nodes; with a
    ``phi[d + 1]`` (= K1 * 1, the fixed-reference case) ``z[order[ii]]`` receives it too.
    Each point writes only its own row. ``sorted_out`` / ``z_sorted`` are scratch of the
    shapes of ``out`` / ``z``.
    """
    d = charges.shape[1]
    kernel = _gather_forces if phi.shape[0] == d + 1 and d >= 2 else _gather_any
    kernel(charges, order, base, weights, offset, phi, out, z, sorted_out, z_sorted)


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gather_forces(charges, order, base, weights, offset, phi, out, z, sorted_out, z_sorted):
    # the repulsion's own cases (2-D and 3-D, no K1 channel) with scalar accumulators and one row
    # view per channel (in 2-D the last one is read twice, unused)
    n, d = charges.shape
    n_combo = offset.shape[0]
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        p0 = phi[0]
        p1 = phi[1]
        p2 = phi[2]
        p3 = phi[d]
        hi = (blk + 1) * _BLOCK
        for ii in range(blk * _BLOCK, hi if hi < n else n):
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
    # back to the points' own order in a pass of its own: scattered stores inside the
    # accumulation loop above stalled it
    for blk in numba.prange(n_blocks):
        hi = (blk + 1) * _BLOCK
        for ii in range(blk * _BLOCK, hi if hi < n else n):
            i = order[ii]
            for k in range(d):
                out[i, k] = sorted_out[ii, k]


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _gather_any(charges, order, base, weights, offset, phi, out, z, sorted_out, z_sorted):
    n, d = charges.shape
    n_out = phi.shape[0]
    n_combo = offset.shape[0]
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
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
    for blk in numba.prange(n_blocks):
        for ii in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            i = order[ii]
            for k in range(d):
                out[i, k] = sorted_out[ii, k]
            if n_out > d + 1:
                z[i] = z_sorted[ii]


@numba.njit(parallel=True, cache=True)
def block_bounds(Y, part, ok):
    """Per block of rows, the column minima ``part[b, 0]`` and maxima ``part[b, 1]``;
    returns False if any value is NaN or infinite (one parallel loop: no array expression,
    which would compile into parallel loops of its own; ``ok``, one flag per block, comes from
    the caller: an allocation here would compile numba's ``np.empty``)."""
    n, d = Y.shape
    n_blocks = part.shape[0]
    for b in numba.prange(n_blocks):
        lo_row = b * n // n_blocks
        hi_row = (b + 1) * n // n_blocks
        finite = True
        # a column at a time into scalars (not into ``part`` per value): twice as fast, and
        # cheaper to compile
        for k in range(d):
            lo = np.inf
            hi = -np.inf
            for i in range(lo_row, hi_row):
                v = Y[i, k]
                if not np.isfinite(v):
                    finite = False
                if v < lo:
                    lo = v
                if v > hi:
                    hi = v
            part[b, 0, k] = lo
            part[b, 1, k] = hi
        ok[b] = finite
    for b in range(n_blocks):
        if not ok[b]:
            return False
    return True
