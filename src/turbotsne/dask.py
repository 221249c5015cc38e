"""Dask: place new points with a fitted embedding on a cluster, and the large-data recipe.

:func:`transform` maps a ``dask.array.Array`` (or a dask DataFrame of numeric columns) of new
points onto a fitted :class:`turbotsne.TSNE` or :class:`turbotsne.TSNEEmbedding`: a lazy dask
array with the input's row chunks, each block placed on a worker with ``n_jobs=1`` (the workers'
threads are the parallelism). The fitted model, less the fit's P (placement does not read it),
goes to each worker once, never per chunk; nothing is gathered on the client. :func:`embed` is
the recipe for more points than one machine fits (Kobak & Berens 2019): t-SNE on a seeded sample
in the client, every other point placed on the cluster, the result written block by block to
zarr. Placement is per point (each new point has its own normaliser), so with "bh" and "exact"
the result equals the in-process ``transform`` of the same rows whatever the chunking, to ~1e-15
(a worker's copy of the model can round a vectorised sum differently). "fft" ("auto" against a
2-D reference of 10,000 points or more) interpolates on a grid spanning the reference and the
batch, so chunks agree to 1e-9. Needs the ``dask`` extra; ``import turbotsne`` never imports dask.
"""
from __future__ import annotations

import contextlib
import logging
import os
import threading
import time

import numpy as np

log = logging.getLogger(__name__)


def is_dask_collection(X):
    """Whether ``X`` is a dask collection (checked without importing dask)."""
    return type(X).__module__.split(".")[0] == "dask" and hasattr(X, "__dask_graph__")


def _require():
    try:
        import dask.array as da
    except ImportError:
        raise ImportError('Dask input needs the dask extra: pip install "turbotsne[dask]"') from None
    return da


def _check_numeric_columns(frame, owner):
    bad = [c for c, t in frame.dtypes.items() if t.kind not in "biuf"]
    if bad:
        raise ValueError(f"{owner}: the dask DataFrame has non-numeric columns {bad}; select the numeric ones.")


def as_dask_array(X, *, owner="transform"):
    """A 2-D numeric dask array from a dask array or dask DataFrame, checked before any work:
    known row chunk sizes, numeric dtype, one column chunk."""
    da = _require()
    if hasattr(X, "to_dask_array"):  # a dask DataFrame: numeric columns only, row counts computed
        _check_numeric_columns(X, owner)
        X = X.to_dask_array(lengths=True)
    if not isinstance(X, da.Array):
        raise TypeError(f"{owner} takes a dask array or dask DataFrame here; got {type(X).__name__}.")
    if X.ndim != 2:
        raise ValueError(f"{owner}: X must be 2-D (n_samples, n_features); got {X.ndim} dimensions.")
    if any(np.isnan(c) for c in X.chunks[0]) or np.isnan(X.shape[1]):
        raise ValueError(f"{owner}: X has unknown chunk sizes; call X.compute_chunk_sizes() (or build it with "
                         "known lengths) first.")
    if X.dtype.kind not in "biuf":
        raise ValueError(f"{owner}: X must be numeric; got dtype {X.dtype}.")
    if X.numblocks[1] != 1:
        X = X.rechunk({1: -1})
    return X


def _fitted(model):
    """``(embedding object, n_features_in or None, n_components)`` of a fitted TSNE or TSNEEmbedding."""
    embedding = getattr(model, "tsne_embedding_", None)
    if embedding is not None:
        return model, getattr(model, "n_features_in_", None), embedding.embedding.shape[1]
    if hasattr(model, "affinities") and hasattr(model, "transform"):
        return model, None, np.asarray(model).shape[1]
    raise TypeError(f"transform needs a fitted turbotsne.TSNE or a TSNEEmbedding; got {type(model).__name__}.")


#: Serialises placements in a worker process whose numba threading layer cannot launch parallel
#: kernels from several threads at once (the "workqueue" layer; "omp" and "tbb" can).
_LAYER_LOCK = threading.Lock()


def _numba_lock():
    """The lock a block takes around its placement: none once numba runs a thread-safe layer."""
    import numba

    try:
        safe = numba.threading_layer() in ("omp", "tbb")
    except ValueError:  # no parallel kernel has run in this process yet: the layer is not chosen
        safe = False
    return contextlib.nullcontext() if safe else _LAYER_LOCK


class _Shipped:
    """A model scattered to workers: distributed sends an ``np.ndarray`` (a TSNEEmbedding is one)
    as a bare array, so the embedding travels inside this object, pickled with its attributes."""

    def __init__(self, model):
        self.model = model


