"""Plots of embeddings with defaults that work from a thousand to a million points.

Needs matplotlib (``pip install 'turbotsne[plot]'``), imported only when a plot is drawn:
``import turbotsne`` never imports matplotlib. :func:`plot` picks the picture from the
embedding's dimension and size:

* 2-D: a scatter plot, marker size and opacity shrinking with N, rasterized points (small
  vector files), drawn in a random order so that no class hides another; from
  ``DENSITY_FROM`` points on, a 2-D histogram instead (counts on a log scale, or per bin the
  majority class / the mean of continuous labels, shaded by the number of points);
* 1-D: a heat-map strip along the coordinate (density, majority class or mean label per bin);
* 3-D: a scatter on matplotlib's 3-D axes (on given 2-D axes: projected onto its first two
  principal axes).

Labels with at most ``max_legend`` distinct values (or any non-numeric labels) are
categorical and get a legend; numeric labels with more distinct values get a colour bar.
"""
from __future__ import annotations

import numpy as np

__all__ = ["plot", "DENSITY_FROM"]

#: from this many points on, ``density="auto"`` draws a 2-D histogram instead of a scatter.
DENSITY_FROM = 200_000


def _require_matplotlib():
    try:
        import matplotlib  # noqa: F401
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("Plotting needs matplotlib: pip install 'turbotsne[plot]' (or pip install matplotlib)") from e
    return plt


def default_marker_size(n):
    """Scatter marker area (points^2) for ``n`` points: about 8 at 1k, 0.5 at 100k, 0.13 at 1M."""
    return float(np.clip(8.0 * (1000.0 / max(n, 1)) ** 0.6, 0.05, 20.0))


def default_alpha(n):
    """Marker opacity for ``n`` points: about 0.9 at 1k, 0.36 at 100k, 0.23 at 1M."""
    return float(np.clip(0.9 * (1000.0 / max(n, 1)) ** 0.2, 0.15, 1.0))


def _palette(n_colors):
    import matplotlib as mpl

    if n_colors <= 10:
        return np.array(mpl.colormaps["tab10"].colors)[:n_colors]
    if n_colors <= 20:
        return np.array(mpl.colormaps["tab20"].colors)[:n_colors]
    hues = (np.arange(n_colors) * 0.618033988749895) % 1.0  # golden-ratio hues: neighbours differ
    hsv = np.stack([hues, np.full(n_colors, 0.75), np.where(np.arange(n_colors) % 2, 0.95, 0.7)], axis=1)
    return mpl.colors.hsv_to_rgb(hsv)


def _classify_labels(labels, n, max_legend):
    """Return ("categorical", classes, codes) or ("continuous", values, None)."""
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"labels must be a 1-D array of length {n} (one per point); got shape {labels.shape}.")
    numeric = labels.dtype.kind in "iuf"
    if numeric:
        values = labels.astype(np.float64)
        finite = values[np.isfinite(values)]
        uniques = np.unique(finite)
        integral = np.all(uniques == np.round(uniques))
        if len(uniques) > max_legend or (labels.dtype.kind == "f" and not integral):
            return "continuous", values, None
    classes, codes = np.unique(labels, return_inverse=True)
    return "categorical", classes, codes.ravel()


def _grid(Y2, gridsize):
    """Bin edges over the data's extent with about ``gridsize`` bins along the longer side."""
    lo, hi = Y2.min(axis=0), Y2.max(axis=0)
    span = np.maximum(hi - lo, 1e-12)
    per = gridsize / span.max()
    nb = np.maximum(np.rint(span * per).astype(np.int64), 1)
    ix = np.minimum(((Y2 - lo) / span * nb).astype(np.int64), nb - 1)
    return lo, hi, nb, ix


def _bin_colours(flat, n_bins, kind, info, codes, cmap, shaded):
    """RGBA colour of each bin (``flat`` = the bin of each point): the density itself without
    labels, the majority class (categorical) or the mean value (continuous); empty bins are
    transparent. ``shaded``: opacity follows the log density (2-D images) instead of opaque bins
    (1-D strips)."""
    import matplotlib as mpl

    counts = np.bincount(flat, minlength=n_bins).astype(np.float64)
    shade = np.log1p(counts) / np.log1p(counts.max())
    if kind is None:
        rgba = mpl.colormaps[cmap or "viridis"](shade)
        rgba[counts == 0, 3] = 0.0
    elif kind == "categorical":
        n_cls = len(info)
        per_class = np.bincount(flat * n_cls + codes, minlength=n_bins * n_cls).reshape(n_bins, n_cls)
        rgba = np.zeros((n_bins, 4))
        rgba[:, :3] = _palette(n_cls)[per_class.argmax(axis=1)]
        rgba[:, 3] = np.where(counts > 0, 0.25 + 0.75 * shade if shaded else 1.0, 0.0)
    else:
        ok = np.isfinite(info)
        sums = np.bincount(flat[ok], weights=info[ok], minlength=n_bins)
        num = np.bincount(flat[ok], minlength=n_bins)
        mean = np.divide(sums, num, out=np.zeros(n_bins), where=num > 0)
        norm = mpl.colors.Normalize(np.nanmin(info), np.nanmax(info))
        rgba = mpl.colormaps[cmap or "viridis"](norm(mean))
        rgba[:, 3] = np.where(num > 0, 0.35 + 0.65 * shade if shaded else 1.0, 0.0)
    return rgba


