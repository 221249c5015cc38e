"""The optimisation options: one validated, immutable value per ``optimize`` call, and the one
place where "auto" (gradient method, learning rate, exaggeration) is resolved.

:class:`OptimizeOptions` holds every option of the optimiser and the gradient backends. It is
built (and validated, in scikit-learn's message style) once from the caller's arguments by
:meth:`OptimizeOptions.build` and handed down as one value; :func:`resolve` turns its "auto"
values into concrete ones from the number of points, the dimensions, the engine and whether new
points are placed against a fixed reference. Adding an option means adding a field here (with its
check in :meth:`OptimizeOptions.validate`), using it where it acts, and, for ``TSNE``, adding the
estimator parameter of the same name.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Optional

from ._validation import check_callbacks, check_n_jobs, check_scalar, check_verbose

#: accepted names of each gradient method (openTSNE's aliases plus "exact")
METHOD_ALIASES = {
    "exact": "exact",
    "bh": "bh",
    "BH": "bh",
    "barneshut": "bh",
    "barnes-hut": "bh",
    "fft": "fft",
    "FFT": "fft",
    "interpolation": "fft",
    "auto": "auto",
}


def canonical_method(name) -> str:
    """Map a user-facing ``negative_gradient_method`` to "exact", "bh", "fft" or "auto"."""
    if not isinstance(name, str) or name not in METHOD_ALIASES:
        raise ValueError(
            "The 'negative_gradient_method' parameter must be one of "
            f"{sorted(METHOD_ALIASES)}. Got {name!r} instead."
        )
    return METHOD_ALIASES[name]


@dataclasses.dataclass(frozen=True)
class OptimizeOptions:
    """Every option of one optimisation call (the defaults are openTSNE's).

    The first group is what an embedding keeps as its defaults (``gradient_descent_params``);
    ``learning_rate``, ``exaggeration`` and ``momentum`` are given per call.
    """

    negative_gradient_method: str = "auto"
    dof: float = 1
    theta: float = 0.5
    n_interpolation_points: int = 3
    min_num_intervals: int = 50
    ints_in_interval: float = 1
    max_grad_norm: Optional[float] = None
    max_step_norm: Optional[float] = 5
    n_jobs: Optional[int] = 1
    callbacks: Any = None
    callbacks_every_iters: int = 50
    verbose: Any = False
    min_grad_norm: Optional[float] = None
    n_iter_without_progress: Optional[int] = None
    device: Any = "cpu"
    backend: str = "auto"
    # per call
    learning_rate: Any = "auto"
    exaggeration: Optional[float] = None
    momentum: float = 0.8

    @classmethod
    def names(cls):
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def build(cls, owner, **params):
        """Validated options from keyword arguments (unknown names raise ``TypeError``)."""
        unknown = set(params) - set(cls.names())
        if unknown:
            raise TypeError(f"{owner} got unexpected parameters {sorted(unknown)}; "
                            f"allowed: {sorted(EMBEDDING_PARAMS)}.")
        return cls(**params).validate(owner)

    def validate(self, owner):
        """Check every option (scikit-learn's messages, naming ``owner``); returns the normalised options."""
        from .engine import check_device_backend

        check_scalar(self.dof, "dof", owner, float, low=0.0)
        check_scalar(self.theta, "theta", owner, float, low=0.0, closed="left")
        check_scalar(self.n_interpolation_points, "n_interpolation_points", owner, int, low=1, closed="left")
        check_scalar(self.min_num_intervals, "min_num_intervals", owner, int, low=1, closed="left")
        check_scalar(self.ints_in_interval, "ints_in_interval", owner, float, low=0.0)
        check_scalar(self.max_grad_norm, "max_grad_norm", owner, float, low=0.0, allow_none=True)
        check_scalar(self.max_step_norm, "max_step_norm", owner, float, low=0.0, allow_none=True)
        check_scalar(self.callbacks_every_iters, "callbacks_every_iters", owner, int, low=1, closed="left")
        check_n_jobs(self.n_jobs, owner)
        check_verbose(self.verbose, owner, hooks=True)
        check_scalar(self.min_grad_norm, "min_grad_norm", owner, float, low=0.0, closed="left", allow_none=True)
        check_scalar(self.n_iter_without_progress, "n_iter_without_progress", owner, int, low=1, closed="left",
                     allow_none=True)
        check_scalar(self.learning_rate, "learning_rate", owner, float, low=0.0, options=("auto",))
        exaggeration = check_scalar(self.exaggeration, "exaggeration", owner, float, low=0.0, allow_none=True)
        momentum = check_scalar(self.momentum, "momentum", owner, float, low=0.0, high=1.0, closed="left")
        check_device_backend(self.device, self.backend, owner)
        return dataclasses.replace(self, negative_gradient_method=canonical_method(self.negative_gradient_method),
                                   callbacks=check_callbacks(self.callbacks, owner), exaggeration=exaggeration,
                                   momentum=momentum)

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)

    @property
    def repulsion_params(self):
        """What the repulsion methods take (grid and tree parameters, threads)."""
        return {k: getattr(self, k) for k in
                ("theta", "n_interpolation_points", "min_num_intervals", "ints_in_interval", "n_jobs")}


#: the options an embedding keeps as defaults for its ``optimize`` calls (``gradient_descent_params``)
EMBEDDING_PARAMS = tuple(n for n in OptimizeOptions.names() if n not in ("learning_rate", "exaggeration", "momentum"))
#: their default values
EMBEDDING_DEFAULTS = {n: getattr(OptimizeOptions, n) for n in EMBEDDING_PARAMS}


def resolve_learning_rate(learning_rate, n_samples, exaggeration):
    """``"auto"`` is ``N / exaggeration`` (Belkina et al. 2019, openTSNE's scaling), at least 1."""
    if isinstance(learning_rate, str) and learning_rate == "auto":
        return max(n_samples / exaggeration, 1.0)
    return float(learning_rate)


def early_exaggeration(early_exaggeration, exaggeration):
    """The early phase's exaggeration: ``"auto"`` is ``max(12, exaggeration)`` (openTSNE's rule)."""
    exaggeration = 1.0 if exaggeration is None else float(exaggeration)
    return max(12.0, exaggeration) if early_exaggeration == "auto" else float(early_exaggeration)


def check_method(method, n_components, engine, *, dense=False, theta=None):
    """Refuse a concrete method that the engine, the dimensions or a dense P do not allow
    (Barnes-Hut at ``theta=0`` is the exact sum, in any dimension)."""
    engine.check_method(method)
    if dense and method != "exact":
        raise ValueError("A dense P is only supported by the exact method.")
    others = " or ".join(repr(m) for m in engine.methods if m != method)
    if method == "bh" and n_components > 3 and theta != 0:
        raise ValueError(f"negative_gradient_method='bh' supports at most 3 embedding dimensions (a Barnes-Hut tree); "
                         f"got n_components={n_components}. Use negative_gradient_method='exact' instead.")
    if method == "fft" and not 1 <= n_components <= 3:
        raise ValueError(f"negative_gradient_method='fft' supports n_components of 1, 2 or 3 only; got "
                         f"n_components={n_components}. Use negative_gradient_method={others}.")


def resolve_method(method, n_samples, n_components, engine, *, dense=False, reference=False, theta=None):
    """The concrete method ("exact", "bh" or "fft") that ``method`` stands for, checked."""
    method = canonical_method(method)
    if method == "auto":
        method = engine.auto_method(n_samples, n_components, dense=dense, reference=reference)
    check_method(method, n_components, engine, dense=dense, theta=theta)
    return method


def resolve(options, n_samples, n_components, engine, *, dense=False, reference=False):
    """``options`` with "auto" resolved: a concrete gradient method, a float exaggeration (``None``
    is 1) and a float learning rate (``"auto"`` is ``N / exaggeration``)."""
    exaggeration = 1.0 if options.exaggeration is None else float(options.exaggeration)
    return options.replace(
        negative_gradient_method=resolve_method(options.negative_gradient_method, n_samples, n_components, engine,
                                                dense=dense, reference=reference, theta=options.theta),
        exaggeration=exaggeration,
        learning_rate=resolve_learning_rate(options.learning_rate, n_samples, exaggeration))