def _place_block(block, shipped, n_components, params, fixed=None, block_info=None):
    """Worker side: the positions of one block of rows (rows in ``fixed = (keep, positions)``, a
    sorted index of all rows and their positions, are not placed but take those positions)."""
    model = shipped.model
    out = np.empty((block.shape[0], n_components))
    if block.shape[0] == 0:
        return out
    rows = np.arange(block.shape[0])
    if fixed is not None:
        keep, fixed = fixed
        start = block_info[0]["array-location"][0][0]
        lo, hi = np.searchsorted(keep, [start, start + block.shape[0]])
        taken = keep[lo:hi] - start
        out[taken] = fixed[lo:hi]
        rows = np.setdiff1d(rows, taken, assume_unique=True)
    if rows.size:
        new = np.asarray(block[rows], dtype=np.float64)
        if not np.all(np.isfinite(new)):
            raise ValueError("Input X contains NaN or infinity (in a block of rows placed by turbotsne.dask).")
        with _numba_lock():
            out[rows] = np.asarray(model.transform(new, **params))
    return out


def transform(model, X, **transform_params):
    """Place the rows of a dask array (or dask DataFrame) onto a fitted embedding, lazily.

    Parameters
    ----------
    model : turbotsne.TSNE (fitted) or turbotsne.TSNEEmbedding
    X : dask.array.Array or dask.dataframe.DataFrame of shape (n_samples, n_features)
        Row chunk sizes must be known; NaN / inf inside a chunk raise ``ValueError`` when that
        chunk is computed.
    **transform_params
        Passed to the model's ``transform`` for every block (``n_jobs`` defaults to 1: the
        parallelism comes from the dask workers' threads).

    Returns
    -------
    dask.array.Array of shape (n_samples, n_components), float64, with the row chunks of ``X``.
    """
    return _placement(model, X, transform_params)


def _for_placement(model):
    """What the workers receive: the fitted model, with its affinities' P (the fit's, most of a
    fitted model's size; placement reads the neighbour index and the reference positions) replaced
    by an empty sparse matrix of its shape in a shallow copy. The caller's model is not changed."""
    import copy

    import scipy.sparse as sp

    embedding = getattr(model, "tsne_embedding_", model)
    affinities = getattr(embedding, "affinities", None)
    if not sp.issparse(getattr(affinities, "P", None)):
        return model
    affinities = copy.copy(affinities)
    affinities.P = sp.csr_matrix(affinities.P.shape, dtype=affinities.P.dtype)
    light = copy.copy(embedding)
    light.affinities = affinities
    if embedding is model:
        return light
    model = copy.copy(model)
    model.tsne_embedding_ = light
    return model


def _placement(model, X, params, fixed=None, client=None):
    """The lazy placement of ``X``'s rows; ``fixed = (keep, positions)``: rows already placed.
    With a distributed ``client`` the model goes from here to every worker directly (scattered);
    otherwise it is one task of the graph."""
    import dask

    model, n_features, d = _fitted(model)
    X = as_dask_array(X)
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, but the model was fitted with {n_features} features.")
    params = {"n_jobs": 1, **params}
    # one copy each per worker, not one per block
    shipped = _Shipped(_for_placement(model))
    if client is not None:
        shipped = client.scatter(shipped, broadcast=True, hash=False)
        extra = {} if fixed is None else {"fixed": client.scatter([fixed], broadcast=True, hash=False)[0]}
    else:
        shipped = dask.delayed(shipped, pure=True)
        extra = {} if fixed is None else {"fixed": dask.delayed(fixed, pure=True, traverse=False)}
    return X.map_blocks(_place_block, shipped, d, params, **extra, dtype=np.float64,
                        chunks=(X.chunks[0], (d,)), meta=np.empty((0, d)))


SOURCE_SUFFIXES = (".zarr", ".npy", ".parquet", ".h5ad")
_SOURCES = "embed reads .zarr stores, .npy files, .parquet files or folders and .h5ad files"


def _check_source(source, key=None):
    """Refuse a source :func:`open_source` cannot read, before any cluster starts or data is read."""
    if isinstance(source, str) or hasattr(source, "__fspath__"):
        path = str(source).rstrip("/")
        if not path.endswith(SOURCE_SUFFIXES):
            raise ValueError(f"{_SOURCES}; got {path!r}.")
        if not os.path.exists(path):
            raise ValueError(f"embed: the source {path!r} does not exist.")
        if path.endswith(".h5ad"):
            _h5ad_dataset(path, key)
        elif key is not None:
            raise ValueError(f"embed: key={key!r} selects an obsm entry of a .h5ad source; {path!r} is not one.")
    elif hasattr(source, "to_dask_array"):  # its row counts are left for open_source to compute
        _check_numeric_columns(source, "embed")
    else:
        as_dask_array(source, owner="embed")