def _density_image(Y2, kind, classes_or_values, codes, gridsize, cmap):
    """An RGBA image (ny, nx, 4) of the binned embedding and its extent."""
    lo, hi, nb, ix = _grid(Y2, gridsize)
    flat = ix[:, 0] * nb[1] + ix[:, 1]
    rgba = _bin_colours(flat, int(nb[0] * nb[1]), kind, classes_or_values, codes, cmap, shaded=True)
    image = rgba.reshape(nb[0], nb[1], 4).transpose(1, 0, 2)  # rows = y
    extent = (lo[0], hi[0], lo[1], hi[1])
    return image, extent


def _legend(ax, classes, palette, max_legend, fontsize=8):
    from matplotlib.lines import Line2D

    if len(classes) > max_legend:
        return None
    handles = [Line2D([], [], linestyle="", marker="o", markersize=6, color=palette[i], label=str(c))
               for i, c in enumerate(classes)]
    return ax.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False,
                     fontsize=fontsize)


def _colorbar(ax, mappable, label=None):
    cb = ax.figure.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    if label:
        cb.set_label(label)
    return cb


def plot(embedding, labels=None, ax=None, *, s=None, alpha=None, cmap=None, density="auto", gridsize=None,
         max_legend=20, legend=True, colorbar=True, title=None, label_name=None, random_state=0,
         figsize=None, rasterized=True, **scatter_kwargs):
    """Plot an embedding, coloured by ``labels``.

    Parameters
    ----------
    embedding : array-like of shape (n_samples, n_components)
        1, 2 or 3 components: an ndarray, a ``TSNEEmbedding``, anything
        ``np.asarray`` understands (a 1-D array is a 1-D embedding).
    labels : array-like of shape (n_samples,), optional
        Categorical (non-numeric, or at most ``max_legend`` distinct integral
        values: a legend) or continuous (a colour bar).
    ax : matplotlib Axes, optional
        Where to draw; a new figure otherwise (3-D axes for a 3-D embedding).
    s : float, optional
        Marker area; by default from N (:func:`default_marker_size`).
    alpha : float, optional
        Marker opacity; by default from N (:func:`default_alpha`).
    cmap : str, optional
        Colour map of continuous labels and of the density (default "viridis").
    density : bool or "auto", default="auto"
        Draw 2-D (and 1-D) embeddings as binned densities rather than points;
        "auto": from ``DENSITY_FROM`` points on (2-D; 1-D strips are always
        binned).
    gridsize : int, optional
        Bins along the longer side of a density image (default: between 100
        and 500, growing with N).
    max_legend : int, default=20
        The most categories that get a legend; numeric labels with more
        distinct values are continuous.
    legend, colorbar : bool, default=True
        Draw the legend (categorical labels) / the colour bar (continuous).
    title : str, optional
    label_name : str, optional
        Title of the colour bar.
    random_state : int, default=0
        Seeds the random drawing order of the points.
    figsize : (float, float), optional
        Size of a new figure.
    rasterized : bool, default=True
        Rasterize the points (vector output stays small).
    **scatter_kwargs
        Passed on to ``Axes.scatter``.

    Returns
    -------
    matplotlib.axes.Axes

    Examples
    --------
    >>> import turbotsne
    >>> from sklearn.datasets import load_digits
    >>> X, y = load_digits(return_X_y=True)
    >>> Y = turbotsne.TSNE(random_state=0).fit_transform(X)  # doctest: +SKIP
    >>> ax = turbotsne.plot(Y, y)                            # doctest: +SKIP
    >>> ax.figure.savefig("digits.png", dpi=150)             # doctest: +SKIP
    """
    plt = _require_matplotlib()
    Y = np.asarray(embedding, dtype=np.float64)
    if Y.ndim == 1:
        Y = Y[:, None]
    if Y.ndim != 2 or not 1 <= Y.shape[1] <= 3:
        raise ValueError(f"plot draws embeddings with 1, 2 or 3 components; got an array of shape {Y.shape}.")
    if Y.shape[0] == 0:
        raise ValueError("plot needs at least one point; the embedding is empty.")
    if not np.all(np.isfinite(Y)):
        raise ValueError("The embedding contains NaN or infinity.")
    if not (density == "auto" or isinstance(density, (bool, np.bool_))):
        raise ValueError(f"density must be True, False or 'auto'; got {density!r}.")
    n, d = Y.shape
    kind, info, codes = (None, None, None) if labels is None else _classify_labels(labels, n, max_legend)
    s = default_marker_size(n) if s is None else s
    alpha = default_alpha(n) if alpha is None else alpha
    gridsize = int(np.clip(np.sqrt(n) / 2, 100, 500)) if gridsize is None else int(gridsize)

    if ax is None:
        fig = plt.figure(figsize=figsize or ((8, 1.6) if d == 1 else (7, 6)))
        ax = fig.add_subplot(projection="3d" if d == 3 else None)
    is_3d = getattr(ax, "name", "") == "3d"

    if d == 1:
        _strip(ax, Y[:, 0], kind, info, codes, gridsize, cmap, legend, colorbar, max_legend, label_name)
    elif d == 3 and is_3d:
        _scatter(ax, Y, kind, info, codes, s, alpha, cmap, legend, colorbar, max_legend, label_name,
                 random_state, rasterized, scatter_kwargs)
    else:
        Y2 = Y if d == 2 else _project(Y)
        use_density = (n >= DENSITY_FROM) if density == "auto" else bool(density)
        if use_density:
            image, extent = _density_image(Y2, kind, info, codes, gridsize, cmap)
            ax.imshow(image, origin="lower", extent=extent, interpolation="nearest", aspect="equal")
            if kind == "categorical" and legend:
                _legend(ax, info, _palette(len(info)), max_legend)
            elif kind == "continuous" and colorbar:
                import matplotlib as mpl

                sm = mpl.cm.ScalarMappable(mpl.colors.Normalize(np.nanmin(info), np.nanmax(info)), cmap or "viridis")
                _colorbar(ax, sm, label_name)
        else:
            _scatter(ax, Y2, kind, info, codes, s, alpha, cmap, legend, colorbar, max_legend, label_name,
                     random_state, rasterized, scatter_kwargs)
        ax.set_aspect("equal", adjustable="datalim")
        ax.set_xticks([])
        ax.set_yticks([])
    if title is not None:
        ax.set_title(title)
    return ax


