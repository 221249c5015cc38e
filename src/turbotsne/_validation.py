"""Parameter checks shared by every entry point, in scikit-learn's message style:

    The 'perplexity' parameter of TSNE must be a float in the range (0.0, inf). Got -1 instead.
"""
from __future__ import annotations

import numbers

import numpy as np


def _range_text(low, high, closed):
    left = "[" if closed in ("left", "both") else "("
    right = "]" if closed in ("right", "both") else ")"
    lo = "-inf" if low is None else repr(low)
    hi = "inf" if high is None else repr(high)
    return f"{left}{lo}, {hi}{right}"


def check_scalar(value, name, owner, kind, low=None, high=None, closed="neither", options=(), allow_none=False):
    """Validate one numeric parameter (optionally also accepting ``None`` or string ``options``).

    Returns the value, converted to ``int``/``float`` when numeric.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, str) and value in options:
        return value
    is_int = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    is_real = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    ok_type = is_int if kind is int else is_real
    # inf is outside every range written here ('(0.0, inf)' is open at inf): it would reach the kernels
    ok = ok_type and not (is_real and not np.isfinite(value))
    if ok:
        if low is not None and (value < low or (value == low and closed not in ("left", "both"))):
            ok = False
        if high is not None and (value > high or (value == high and closed not in ("right", "both"))):
            ok = False
    if not ok:
        what = "an int" if kind is int else "a float"
        alts = [f"{what} in the range {_range_text(low, high, closed)}"]
        alts += [f"{o!r}" for o in options]
        if allow_none:
            alts.append("None")
        text = alts[0] if len(alts) == 1 else ", ".join(alts[:-1]) + " or " + alts[-1]
        raise ValueError(f"The {name!r} parameter of {owner} must be {text}. Got {value!r} instead.")
    return int(value) if kind is int else float(value)


def check_option(value, name, owner, options):
    if not isinstance(value, str) or value not in options:
        raise ValueError(
            f"The {name!r} parameter of {owner} must be a str among {sorted(set(options))}. Got {value!r} instead.")
    return value


def check_callbacks(callbacks, owner):
    """Normalise ``callbacks`` to a tuple of callables."""
    if callbacks is None:
        return ()
    if callable(callbacks):
        return (callbacks,)
    try:
        cbs = tuple(callbacks)
    except TypeError:
        cbs = None
    if cbs is None or not all(callable(c) for c in cbs):
        raise ValueError(
            f"The 'callbacks' parameter of {owner} must be a callable or a list of callables. "
            f"Got {callbacks!r} instead.")
    return cbs


def check_n_jobs(n_jobs, owner):
    if n_jobs is None:
        return 1
    if not isinstance(n_jobs, numbers.Integral) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ValueError(
            f"The 'n_jobs' parameter of {owner} must be a non-zero int (-1 for all cores, -2 for all "
            f"but one) or None. Got {n_jobs!r} instead.")
    return int(n_jobs)


def check_bool(value, name, owner):
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"The {name!r} parameter of {owner} must be a bool. Got {value!r} instead.")
    return bool(value)


def check_verbose(value, owner, hooks=False):
    """A bool (or int); with ``hooks`` also None or a progress hook with ``start``/``update``/``close``."""
    if isinstance(value, (bool, np.bool_, numbers.Integral)):
        return value
    if hooks and (value is None or all(hasattr(value, a) for a in ("start", "update", "close"))):
        return value
    extra = ", None or a progress hook (start, update, close)" if hooks else ""
    raise ValueError(f"The 'verbose' parameter of {owner} must be a bool{extra}. Got {value!r} instead.")


def check_metric(metric, metric_params, owner):
    if not (isinstance(metric, str) or callable(metric)):
        raise ValueError(f"The 'metric' parameter of {owner} must be a str or a callable. Got {metric!r} instead.")
    if metric_params is not None and not isinstance(metric_params, dict):
        raise ValueError(
            f"The 'metric_params' parameter of {owner} must be a dict or None. Got {metric_params!r} instead.")


def check_neighbors(method, owner, options, param="method"):
    """``method`` is a ``KNNIndex`` instance or one of ``options``."""
    from .neighbors.base import KNNIndex

    if isinstance(method, KNNIndex):
        return method
    if not isinstance(method, str) or method.lower() not in options:
        raise ValueError(
            f"The {param!r} parameter of {owner} must be a KNNIndex or a str among {sorted(set(options))}. "
            f"Got {method!r} instead.")
    return method


def check_data(X, owner, *, min_samples=2, name="X"):
    """A 2-D float array (CSR kept sparse) without NaN or inf, with at least ``min_samples`` rows.

    Integer and boolean input is converted to float64, float32 kept; the
    caller's array is never modified (a converted copy, or the array itself
    for read-only use).
    """
    from sklearn.utils import check_array

    kw = dict(accept_sparse="csr", dtype=[np.float64, np.float32], ensure_min_samples=min_samples,
              input_name=name, estimator=owner)
    try:
        return check_array(X, ensure_all_finite=True, **kw)
    except TypeError:  # pragma: no cover - scikit-learn < 1.6
        return check_array(X, force_all_finite=True, **kw)
