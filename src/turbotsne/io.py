"""Reading data matrices and writing embeddings: the file formats of the ``turbotsne`` command,
usable from Python.

:func:`read_input` returns ``(X, labels, label_name)`` from ``.npy``; ``.npz`` (the first
array, or ``key``); ``.csv`` / ``.tsv`` (a header line is detected; ``labels`` takes a column
out as labels); ``.parquet`` (needs pyarrow); ``.h5ad`` (needs anndata: ``X``, or
``obsm[key]``; ``labels`` names an ``obs`` column). :func:`write_output` writes an embedding as
``.npy``, ``.csv`` or ``.tsv``. The format is the file's extension: :data:`READERS` and
:data:`WRITERS` map each to its function, so a format is one entry. A missing file raises
``FileNotFoundError``, a missing optional package ``ImportError`` naming the command that
installs it, anything else wrong with a file ``ValueError`` naming the file (and the column
and line where one is at fault). Files are read whole into memory.
"""
from __future__ import annotations

import os

import numpy as np

__all__ = ["read_input", "write_output", "file_format", "READERS", "WRITERS", "INPUT_FORMATS", "OUTPUT_FORMATS"]


# --------------------------------------------------------------------------- #
# readers and writers
# --------------------------------------------------------------------------- #
def _read_npy(path, key, labels, header):
    return np.load(path, allow_pickle=False), None, None, False


def _read_csv(path, key, labels, header):
    return _read_delimited(path, ",", labels, header)


def _read_tsv(path, key, labels, header):
    return _read_delimited(path, "\t", labels, header)


def _write_npy(path, Y):
    np.save(path, Y)


def _write_csv(path, Y):
    _write_delimited(path, Y, ",")


def _write_tsv(path, Y):
    _write_delimited(path, Y, "\t")


def _write_delimited(path, Y, delimiter):
    header = delimiter.join(f"tsne_{k + 1}" for k in range(Y.shape[1]))
    np.savetxt(path, Y, delimiter=delimiter, header=header, comments="", fmt="%.9g")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def _maybe_numeric(values):
    """Strings -> ints or floats when they all parse as numbers, else the strings."""
    values = np.asarray(values)
    if values.dtype.kind not in "US":
        return values
    try:
        as_float = values.astype(np.float64)
    except ValueError:
        return values
    if np.all(np.isfinite(as_float)) and np.all(as_float == np.round(as_float)):
        return as_float.astype(np.int64)
    return as_float


def _unquote(field):
    field = field.strip()
    if len(field) >= 2 and field[0] == field[-1] and field[0] in "\"'":
        return field[1:-1]
    return field


