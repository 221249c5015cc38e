"""The grid rules of the FFT repulsion, shared by the numba (:mod:`turbotsne.gradients.fft`)
and torch (:mod:`turbotsne.gpu.gradients`) engines.

The cube ``[lo_k, lo_k + extent]`` (:func:`cube_extent`) is covered by ``n_boxes`` boxes per
dimension of ``p = n_interpolation_points`` equispaced nodes each, at most ``ints_in_interval``
wide and at least ``min_num_intervals`` (in 3-D at most :data:`MIN_INTERVALS_3D`) of them;
:func:`grid_size` rounds the count up to a fast FFT length and caps the zero-padded grid
``(2 n_boxes p)^d`` (default :data:`MAX_GRID_NODES`): a wider embedding gets wider boxes, up
to :data:`MAX_COARSENING` times ``ints_in_interval``, then a ``ValueError``. The node spacing
comes from a fixed ladder (:func:`ladder_spacing`), so a grid, and the kernel spectra on it,
stay unchanged over many iterations. The interpolation stencil is :data:`STENCIL` nodes wide.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.fft

#: cap on the number of nodes of the zero-padded grid ``(2 M)^d``, per dimension count:
#: 8192^2 in 2-D (~0.5 GB per complex spectrum), 161^3 in 3-D (~0.1 GB in all). A wider
#: embedding gets the largest grid under the cap (the numba engine adds a direct near field).
MAX_GRID_NODES = {1: 2 ** 26, 2: 2 ** 26, 3: 2 ** 22}

#: when the grid is capped, boxes may be at most this many times ``ints_in_interval``
#: wide; a wider embedding raises (points that shot off).
MAX_COARSENING = 64.0

#: in 3-D, ``min_num_intervals`` is capped at this value.
MIN_INTERVALS_3D = 10

#: nodes per dimension of the interpolation stencil (the quadratic B-spline's support).
STENCIL = 3

#: the grid of a fixed-reference repulsion extends this fraction of its extent beyond the points
#: on every side
REFERENCE_GRID_MARGIN = 0.1

#: a fixed-reference repulsion with ``dof > 1`` sums new points with no reference point within
#: about this distance (checked box-wise) exactly (see :class:`~turbotsne.gradients.fft.FFTReferenceRepulsion`).
ISOLATION_RADIUS = 1.0

#: steps per octave of the node-spacing ladder (see :func:`ladder_spacing`)
SPACING_STEPS_PER_OCTAVE = 16


def grid_size(extent, d, n_interpolation_points=3, min_num_intervals=50, ints_in_interval=1.0, *,
              caps=None, cap_name="MAX_GRID_NODES", fallback="bh", on_cap=None):
    """Boxes per dimension for a bounding cube of side ``extent`` (see the module docstring).

    If the padded grid would exceed ``caps[d]`` nodes (default :data:`MAX_GRID_NODES`), the
    largest grid under the cap is used instead, with boxes wider than ``ints_in_interval``:
    ``on_cap(d, extent, n_boxes, ints_in_interval)`` is called if given (each engine passes
    its log-once notice), as long as the boxes are at most
    :data:`MAX_COARSENING` times ``ints_in_interval`` wide; beyond that (points that shot
    off) a ``ValueError`` is raised that names ``cap_name`` and suggests
    ``negative_gradient_method=fallback``.
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
    if on_cap is not None:
        on_cap(d, extent, n_fit, width)
    return n_fit


def _fast_n_boxes(n_boxes, p):
    """Smallest ``>= n_boxes`` box count whose padded FFT length ``2 n p`` is 5-smooth."""
    while scipy.fft.next_fast_len(2 * n_boxes * p, real=True) != 2 * n_boxes * p:
        n_boxes += 1
    return n_boxes


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


def ladder_spacing(fit, base):
    """The node spacing actually used: the smallest ``base * 2^(-k/16)`` (k >= 0) not below
    ``fit``, the spacing at which the grid's nodes would just cover the embedding (``fit``
    itself when it is not below ``base = ints_in_interval / p``, i.e. on a capped grid).

    A spacing from a fixed ladder (steps of 4.4 %) changes only every few iterations while
    the embedding grows, so the kernel spectra (two DCTs and the kernel values) are reused
    across iterations instead of recomputed each time. The
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


def cube_extent(lo, hi):
    """Side of the bounding cube of ``[lo, hi]``, floored away from zero (identical points)."""
    extent = float(np.max(hi - lo))
    floor = 1e-10 * max(1.0, float(np.max(np.abs(np.concatenate([lo, hi])))))
    return max(extent, floor)
