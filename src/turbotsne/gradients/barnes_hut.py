"""Barnes-Hut repulsion in 1-3 dimensions on a linear 2^d-ary tree (numba).

:class:`BarnesHutRepulsion` is a callable ``(Y, dof, out) -> Z`` that builds the tree of
``Y`` on every call; :class:`BarnesHutReferenceRepulsion` builds the tree of a fixed
reference once and computes the repulsion of new points by it (``transform``). A cell of
side ``s`` whose centre of mass is at distance ``r`` from a point is summarised when
``s / r < theta`` (for new points with ``dof > 1`` also only where the kernel varies
little across it, or where its contribution is negligible); summaries are second order
(centre of mass and covariance). ``theta = 0`` summarises nothing: the exact sum.

Promises: build and traversal run in parallel, yet the result is bit-identical for any
number of threads; duplicate points end in leaves at the depth cap (no unbounded
recursion); NaN or inf raise ``ValueError``; the tree arrays are kept on the object, so
repeated calls of one size do not allocate. How, and how accurate: docs/design/barnes_hut.md.
"""
from __future__ import annotations

import numba
import numpy as np

from .._config import FASTMATH

#: levels below the root (the depth cap) per embedding dimension; ``d * depth``
#: bits must fit into a non-negative int64 key.
DEPTH = {1: 30, 2: 30, 3: 21}
#: points per parallel block in the generic traversal (1-D / 3-D fits) and that of foreign queries.
_BLOCK = 64
#: the fit's 2-D traversal walks the tree once per cell of at most this many points.
_GROUP = 128
#: radix sort: bits per digit and rows per histogram block.
_RADIX_BITS = 8
_SORT_BLOCK = 8192
#: below these sizes a pass runs serially: a parallel region (fork/join) costs
#: more than the work, and much more when the cores are oversubscribed.
_PAR_MIN_BLOCKS = 8
_PAR_MIN_NODES = 2048
#: explicit stack size of the traversal; enough for depth * (2^d - 1) + 2^d.
_STACK = 512

#: foreign queries, dof > 1: a cell whose contribution to a query's ``z`` is at
#: most this fraction of (a lower bound of) that ``z`` is summarised by its
#: monopole even where the second-order expansion is not valid.
_NEGLIGIBLE = 1e-5

#: failure codes: :func:`_build_tree` ran out of node capacity; :func:`_morton_keys` met NaN or inf.
_FAILED_CAPACITY = -1
_FAILED_NONFINITE = -1.0


@numba.njit(inline="always")
def _spread2(v):
    # spread the low 32 bits of v to the even bit positions of a 64-bit word
    v &= 0xFFFFFFFF
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    v = (v | (v << 1)) & 0x5555555555555555
    return v


@numba.njit(inline="always")
def _spread3(v):
    # spread the low 21 bits of v to every third bit position
    v &= 0x1FFFFF
    v = (v | (v << 32)) & 0x1F00000000FFFF
    v = (v | (v << 16)) & 0x1F0000FF0000FF
    v = (v | (v << 8)) & 0x100F00F00F00F00F
    v = (v | (v << 4)) & 0x10C30C30C30C30C3
    v = (v | (v << 2)) & 0x1249249249249249
    return v


@numba.njit(fastmath=FASTMATH, cache=True)
def _morton_keys(Y, depth, keys):
    """Write the Morton key of every row of ``Y`` into ``keys``; return the cube side.

    Returns ``_FAILED_NONFINITE`` when ``Y`` holds NaN or inf. Serial: a few bit operations per
    point (~0.35 ms at 70,000 points against ~26 ms for the traversal), and a parallel loop
    would cost ~0.5 s more to compile on the first run.
    """
    n, d = Y.shape
    lo = np.empty(d)
    hi = np.empty(d)
    for k in range(d):
        lo[k] = np.inf
        hi[k] = -np.inf
    finite = True
    for i in range(n):
        for k in range(d):
            v = Y[i, k]
            if not np.isfinite(v):
                finite = False
            if v < lo[k]:
                lo[k] = v
            if v > hi[k]:
                hi[k] = v
    if not finite:
        return _FAILED_NONFINITE
    side = 0.0
    for k in range(d):
        if hi[k] - lo[k] > side:
            side = hi[k] - lo[k]
    if side <= 0.0:
        side = 1.0  # all points identical: any cube will do
    n_cells = 1 << depth
    scale = n_cells / side
    top = n_cells - 1
    for i in range(n):
        key = np.int64(0)
        for k in range(d):
            q = np.int64((Y[i, k] - lo[k]) * scale)
            if q > top:
                q = top
            elif q < 0:
                q = 0
            if d == 1:
                key = q
            elif d == 2:
                key |= _spread2(q) << k
            else:
                key |= _spread3(q) << k
        keys[i] = key
    return side


@numba.njit(cache=True)
def _hist_block(src_k, shift, hist, b):
    n = src_k.shape[0]
    mask = (1 << _RADIX_BITS) - 1
    for r in range(1 << _RADIX_BITS):
        hist[b, r] = 0
    for i in range(b * _SORT_BLOCK, min(n, (b + 1) * _SORT_BLOCK)):
        hist[b, (src_k[i] >> shift) & mask] += 1