def _h5ad_dataset(path, key):
    """The HDF5 name, shape and dtype of a .h5ad file's dense ``X`` (``key=None``) or ``obsm[key]``."""
    try:
        import h5py
    except ImportError:
        raise ImportError("Reading .h5ad sources needs h5py: pip install 'turbotsne[io]'.") from None
    name = "X" if key is None else f"obsm/{key}"
    with h5py.File(path, "r") as f:
        if name not in f:
            keys = ", ".join(f["obsm"].keys()) if "obsm" in f else "none"
            raise ValueError(f"embed: {path!r} has no {name}; obsm keys: {keys}.")
        node = f[name]
        if not isinstance(node, h5py.Dataset) or node.ndim != 2:
            raise ValueError(f"embed: {name} of {path!r} is not a dense 2-D array (sparse X is not read "
                             f"block-wise); pass key= an obsm entry such as X_pca.")
        return name, node.shape, node.dtype


def _h5_rows(path, name, start, stop):
    import h5py

    with h5py.File(path, "r") as f:  # opened per block: a file handle does not travel to workers
        return np.asarray(f[name][start:stop])


def open_source(source, chunk_rows=100_000, key=None):
    """A dask array from a dask array / DataFrame, a ``.zarr`` store, a ``.npy`` file (memory-mapped,
    ``chunk_rows`` rows per block), a ``.parquet`` file or folder (every column a feature, one
    block per partition; their lengths are counted first) or a ``.h5ad`` file (its dense ``X``, or
    ``obsm[key]``, read ``chunk_rows`` rows per block by the worker that needs them)."""
    da = _require()
    if isinstance(source, str) or hasattr(source, "__fspath__"):
        path = str(source).rstrip("/")
        if path.endswith(".zarr"):
            return as_dask_array(da.from_zarr(path), owner="embed")
        if path.endswith(".npy"):
            return as_dask_array(da.from_array(np.load(path, mmap_mode="r"), chunks=(chunk_rows, -1)), owner="embed")
        if path.endswith(".parquet"):
            import dask.dataframe as dd

            return as_dask_array(dd.read_parquet(path), owner="embed")
        if path.endswith(".h5ad"):
            import dask

            name, (n, d), dtype = _h5ad_dataset(path, key)
            read = dask.delayed(_h5_rows, pure=True)
            blocks = [da.from_delayed(read(path, name, s, min(n, s + chunk_rows)), shape=(min(n, s + chunk_rows) - s, d),
                                      dtype=dtype) for s in range(0, n, chunk_rows)]
            return as_dask_array(da.concatenate(blocks, axis=0), owner="embed")
        raise ValueError(f"{_SOURCES}; got {path!r}.")
    return as_dask_array(source, owner="embed")


class EmbedResult:
    """What :func:`embed` returns: the lazy or written embedding, the sample, the model, timings."""

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __repr__(self):
        return f"EmbedResult({', '.join(f'{k}=...' for k in self.__dict__)})"


def _client(scheduler, n_jobs):
    """A distributed client: the given scheduler's, else a LocalCluster of one worker per core."""
    from distributed import Client, LocalCluster

    from ._config import effective_n_jobs

    if scheduler is not None:
        return Client(scheduler), None
    # single-threaded workers: each places one block at a time with n_jobs=1 (no oversubscription);
    # ":0" puts the scheduler's web server on a free port
    cluster = LocalCluster(n_workers=effective_n_jobs(n_jobs), threads_per_worker=1, processes=True,
                           dashboard_address=":0")
    return Client(cluster), cluster


def density(Y, bins=512):
    """A 2-D histogram of a dask array of 2-D points, computed per block and summed: ``(counts,
    x_edges, y_edges)`` without ever holding all points in one place."""
    import dask

    lo, hi = dask.compute(Y.min(axis=0), Y.max(axis=0))
    hi = np.where(hi > lo, hi, lo + 1.0)  # all points on a line: bins of width 1 / bins across it
    edges = [np.linspace(lo[k], hi[k], bins + 1) for k in range(2)]

    def hist(block):
        return np.histogram2d(block[:, 0], block[:, 1], bins=edges)[0][None]

    parts = Y.map_blocks(hist, dtype=np.float64, chunks=((1,) * Y.numblocks[0], (bins,), (bins,)),
                         new_axis=2, meta=np.empty((0, 0, 0)))
    return parts.sum(axis=0).compute(), edges[0], edges[1]


