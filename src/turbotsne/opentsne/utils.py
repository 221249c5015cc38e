"""openTSNE's ``utils`` module: the helpers its users import."""
import importlib.util

import numpy as np


def is_package_installed(name):
    """Whether the package ``name`` can be imported (without importing it)."""
    return importlib.util.find_spec(name) is not None


def clip_point_to_disc(points, radius, inplace=False):
    """Move the rows of ``points`` farther than ``radius`` from the origin onto that circle.

    Returns ``(points, mask)``: the clipped points and which rows were clipped.
    """
    points = np.asarray(points, dtype=np.float64) if inplace else np.array(points, dtype=np.float64)
    norms = np.linalg.norm(points, axis=1)
    mask = norms > radius
    points[mask] *= (radius / norms[mask])[:, None]
    return points, mask


__all__ = ["is_package_installed", "clip_point_to_disc"]