@numba.njit(cache=True)
def _scatter_block(src_k, src_o, dst_k, dst_o, shift, hist, b):
    n = src_k.shape[0]
    mask = (1 << _RADIX_BITS) - 1
    for i in range(b * _SORT_BLOCK, min(n, (b + 1) * _SORT_BLOCK)):
        r = (src_k[i] >> shift) & mask
        pos = hist[b, r]
        hist[b, r] = pos + 1
        dst_k[pos] = src_k[i]
        dst_o[pos] = src_o[i]


@numba.njit(parallel=True, cache=True)
def _radix_argsort(keys, n_bits, order, tmp_keys, tmp_order, hist):
    """Stable LSD radix argsort of the non-negative ``keys`` (< 2**n_bits).

    On return ``order`` holds the permutation and ``keys`` the sorted keys.
    ``tmp_*`` are scratch of the same length; ``hist`` is an int64 scratch of
    shape (n_blocks, 2**_RADIX_BITS). Per-block counts make the parallel
    scatter stable and independent of the thread count. Each pass is only
    parallel when there are several blocks (each parallel region costs a
    fork/join, expensive when the cores are oversubscribed).
    """
    n = keys.shape[0]
    n_buckets = 1 << _RADIX_BITS
    n_blocks = hist.shape[0]
    par = n_blocks >= _PAR_MIN_BLOCKS
    for i in range(n):
        order[i] = i
    src_k, src_o, dst_k, dst_o = keys, order, tmp_keys, tmp_order
    n_passes = (n_bits + _RADIX_BITS - 1) // _RADIX_BITS
    for pss in range(n_passes):
        shift = pss * _RADIX_BITS
        if par:  # (b as int64, the serial loop's type: one compiled _hist_block, not two)
            for b in numba.prange(n_blocks):
                _hist_block(src_k, shift, hist, np.int64(b))
        else:
            for b in range(n_blocks):
                _hist_block(src_k, shift, hist, b)
        # exclusive prefix over (bucket, block) in that order: stable
        total = 0
        for r in range(n_buckets):
            for b in range(n_blocks):
                c = hist[b, r]
                hist[b, r] = total
                total += c
        if par:
            for b in numba.prange(n_blocks):
                _scatter_block(src_k, src_o, dst_k, dst_o, shift, hist, np.int64(b))
        else:
            for b in range(n_blocks):
                _scatter_block(src_k, src_o, dst_k, dst_o, shift, hist, b)
        src_k, src_o, dst_k, dst_o = dst_k, dst_o, src_k, src_o
    if n_passes % 2 == 1:
        for i in range(n):
            keys[i] = tmp_keys[i]
            order[i] = tmp_order[i]


@numba.njit(inline="always")
def _upper_bound(skeys, lo, hi, prefix, shift):
    # first index in [lo, hi) whose key prefix (key >> shift) exceeds ``prefix``
    while lo < hi:
        mid = (lo + hi) >> 1
        if (skeys[mid] >> shift) > prefix:
            hi = mid
        else:
            lo = mid + 1
    return lo


@numba.njit(cache=True)
def _count_children(skeys, node_i, shift, t):
    # number of non-empty children of node t (0 for a node with < 2 points)
    s = node_i[t, 0]
    e = node_i[t, 1]
    cnt = 0
    if e - s >= 2:
        pos = s
        while pos < e:
            pos = _upper_bound(skeys, pos + 1, e, skeys[pos] >> shift, shift)
            cnt += 1
    node_i[t, 3] = cnt


@numba.njit(cache=True)
def _write_children(skeys, node_i, node_f, shift, crit, d, t):
    # children of node t at node_i[t, 2]..., with their slices and crit
    # (nothing for a leaf: its offset is shared with the next node's children)
    if node_i[t, 3] == 0:
        return
    s = node_i[t, 0]
    e = node_i[t, 1]
    ch = node_i[t, 2]
    pos = s
    while pos < e:
        nxt = _upper_bound(skeys, pos + 1, e, skeys[pos] >> shift, shift)
        node_i[ch, 0] = pos
        node_i[ch, 1] = nxt
        node_i[ch, 2] = 0
        node_i[ch, 3] = 0
        node_f[ch, d] = crit
        ch += 1
        pos = nxt