def _project(Y):
    """Orthographic projection of 3-D points onto their first two principal axes."""
    C = Y - Y.mean(axis=0)
    _, _, vt = np.linalg.svd(C[:: max(1, len(C) // 100_000)], full_matrices=False)
    return C @ vt[:2].T


def _scatter(ax, Y, kind, info, codes, s, alpha, cmap, legend, colorbar, max_legend, label_name, random_state,
             rasterized, scatter_kwargs):
    n = Y.shape[0]
    order = np.random.default_rng(random_state).permutation(n)
    coords = [Y[order, k] for k in range(Y.shape[1])]
    kw = dict(s=s, alpha=alpha, linewidths=0, rasterized=rasterized)
    kw.update(scatter_kwargs)
    if kind is None:
        kw.setdefault("color", "C0")
        ax.scatter(*coords, **kw)
    elif kind == "categorical":
        palette = _palette(len(info))
        ax.scatter(*coords, c=palette[codes[order]], **kw)
        if legend:
            _legend(ax, info, palette, max_legend)
    else:
        sc = ax.scatter(*coords, c=info[order], cmap=cmap or "viridis", plotnonfinite=True, **kw)
        if colorbar:
            _colorbar(ax, sc, label_name)
    if Y.shape[1] == 3:
        for setter in (ax.set_xticklabels, ax.set_yticklabels, ax.set_zticklabels):
            setter([])


def _strip(ax, y, kind, info, codes, gridsize, cmap, legend, colorbar, max_legend, label_name):
    """A 1-D embedding as a heat-map strip: one row of bins along the coordinate."""
    import matplotlib as mpl

    n_bins = int(min(max(len(y), 1), max(gridsize, 200), 2000))
    Y2 = np.stack([y, np.zeros_like(y)], axis=1)
    lo, hi, nb, ix = _grid(Y2, n_bins)
    rgba = _bin_colours(ix[:, 0], int(nb[0]), kind, info, codes, cmap, shaded=False)
    ax.imshow(rgba[None, :, :], extent=(lo[0], lo[0] + max(hi[0] - lo[0], 1e-12), 0, 1), aspect="auto",
              interpolation="nearest")
    ax.set_yticks([])
    ax.set_xlabel("t-SNE 1")
    if kind == "categorical" and legend:
        _legend(ax, info, _palette(len(info)), max_legend)
    elif kind == "continuous" and colorbar:
        sm = mpl.cm.ScalarMappable(mpl.colors.Normalize(np.nanmin(info), np.nanmax(info)), cmap or "viridis")
        _colorbar(ax, sm, label_name)