def embed(source, *, sample_size, output=None, scheduler=None, n_jobs=-1, random_state=0, labels=None,
          plot=None, progress=True, chunk_rows=100_000, key=None, transform_params=None, **tsne_params):
    """t-SNE of more points than one machine fits: fit a seeded sample, place the rest on a cluster.

    Parameters
    ----------
    source : dask array / DataFrame, or a path to a ``.zarr`` store, a ``.npy`` file, a ``.parquet``
        file / folder or a ``.h5ad`` file (its dense ``X``, or ``obsm[key]``)
    sample_size : int
        Points fitted with :class:`turbotsne.TSNE` in this (the client's) process.
    output : str or None
        A ``.zarr`` path the full embedding is written to, block by block; ``None`` keeps it lazy.
    scheduler : str or None
        An existing cluster's address (``"tcp://host:8786"``); ``None`` starts a LocalCluster of
        ``n_jobs`` single-threaded worker processes, closed at the end.
    n_jobs : int
        Threads of the fit; with no ``scheduler``, also the number of local workers.
    labels : array of shape (n_samples,) or None
        Labels for the sample's quality report (10-NN accuracy); only the sample's are read.
    plot : str or None
        A PNG path: the density of the full embedding, histogrammed per block.
    chunk_rows : int
        Rows per block of a ``.npy`` or ``.h5ad`` source (zarr and parquet keep their own chunks).
    key : str or None
        A ``.h5ad`` source's ``obsm`` entry to embed (e.g. ``"X_pca"``) instead of its ``X``.
    transform_params : dict or None
        Parameters of ``transform`` for the placement (``n_iter``, ``negative_gradient_method``, ...).
    **tsne_params
        Parameters of :class:`turbotsne.TSNE` for the sample's fit.

    Returns
    -------
    EmbedResult with ``embedding`` (dask array, or the zarr path's array), ``sample`` (indices),
    ``model``, ``quality`` (the sample's :func:`turbotsne.metrics.quality_report`) and ``timings``.
    """
    from . import TSNE
    from ._validation import check_scalar
    from .metrics import quality_report

    _require()
    sample_size = check_scalar(sample_size, "sample_size", "embed", int, low=1, closed="left")
    chunk_rows = check_scalar(chunk_rows, "chunk_rows", "embed", int, low=1, closed="left")
    _check_source(source, key)
    if output is not None and not str(output).rstrip("/").endswith(".zarr"):
        raise ValueError(f"embed writes the embedding to a .zarr store; got output={str(output)!r}.")
    timings = {}
    t = time.perf_counter()
    client, cluster = _client(scheduler, n_jobs)
    try:
        X = open_source(source, chunk_rows, key)
        n = X.shape[0]
        m = int(min(sample_size, n))
        sample = np.sort(np.random.default_rng(random_state).choice(n, m, replace=False))
        Xs = np.asarray(X[sample].compute(), dtype=np.float64)
        timings["read_sample_s"] = time.perf_counter() - t
        t = time.perf_counter()
        model = TSNE(random_state=random_state, n_jobs=n_jobs, **tsne_params).fit(Xs)
        timings["fit_s"] = time.perf_counter() - t
        if labels is not None:  # of a dask array only the sample's labels are read
            labels = np.asarray(labels[sample] if is_dask_collection(labels) else np.asarray(labels)[sample])
        quality = quality_report(Xs, model.embedding_, labels=labels, subsample=min(m, 10_000),
                                 random_state=random_state, n_jobs=n_jobs)
        t = time.perf_counter()
        # scattered data lives as long as this client: a result left lazy carries the model in its graph
        Y = _placement(model, X, dict(transform_params or {}), fixed=(sample, model.embedding_),
                       client=None if output is None else client)
        if output is not None:
            job = client.compute(Y.to_zarr(str(output), overwrite=True, compute=False))
            if progress:
                from distributed import progress as show

                show(job)
            job.result()
            Y = _require().from_zarr(str(output))
        timings["place_s"] = time.perf_counter() - t
        if plot is not None and Y.shape[1] == 2:
            t = time.perf_counter()
            # the two passes of the plot (range, then counts) read the written store; a lazy result
            # is kept on the workers for them instead of being placed twice
            counts, xe, ye = density(Y if output is not None else Y.persist())
            _save_density(plot, counts, xe, ye, n)
            timings["plot_s"] = time.perf_counter() - t
        return EmbedResult(embedding=Y, sample=sample, model=model, quality=quality, timings=timings)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _save_density(path, counts, x_edges, y_edges, n):
    from .plotting import _require_matplotlib

    plt = _require_matplotlib()
    fig, ax = plt.subplots(figsize=(8, 8))
    ax.imshow(np.log1p(counts.T), origin="lower", cmap="viridis",
              extent=(x_edges[0], x_edges[-1], y_edges[0], y_edges[-1]))
    ax.set_title(f"t-SNE of {n:,} points (log counts)")
    ax.set_xticks([])
    ax.set_yticks([])
    fig.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(fig)