@numba.njit(fastmath=FASTMATH, cache=True)
def _moments(Ys, node_i, node_f, t):
    # centre of mass and second moment C = mean (y - c)(y - c)^T of node t
    # (row-major after crit), from its points or from its children
    d = Ys.shape[1]
    cv = d + 1
    for k in range(d + 1 + d * d):
        if k != d:
            node_f[t, k] = 0.0
    s = node_i[t, 0]
    e = node_i[t, 1]
    inv = 1.0 / (e - s)
    if node_i[t, 3] == 0:
        for p in range(s, e):
            for k in range(d):
                node_f[t, k] += Ys[p, k]
        for k in range(d):
            node_f[t, k] *= inv
        for p in range(s, e):
            for k in range(d):
                u = Ys[p, k] - node_f[t, k]
                for l in range(d):
                    node_f[t, cv + k * d + l] += u * (Ys[p, l] - node_f[t, l])
    else:
        c0 = node_i[t, 2]
        c1 = c0 + node_i[t, 3]
        for ch in range(c0, c1):
            m = node_i[ch, 1] - node_i[ch, 0]
            for k in range(d):
                node_f[t, k] += m * node_f[ch, k]
        for k in range(d):
            node_f[t, k] *= inv
        for ch in range(c0, c1):
            m = node_i[ch, 1] - node_i[ch, 0]
            for k in range(d):
                u = node_f[ch, k] - node_f[t, k]
                for l in range(d):
                    node_f[t, cv + k * d + l] += m * (
                        node_f[ch, cv + k * d + l] + u * (node_f[ch, l] - node_f[t, l])
                    )
    for k in range(d * d):
        node_f[t, cv + k] *= inv


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _build_tree(Y, skeys, order, side, theta, Ys, node_i, node_f, level_ptr):
    """Build the linear tree over the sorted keys ``skeys`` (permutation ``order``).

    Fills ``Ys`` (sorted coordinates), ``node_i`` rows ``(start, end,
    first_child, n_children)``, ``node_f`` rows ``(centre of mass..., crit,
    second moment...)`` and ``level_ptr`` (first node of each level; last
    entry = node count). Returns the number of nodes, or ``_FAILED_CAPACITY`` when
    ``node_i`` is too small. Levels with fewer than ``_PAR_MIN_NODES`` nodes
    are processed serially (a parallel region costs more than their work).
    """
    n, d = Y.shape
    depth = level_ptr.shape[0] - 2
    cap = node_i.shape[0]
    for p in numba.prange(n):
        for k in range(d):
            Ys[p, k] = Y[order[p], k]
    inv_theta = 1.0 / theta if theta > 0.0 else np.inf
    node_i[0, 0] = 0
    node_i[0, 1] = n
    node_i[0, 2] = 0
    node_i[0, 3] = 0
    node_f[0, d] = (side * inv_theta) ** 2
    level_ptr[0] = 0
    level_ptr[1] = 1
    for lvl in range(depth):
        a = level_ptr[lvl]
        b = level_ptr[lvl + 1]
        if a == b:
            # level ``lvl`` is empty, so are all below it
            for j in range(lvl + 2, depth + 2):
                level_ptr[j] = b
            break
        shift = d * (depth - 1 - lvl)
        par = b - a >= _PAR_MIN_NODES
        # pass 1: count the non-empty children of every splittable node
        if par:
            for t in numba.prange(a, b):
                _count_children(skeys, node_i, shift, t)
        else:
            for t in range(a, b):
                _count_children(skeys, node_i, shift, t)
        # child offsets in node order (serial, fixed)
        c = b
        for t in range(a, b):
            node_i[t, 2] = c
            c += node_i[t, 3]
        if c > cap:
            return _FAILED_CAPACITY
        level_ptr[lvl + 2] = c
        crit = (side * 0.5 ** (lvl + 1) * inv_theta) ** 2
        # pass 2: write the children
        if par:
            for t in numba.prange(a, b):
                _write_children(skeys, node_i, node_f, shift, crit, d, t)
        else:
            for t in range(a, b):
                _write_children(skeys, node_i, node_f, shift, crit, d, t)
    # centres of mass and second moments, bottom-up
    for lvl in range(depth, -1, -1):
        a = level_ptr[lvl]
        b = level_ptr[lvl + 1]
        if b - a >= _PAR_MIN_NODES:
            for t in numba.prange(a, b):
                _moments(Ys, node_i, node_f, t)
        else:
            for t in range(a, b):
                _moments(Ys, node_i, node_f, t)
    return level_ptr[depth + 1]


@numba.njit(parallel=True, cache=True)
def _gather_rows(Y, order, out):
    # out[p] = Y[order[p]]
    n, d = Y.shape
    for p in numba.prange(n):
        for k in range(d):
            out[p, k] = Y[order[p], k]


# Summaries. For the points y_j = c + u_j of a cell (mean u_j = 0, second
# moment C = mean u_j u_j^T) seen from r = y_i - c, a kernel h(|r - u|^2)
# expands to second order as
#     mean h = h + h' tr(C) + 2 h'' r^T C r
#     mean h (r - u) = r (h + h' tr(C) + 2 h'' r^T C r) + 2 h' C r,
# with h = w for Z and h = w^((dof+1)/dof) for the force, and
#     w' = -w / b,  w'' = a1 w / b^2,  g' = -a1 g / b,  g'' = a2 g / b^2
# for w = b^-dof, b = 1 + s / dof, g = w / b, a1 = (dof+1)/dof,
# a2 = a1 (dof+2)/dof (dof = 1: b = 1/w, a1 = 2, a2 = 6).
#
# The expansion is good while the kernel varies little across the cell:
# |grad log w| = 2 |r| / b, so w changes by a factor of about exp(2 s |r| / b)
# over a cell of side s. For dof <= 1, b >= |r|^2 and the opening criterion
# s / |r| < theta bounds s |r| / b by theta; for large dof (a nearly Gaussian
# kernel, or a power law of exponent 2 dof) it does not, and a query away from
# the bulk of the points (e.g. a new point outside the reference) would get
# relative errors of orders of magnitude. The reference traversal therefore
# also requires s |r| / b < theta, i.e. crit * d2 < b^2 with crit = (s /
# theta)^2, when dof > 1 (for dof <= 1 it is implied). Opening all those
# cells would be nearly exact cost, and needless: with a steep kernel most of
# them contribute nothing measurable. So a cell that fails only this test is
# still summarised, by its monopole, when its largest possible contribution
# m w(d_min) (d_min = |r| - s sqrt(d), no point of the cell is closer) is at
# most _NEGLIGIBLE times a lower bound of the query's z (the exact sum over
# the leaf reached by descending to the nearest child centre, see
# :func:`_descent_z`); the monopole then errs by at most that much. The
# self-repulsion keeps the geometric criterion: there each point's own
# neighbours dominate its sums, and far cells contribute little.