def _read_delimited_head(path, delimiter):
    import csv

    with open(path, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        first = next(reader, None)
        second = next(reader, None)
    if first is None:
        raise ValueError(f"{path} is empty.")
    return [_unquote(x) for x in first], (None if second is None else [_unquote(x) for x in second])


def _detect_header(first, second):
    """A first line is a header when some field is not a number where the next line has one."""
    non_numeric = [bool(x) and not _is_number(x) for x in first]
    if not any(non_numeric):
        return False
    if second is None or len(second) != len(first):
        return True
    return any(nn and _is_number(s) for nn, s in zip(non_numeric, second)) or all(non_numeric)


def _resolve_column(spec, names, n_columns):
    """Index of the column ``spec`` names (a header name, or an integer index; negative from the end)."""
    if names is not None and spec in names:
        return names.index(spec)
    try:
        j = int(spec)
    except ValueError:
        return None
    if -n_columns <= j < n_columns:
        return j % n_columns
    return None


def _find_bad_field(path, delimiter, skip, usecols, names):
    import csv

    with open(path, newline="") as f:
        for row_no, row in enumerate(csv.reader(f, delimiter=delimiter), start=1):
            if row_no <= skip or not row or row[0].lstrip().startswith("#"):
                continue
            for j in usecols:
                value = _unquote(row[j]) if j < len(row) else ""
                if not _is_number(value):
                    col = names[j] if names else str(j)
                    return row_no, col, value
    return None


def _read_delimited(path, delimiter, labels, header):
    first, second = _read_delimited_head(path, delimiter)
    has_header = _detect_header(first, second) if header is None else header
    names = first if has_header else None
    n_cols = len(first)
    label_col = None
    if labels is not None:
        label_col = _resolve_column(labels, names, n_cols)
    usecols = [j for j in range(n_cols) if j != label_col]
    if not usecols:
        raise ValueError(f"{path}: no data columns left after taking out the labels column.")
    skip = 1 if has_header else 0
    try:
        X = np.loadtxt(path, delimiter=delimiter, skiprows=skip, usecols=usecols, dtype=np.float64, ndmin=2,
                       quotechar='"')
    except ValueError as e:
        bad = _find_bad_field(path, delimiter, skip, usecols, names)
        if bad is None:
            raise ValueError(f"{path}: could not read the numbers: {e}") from None
        row_no, col, value = bad
        raise ValueError(
            f"{path}: column {col!r} is not numeric (line {row_no}: {value!r}). Use labels={col!r} (--labels {col}) "
            f"to take it out as labels, or remove it.") from None
    y = None
    if label_col is not None:
        y = np.loadtxt(path, delimiter=delimiter, skiprows=skip, usecols=[label_col], dtype=str, ndmin=1,
                       quotechar='"')
        y = _maybe_numeric(np.char.strip(y))
    label_name = None if label_col is None else (names[label_col] if names else str(labels))
    return X, y, label_name, label_col is not None


def _read_npz(path, key, labels, header):
    with np.load(path, allow_pickle=False) as data:
        files = list(data.files)
        if not files:
            raise ValueError(f"{path} contains no arrays.")
        if key is not None and key not in files:
            raise ValueError(f"{path} has no array {key!r}; it has {', '.join(files)}.")
        data_key = key if key is not None else next((f for f in files if f != labels), files[0])
        X = data[data_key]
        y = data[labels] if labels is not None and labels in files else None
    return X, y, (labels if y is not None else None), y is not None


def _require(module, ext, package):
    """Import an optional reader's ``module``, or an ImportError naming ``package`` and the extra."""
    try:
        return __import__(module, fromlist=["_"])  # (through builtins.__import__, which tests can replace)
    except ImportError:
        raise ImportError(f"Reading {ext} files needs the '{package}' package: pip install {package} "
                          "(or pip install 'turbotsne[io]').") from None


def _read_parquet(path, key, labels, header):
    pq = _require("pyarrow.parquet", ".parquet", "pyarrow")
    pat = _require("pyarrow.types", ".parquet", "pyarrow")
    table = pq.read_table(path)
    names = list(table.column_names)
    label_col = _resolve_column(labels, names, len(names)) if labels is not None else None
    columns = []
    for j, name in enumerate(names):
        if j == label_col:
            continue
        t = table.schema.field(name).type
        if not (pat.is_integer(t) or pat.is_floating(t) or pat.is_boolean(t)):
            raise ValueError(f"{path}: column {name!r} is not numeric ({t}). Use labels={name!r} (--labels {name}) "
                             "to take it out as labels, or remove it.")
        columns.append(np.asarray(table.column(name).to_numpy(zero_copy_only=False), dtype=np.float64))
    if not columns:
        raise ValueError(f"{path}: no data columns left after taking out the labels column.")
    X = np.column_stack(columns)
    y = None
    if label_col is not None:
        y = np.asarray(table.column(names[label_col]).to_numpy(zero_copy_only=False))
        if y.dtype == object:
            y = y.astype(str)
    return X, y, (names[label_col] if label_col is not None else None), label_col is not None


def _read_h5ad(path, key, labels, header):
    anndata = _require("anndata", ".h5ad", "anndata")
    adata = anndata.read_h5ad(path)
    if key is not None:
        if key not in adata.obsm:
            keys = ", ".join(adata.obsm.keys()) or "none"
            raise ValueError(f"{path} has no obsm[{key!r}]; obsm keys: {keys}.")
        X = adata.obsm[key]
    else:
        X = adata.X
    y = None
    if labels is not None and labels in adata.obs.columns:
        y = np.asarray(adata.obs[labels].astype(str) if str(adata.obs[labels].dtype) == "category"
                       else adata.obs[labels])
    return X, y, (labels if y is not None else None), y is not None


def _read_label_file(path, n):
    if path.lower().endswith(".npy"):
        y = np.load(path, allow_pickle=False)
    else:
        with open(path) as f:
            lines = [_unquote(line.rstrip("\r\n")) for line in f]
        while lines and not lines[-1]:
            lines.pop()
        if len(lines) == n + 1:  # a header line
            lines = lines[1:]
        y = _maybe_numeric(np.array(lines))
    y = np.asarray(y).ravel()
    if y.shape[0] != n:
        raise ValueError(f"The labels file {path} has {y.shape[0]} labels but the data has {n} rows.")
    return y


#: input formats: extension -> ``reader(path, key, labels, header) -> (X, y, label_name, taken)``,
#: ``taken`` telling whether ``labels`` named a part of the file (else it is read as a labels file).
READERS = {
    ".npy": _read_npy,
    ".npz": _read_npz,
    ".csv": _read_csv,
    ".tsv": _read_tsv,
    ".parquet": _read_parquet,
    ".h5ad": _read_h5ad,
}
#: output formats: extension -> ``writer(path, Y)``.
WRITERS = {
    ".npy": _write_npy,
    ".csv": _write_csv,
    ".tsv": _write_tsv,
}
INPUT_FORMATS = tuple(READERS)
OUTPUT_FORMATS = tuple(WRITERS)


def file_format(path):
    """The format of ``path``: the known extension it ends with (any case), else its last
    extension (``""`` when it has none), in lower case."""
    lower = path.lower()
    for ext in INPUT_FORMATS + OUTPUT_FORMATS:
        if lower.endswith(ext):
            return ext
    return os.path.splitext(lower)[1]


def read_input(path, key=None, labels=None, header=None):
    """Read a data matrix (and optionally labels) from a file.

    Parameters
    ----------
    path : str
        ``.npy``, ``.npz``, ``.csv``, ``.tsv``, ``.parquet`` or ``.h5ad``.
    key : str, optional
        ``.npz``: the array to read (default: the first); ``.h5ad``: read
        ``obsm[key]`` instead of ``X``.
    labels : str, optional
        A column (header name or integer index) of a ``.csv`` / ``.tsv`` /
        ``.parquet`` file, an array of a ``.npz`` file or an ``obs`` column of
        an ``.h5ad`` file, which is taken out of the data; otherwise a file of
        labels (``.npy``, or one label per line).
    header : bool or None, default=None
        ``.csv`` / ``.tsv``: whether the first line is a header (None:
        detected).

    Returns
    -------
    X : ndarray or sparse matrix of shape (n_samples, n_features)
    y : ndarray of shape (n_samples,) or None
    label_name : str or None

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ImportError
        The optional package that reads the format is not installed.
    ValueError
        Unknown format, non-numeric data, a missing array / column / key,
        labels that do not match the rows.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"input file not found: {path}")
    ext = file_format(path)
    if ext not in READERS:
        raise ValueError(f"unknown input format {ext or '(none)'!r} of {path}; use one of {', '.join(INPUT_FORMATS)}.")
    X, y, name, taken = READERS[ext](path, key, labels, header)
    import scipy.sparse as sp

    if not sp.issparse(X):
        X = np.asarray(X)
        if X.dtype.kind not in "iufb":
            raise ValueError(f"{path}: the data are not numeric (dtype {X.dtype}).")
        if X.ndim == 1:
            X = X[:, None]
        if X.ndim != 2:
            raise ValueError(f"{path}: expected a 2-D data matrix, got shape {X.shape}.")
    if labels is not None and not taken:
        if os.path.isfile(labels):
            y, name = _read_label_file(labels, X.shape[0]), os.path.basename(labels)
        else:
            raise ValueError(f"The labels {labels!r} are neither a column of {path} nor a file.")
    return X, y, name


def write_output(path, Y):
    """Write an embedding to a file.

    Parameters
    ----------
    path : str
        ``.npy``, or ``.csv`` / ``.tsv`` (with a header ``tsne_1,tsne_2,...``).
    Y : ndarray of shape (n_samples, n_components)

    Raises
    ------
    ValueError
        The extension of ``path`` is not an output format.
    """
    ext = file_format(path)
    if ext not in WRITERS:
        raise ValueError(f"unknown output format {ext or '(none)'!r} of {path}; use one of {', '.join(OUTPUT_FORMATS)}.")
    WRITERS[ext](path, Y)