@numba.njit(inline="always", fastmath=FASTMATH)
def _pair(d2, dof, unit_dof):
    # kernel value w, force factor g = w^((dof+1)/dof) and 1 / b of one pair
    if unit_dof:
        w = 1.0 / (1.0 + d2)
        return w, w * w, w
    ib = 1.0 / (1.0 + d2 / dof)
    w = ib**dof
    return w, w * ib, ib


@numba.njit(inline="always", fastmath=FASTMATH)
def _second_order(m, w, g, ib, tr, q, a1, a2):
    # a cell of m points seen through its second-order summary (see the note above): its
    # term of z, and the factors of r and of C r in its force
    return (m * w * (1.0 - ib * tr + 2.0 * a1 * ib * ib * q),
            m * g * (1.0 - a1 * ib * tr + 2.0 * a2 * ib * ib * q),
            -2.0 * m * g * a1 * ib)


@numba.njit(inline="always", fastmath=FASTMATH)
def _descent_z(y0, y1, y2, Ys, node_i, node_f, dof, unit_dof):
    """A lower bound of a query's z: the exact sum of w over the leaf reached
    by descending, from the root, always to the child with the nearest centre
    of mass (coordinates past the dimension are ignored)."""
    d = Ys.shape[1]
    t = 0
    while node_i[t, 3] > 0:
        c0 = node_i[t, 2]
        best = c0
        best_d2 = np.inf
        for ch in range(c0, c0 + node_i[t, 3]):
            u = y0 - node_f[ch, 0]
            d2 = u * u
            if d > 1:
                u = y1 - node_f[ch, 1]
                d2 += u * u
            if d > 2:
                u = y2 - node_f[ch, 2]
                d2 += u * u
            if d2 < best_d2:
                best_d2 = d2
                best = ch
        t = best
    z = 0.0
    for j in range(node_i[t, 0], node_i[t, 1]):
        u = y0 - Ys[j, 0]
        d2 = u * u
        if d > 1:
            u = y1 - Ys[j, 1]
            d2 += u * u
        if d > 2:
            u = y2 - Ys[j, 2]
            d2 += u * u
        w, _, _ = _pair(d2, dof, unit_dof)
        z += w
    return z


@numba.njit(inline="always", fastmath=FASTMATH)
def _negligible(d2, crit, theta, d, m, dof, unit_dof, z_floor):
    # whether a cell of m points (side theta sqrt(crit)), its centre of mass at
    # squared distance d2, contributes at most z_floor to z, whatever its points
    d_min = np.sqrt(d2) - theta * np.sqrt(crit * d)
    if d_min <= 0.0:
        return False
    w, _, _ = _pair(d_min * d_min, dof, unit_dof)
    return m * w <= z_floor


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _traverse(Q, qorder, own, Ys, node_i, node_f, dof, theta, out, row_z):
    """Barnes-Hut repulsion of the query points ``Q`` by the tree's points (any d).

    ``Q`` holds the query points in traversal (Morton) order; the result of
    ``Q[p]`` goes to row ``qorder[p]`` of ``out`` and of ``row_z`` (its sum of
    ``w``). ``own``: the queries are the tree's own points (``Q is Ys``), so
    query ``p`` is tree point ``p`` and is skipped; otherwise every tree point
    counts. Returns the sum of ``row_z`` (``Z`` when ``own``).

    ``theta`` must be the one the tree was built with. Foreign queries with
    ``dof > 1`` expand a cell only when, besides ``side / distance < theta``,
    also ``side * distance / b < theta`` (``b = 1 + distance^2 / dof``), and
    otherwise take its monopole if it is negligible, else open it (see the note
    above :func:`_pair`).
    """
    n, d = Q.shape
    cv = d + 1
    unit_dof = dof == 1.0
    a1 = (dof + 1.0) / dof
    a2 = a1 * (dof + 2.0) / dof
    kernel_crit = dof > 1.0 and not own
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        stack = np.empty(_STACK, dtype=np.int64)
        f = np.empty(d)
        y = np.empty(d)
        r = np.empty(d)
        v = np.empty(d)
        for p in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            me = p if own else -1  # the tree point to skip (none for foreign queries)
            for k in range(d):
                f[k] = 0.0
                y[k] = Q[p, k]
            z = 0.0
            z_floor = 0.0
            if kernel_crit:
                z_floor = _NEGLIGIBLE * _descent_z(
                    y[0], y[1] if d > 1 else 0.0, y[2] if d > 2 else 0.0, Ys, node_i, node_f, dof, unit_dof
                )
            top = 1
            stack[0] = 0
            while top > 0:
                top -= 1
                t = stack[top]
                s = node_i[t, 0]
                e = node_i[t, 1]
                d2 = 0.0
                for k in range(d):
                    r[k] = y[k] - node_f[t, k]
                    d2 += r[k] * r[k]
                crit = node_f[t, d]
                summarise = d2 > crit and (me < s or me >= e)
                monopole = False
                if summarise and kernel_crit and crit * d2 >= (1.0 + d2 / dof) ** 2:
                    # the kernel varies too much across the cell for the expansion
                    summarise = False
                    monopole = _negligible(d2, crit, theta, d, e - s, dof, unit_dof, z_floor)
                if monopole:
                    w, g, _ = _pair(d2, dof, unit_dof)
                    z += (e - s) * w
                    for k in range(d):
                        f[k] += (e - s) * g * r[k]
                elif summarise:
                    # far enough and not holding the query itself: summarise the
                    # cell (second-order expansion)
                    m = e - s
                    tr = 0.0
                    q = 0.0
                    for k in range(d):
                        vk = 0.0
                        for l in range(d):
                            vk += node_f[t, cv + k * d + l] * r[l]
                        v[k] = vk
                        q += r[k] * vk
                        tr += node_f[t, cv + k * d + k]
                    w, g, ib = _pair(d2, dof, unit_dof)
                    dz, fr, fv = _second_order(m, w, g, ib, tr, q, a1, a2)
                    z += dz
                    for k in range(d):
                        f[k] += fr * r[k] + fv * v[k]
                elif node_i[t, 3] == 0:
                    # leaf: every point exactly, the query itself excluded
                    for j in range(s, e):
                        if j == me:
                            continue
                        d2 = 0.0
                        for k in range(d):
                            u = y[k] - Ys[j, k]
                            d2 += u * u
                        w, g, _ = _pair(d2, dof, unit_dof)
                        z += w
                        for k in range(d):
                            f[k] += g * (y[k] - Ys[j, k])
                else:
                    c0 = node_i[t, 2]
                    for ch in range(c0 + node_i[t, 3] - 1, c0 - 1, -1):
                        stack[top] = ch
                        top += 1
            i = qorder[p]
            for k in range(d):
                out[i, k] = f[k]
            row_z[i] = z
    total = 0.0
    for i in range(n):
        total += row_z[i]
    return total


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _traverse_2d(Q, qorder, own, Ys, node_i, node_f, dof, theta, out, row_z):
    """:func:`_traverse` specialised to d = 2 (scalars instead of small arrays); called for foreign
    queries (``own`` false) only, since a 2-D fit uses :func:`_traverse_own_2d`."""
    n = Q.shape[0]
    unit_dof = dof == 1.0
    a1 = (dof + 1.0) / dof
    a2 = a1 * (dof + 2.0) / dof
    kernel_crit = dof > 1.0 and not own
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for blk in numba.prange(n_blocks):
        stack = np.empty(_STACK, dtype=np.int64)
        for p in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            me = p if own else -1
            y0 = Q[p, 0]
            y1 = Q[p, 1]
            f0 = 0.0
            f1 = 0.0
            z = 0.0
            z_floor = 0.0
            if kernel_crit:
                z_floor = _NEGLIGIBLE * _descent_z(y0, y1, 0.0, Ys, node_i, node_f, dof, unit_dof)
            top = 1
            stack[0] = 0
            while top > 0:
                top -= 1
                t = stack[top]
                s = node_i[t, 0]
                e = node_i[t, 1]
                r0 = y0 - node_f[t, 0]
                r1 = y1 - node_f[t, 1]
                d2 = r0 * r0 + r1 * r1
                crit = node_f[t, 2]
                summarise = d2 > crit and (me < s or me >= e)
                monopole = False
                if summarise and kernel_crit and crit * d2 >= (1.0 + d2 / dof) ** 2:
                    summarise = False
                    monopole = _negligible(d2, crit, theta, 2, e - s, dof, unit_dof, z_floor)
                if monopole:
                    w, g, _ = _pair(d2, dof, unit_dof)
                    z += (e - s) * w
                    f0 += (e - s) * g * r0
                    f1 += (e - s) * g * r1
                elif summarise:
                    m = e - s
                    c01 = node_f[t, 4]
                    v0 = node_f[t, 3] * r0 + c01 * r1
                    v1 = c01 * r0 + node_f[t, 6] * r1
                    q = r0 * v0 + r1 * v1
                    tr = node_f[t, 3] + node_f[t, 6]
                    w, g, ib = _pair(d2, dof, unit_dof)
                    dz, fr, fv = _second_order(m, w, g, ib, tr, q, a1, a2)
                    z += dz
                    f0 += fr * r0 + fv * v0
                    f1 += fr * r1 + fv * v1
                elif node_i[t, 3] == 0:
                    for j in range(s, e):
                        if j == me:
                            continue
                        u0 = y0 - Ys[j, 0]
                        u1 = y1 - Ys[j, 1]
                        w, g, _ = _pair(u0 * u0 + u1 * u1, dof, unit_dof)
                        z += w
                        f0 += g * u0
                        f1 += g * u1
                else:
                    c0 = node_i[t, 2]
                    for ch in range(c0 + node_i[t, 3] - 1, c0 - 1, -1):
                        stack[top] = ch
                        top += 1
            i = qorder[p]
            out[i, 0] = f0
            out[i, 1] = f1
            row_z[i] = z
    total = 0.0
    for i in range(n):
        total += row_z[i]
    return total


@numba.njit(cache=True)
def _cell_groups(node_i, limit, starts, ends, stack):
    """Cover the tree's points by its cells of at most ``limit`` points (leaves of more, at the
    depth cap, as they are): their point ranges, in Morton order, into ``starts`` / ``ends``;
    returns their number."""
    n_groups = 0
    top = 1
    stack[0] = 0
    while top > 0:
        top -= 1
        t = stack[top]
        if node_i[t, 1] - node_i[t, 0] <= limit or node_i[t, 3] == 0:
            starts[n_groups] = node_i[t, 0]
            ends[n_groups] = node_i[t, 1]
            n_groups += 1
        else:
            c0 = node_i[t, 2]
            for ch in range(c0 + node_i[t, 3] - 1, c0 - 1, -1):
                stack[top] = ch
                top += 1
    return n_groups


@numba.njit(parallel=True, fastmath=FASTMATH, cache=True)
def _traverse_own_2d(Ys, qorder, node_i, node_f, dof, starts, ends, n_groups, out, row_z):
    """The fit's repulsion in 2-D: the tree's own points, walked one group at a time.

    A group is a cell of :func:`_cell_groups` (points ``starts[g]:ends[g]`` of ``Ys``). The
    tree is walked once per group: a cell holding none of the group's points is summarised
    for all of them when the opening criterion holds from the nearest point of the group's
    bounding box (so it holds for each of them), a leaf is summed exactly, anything else is
    opened. Each point therefore gets the interactions the per-point criterion would give it,
    or finer ones. Every point meets its own leaf, where its own pair adds ``w = 1`` and no
    force; that 1 is taken off its ``z``. The inner loops run over the group's points, with
    the kernel written out for ``dof = 1`` and for any other ``dof`` (no branch inside, so
    they vectorise). ``dof=None`` stands for 1: numba then prunes the general kernel's
    branches before compiling, so the default path compiles only the ``dof = 1`` loops.
    Results go to row ``qorder[p]`` of ``out`` / ``row_z``; returns the sum of ``row_z`` (``Z``).
    """
    n = Ys.shape[0]
    d_ = 1.0
    a1 = 2.0
    a2 = 6.0
    if dof is not None:
        d_ = dof
        a1 = (d_ + 1.0) / d_
        a2 = a1 * (d_ + 2.0) / d_
    for grp in numba.prange(n_groups):
        p0 = starts[grp]
        size = ends[grp] - p0
        # the group's coordinates and sums in arrays of its own: with sums written into a caller's
        # (3, n) array the inner loops did not vectorise (5.6 against 3.6 ms at 5k points, 1 thread)
        gy = np.empty((2, size))
        acc = np.empty((3, size))
        lo0 = np.inf
        lo1 = np.inf
        hi0 = -np.inf
        hi1 = -np.inf
        for p in range(size):
            v = Ys[p0 + p, 0]
            gy[0, p] = v
            lo0 = v if v < lo0 else lo0
            hi0 = v if v > hi0 else hi0
            v = Ys[p0 + p, 1]
            gy[1, p] = v
            lo1 = v if v < lo1 else lo1
            hi1 = v if v > hi1 else hi1
            acc[0, p] = 0.0
            acc[1, p] = 0.0
            acc[2, p] = 0.0
        stack = np.empty(_STACK, dtype=np.int64)
        top = 1
        stack[0] = 0
        while top > 0:
            top -= 1
            t = stack[top]
            s = node_i[t, 0]
            e = node_i[t, 1]
            c0 = node_f[t, 0]
            c1 = node_f[t, 1]
            g0 = lo0 - c0 if c0 < lo0 else (c0 - hi0 if c0 > hi0 else 0.0)
            g1 = lo1 - c1 if c1 < lo1 else (c1 - hi1 if c1 > hi1 else 0.0)
            if g0 * g0 + g1 * g1 > node_f[t, 2] and (e <= p0 or s >= p0 + size):
                # far from every point of the group: the second-order summary, per point
                m = e - s
                cxx = node_f[t, 3]
                cxy = node_f[t, 4]
                cyy = node_f[t, 6]
                tr = cxx + cyy
                if dof is None:  # w = 1 / b, g = w^2, a1 = 2, a2 = 6
                    for p in range(size):
                        r0 = gy[0, p] - c0
                        r1 = gy[1, p] - c1
                        v0 = cxx * r0 + cxy * r1
                        v1 = cxy * r0 + cyy * r1
                        q = r0 * v0 + r1 * v1
                        w = 1.0 / (1.0 + r0 * r0 + r1 * r1)
                        mw = m * w
                        acc[2, p] += mw * (1.0 - w * tr + 4.0 * w * w * q)
                        fr = mw * w * (1.0 - 2.0 * w * tr + 12.0 * w * w * q)
                        fv = -4.0 * mw * w * w
                        acc[0, p] += fr * r0 + fv * v0
                        acc[1, p] += fr * r1 + fv * v1
                else:
                    for p in range(size):
                        r0 = gy[0, p] - c0
                        r1 = gy[1, p] - c1
                        v0 = cxx * r0 + cxy * r1
                        v1 = cxy * r0 + cyy * r1
                        q = r0 * v0 + r1 * v1
                        ib = 1.0 / (1.0 + (r0 * r0 + r1 * r1) / d_)
                        w = ib**d_
                        g = w * ib
                        dz, fr, fv = _second_order(m, w, g, ib, tr, q, a1, a2)
                        acc[2, p] += dz
                        acc[0, p] += fr * r0 + fv * v0
                        acc[1, p] += fr * r1 + fv * v1
            elif node_i[t, 3] == 0:
                # a leaf: every pair exactly (a point with itself: w = 1, no force)
                for j in range(s, e):
                    x0 = Ys[j, 0]
                    x1 = Ys[j, 1]
                    if dof is None:
                        for p in range(size):
                            u0 = gy[0, p] - x0
                            u1 = gy[1, p] - x1
                            w = 1.0 / (1.0 + u0 * u0 + u1 * u1)
                            acc[2, p] += w
                            acc[0, p] += w * w * u0
                            acc[1, p] += w * w * u1
                    else:
                        for p in range(size):
                            u0 = gy[0, p] - x0
                            u1 = gy[1, p] - x1
                            ib = 1.0 / (1.0 + (u0 * u0 + u1 * u1) / d_)
                            w = ib**d_
                            acc[2, p] += w
                            acc[0, p] += w * ib * u0
                            acc[1, p] += w * ib * u1
            else:
                c = node_i[t, 2]
                for ch in range(c + node_i[t, 3] - 1, c - 1, -1):
                    stack[top] = ch
                    top += 1
        for p in range(size):
            i = qorder[p0 + p]
            out[i, 0] = acc[0, p]
            out[i, 1] = acc[1, p]
            row_z[i] = acc[2, p] - 1.0
    total = 0.0
    for i in range(n):
        total += row_z[i]
    return total


def _check_theta(theta):
    theta = float(theta)
    if not np.isfinite(theta) or theta < 0:
        raise ValueError(f"The 'theta' parameter must be a float in the range [0, inf). Got {theta!r} instead.")
    return theta


def _traversal(d):
    """The traversal of foreign queries (``transform``) in ``d`` dimensions."""
    return _traverse_2d if d == 2 else _traverse


class _MortonOrder:
    """Morton keys and their stable radix sort for a point set of ``n`` rows.

    The scratch arrays are kept on the object and reallocated only when ``n``
    or the dimension changes.
    """

    def __init__(self):
        self._n = None
        self._d = None

    def _allocate(self, n, d):
        n_blocks = max(1, (n + _SORT_BLOCK - 1) // _SORT_BLOCK)
        self._keys = np.empty(n, dtype=np.int64)
        self._order = np.empty(n, dtype=np.int64)
        self._tmp_keys = np.empty(n, dtype=np.int64)
        self._tmp_order = np.empty(n, dtype=np.int64)
        self._hist = np.empty((n_blocks, 1 << _RADIX_BITS), dtype=np.int64)
        self._Ys = np.empty((n, d))
        self._n, self._d = n, d

    def sort(self, Y):
        """Sort the rows of ``Y`` by Morton key (``_keys``, ``_order``); return
        the side of the bounding cube, or ``_FAILED_NONFINITE`` when ``Y`` holds NaN or inf."""
        n, d = Y.shape
        if self._n != n or self._d != d:
            self._allocate(n, d)
        side = _morton_keys(Y, DEPTH[d], self._keys)
        if side != _FAILED_NONFINITE:
            _radix_argsort(self._keys, d * DEPTH[d], self._order, self._tmp_keys, self._tmp_order, self._hist)
        return side


class _LinearTree(_MortonOrder):
    """Builds the linear tree of a point set into arrays kept on the object;
    the node arrays grow when a build runs out of room."""

    def __init__(self, theta):
        super().__init__()
        self.theta = _check_theta(theta)
        self._capacity = 0

    def _allocate(self, n, d):
        super()._allocate(n, d)
        self._row_z = np.empty(n)
        self._level_ptr = np.empty(DEPTH[d] + 2, dtype=np.int64)
        self._grow(2 * n + 64, d)

    def _grow(self, capacity, d):
        self._capacity = capacity
        self._node_i = np.empty((capacity, 4), dtype=np.int64)
        self._node_f = np.empty((capacity, d + 1 + d * d))

    def build(self, Y):
        """Build the tree of ``Y``; returns the number of nodes."""
        side = self.sort(Y)
        if side == _FAILED_NONFINITE:
            raise ValueError("The embedding contains NaN or inf; the Barnes-Hut tree cannot be built.")
        while True:
            n_nodes = _build_tree(Y, self._keys, self._order, side, self.theta, self._Ys,
                                  self._node_i, self._node_f, self._level_ptr)
            if n_nodes != _FAILED_CAPACITY:
                return n_nodes
            self._grow(2 * self._capacity, Y.shape[1])


class BarnesHutRepulsion(_LinearTree):
    """Barnes-Hut repulsion in 1-3 dimensions; a callable ``(Y, dof, out) -> Z``.

    ``theta`` is the opening angle: a cell of side ``s`` at distance ``r`` from
    a point (to its centre of mass) is summarised when ``s / r < theta``.
    ``theta = 0`` never summarises and reproduces the exact repulsion.
    """

    name = "bh"

    def __init__(self, theta):
        super().__init__(theta)
        self._allocate_groups(0)

    def __call__(self, Y, dof, out):
        if Y.ndim != 2 or not 1 <= Y.shape[1] <= 3:
            raise ValueError(
                "Barnes-Hut supports embeddings of 1, 2 or 3 dimensions; got shape "
                f"{Y.shape}. Use negative_gradient_method='fft' or 'exact' instead."
            )
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        n = Y.shape[0]
        if n < 2:
            out[...] = 0.0
            return 0.0
        self.build(Y)
        dof = float(dof)
        if Y.shape[1] != 2:
            return _traverse(self._Ys, self._order, True, self._Ys, self._node_i, self._node_f, dof, self.theta,
                             out, self._row_z)
        if self._starts.shape[0] != n:
            self._allocate_groups(n)
        n_groups = _cell_groups(self._node_i, _GROUP, self._starts, self._ends, self._group_stack)
        return _traverse_own_2d(self._Ys, self._order, self._node_i, self._node_f, None if dof == 1.0 else dof,
                                self._starts, self._ends, n_groups, out, self._row_z)

    def _allocate_groups(self, n):
        self._starts = np.empty(n, dtype=np.int64)
        self._ends = np.empty(n, dtype=np.int64)
        self._group_stack = np.empty(_STACK, dtype=np.int64)


class BarnesHutReferenceRepulsion:
    """Barnes-Hut repulsion of new points by a fixed reference embedding (1-3 dims).

    A callable ``(Y_new, dof, out, z) -> None`` writing, for every new point,
    ``out[i] = sum_j w_ij^((dof+1)/dof) (y_i - r_j)`` and ``z[i] = sum_j w_ij``
    over all reference points ``r_j`` (the same as
    :class:`~turbotsne.gradients.exact.ExactReferenceRepulsion`, approximately).

    The tree of ``reference`` is built once, here, and reused by every call
    (the reference does not move during transform). A call sorts the new
    points by their own Morton keys (spatially close queries share nodes in
    cache) and traverses the reference tree for each, in parallel blocks, with
    the same opening criterion and second-order summaries as
    :class:`BarnesHutRepulsion`; no point is skipped, since new points are not
    in the reference. New points may lie anywhere, also far outside the
    reference's bounding box (then whole cells, up to the root, are
    summarised). The result does not depend on the number of threads.
    ``theta = 0`` is exact.
    """

    name = "bh"

    def __init__(self, reference, theta=0.5):
        theta = _check_theta(theta)
        reference = np.ascontiguousarray(reference, dtype=np.float64)
        if reference.ndim != 2 or not 1 <= reference.shape[1] <= 3:
            raise ValueError(
                "Barnes-Hut supports embeddings of 1, 2 or 3 dimensions; got a reference of shape "
                f"{reference.shape}. Use negative_gradient_method='fft' or 'exact' instead."
            )
        if reference.shape[0] < 1:
            raise ValueError("The reference embedding is empty; it needs at least one point.")
        if not np.all(np.isfinite(reference)):
            raise ValueError("The reference embedding contains NaN or inf.")
        self.reference = reference
        self.theta = theta
        self._tree = _LinearTree(theta)
        self._tree.build(reference)
        # Morton order of the new points (scratch reallocated when their number changes)
        self._queries = _MortonOrder()

    def __call__(self, Y, dof, out, z):
        d = self.reference.shape[1]
        if Y.ndim != 2 or Y.shape[1] != d:
            raise ValueError(
                f"The new points must have the reference's {d} dimension(s); got shape {Y.shape}."
            )
        n = Y.shape[0]
        if out.shape != (n, d) or z.shape != (n,):
            raise ValueError(
                f"out must have shape {(n, d)} and z shape {(n,)}; got {out.shape} and {z.shape}."
            )
        dof = float(dof)
        if not dof > 0 or not np.isfinite(dof):
            raise ValueError(f"The 'dof' parameter must be a float in the range (0, inf). Got {dof!r} instead.")
        if n == 0:
            return
        Y = np.ascontiguousarray(Y, dtype=np.float64)
        q = self._queries
        if q.sort(Y) == _FAILED_NONFINITE:
            raise ValueError("The new points contain NaN or inf.")
        _gather_rows(Y, q._order, q._Ys)
        t = self._tree
        _traversal(d)(q._Ys, q._order, False, t._Ys, t._node_i, t._node_f, dof, t.theta, out, z)
