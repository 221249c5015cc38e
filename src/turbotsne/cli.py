"""The ``turbotsne`` command (also ``python -m turbotsne``).

::

    turbotsne embed INPUT -o OUT [--labels COL|FILE] [--plot PNG] [--save-model PATH] [TSNE flags]
    turbotsne transform MODEL INPUT -o OUT [--labels COL|FILE] [--plot PNG]
    turbotsne demo [-o PNG]

Inputs and outputs are the formats of :mod:`turbotsne.io` (``--key``, ``--labels`` and
``--header`` are the arguments of :func:`turbotsne.io.read_input`). Every parameter of
:class:`turbotsne.TSNE` is a flag (``--perplexity 50 --n-jobs -1 --negative-gradient-method
fft ...``); flags not given keep the library's defaults.

Exit status: 0 on success, 2 on a usage or input error (missing file, unknown
flag, non-numeric column, bad parameter value), 1 on any other error, 130 on
Ctrl-C. Messages go to stderr.
"""
from __future__ import annotations

import argparse
import contextlib
import inspect
import json
import logging
import os
import pickle
import sys
import time

import numpy as np

from .io import INPUT_FORMATS, OUTPUT_FORMATS, file_format, read_input, write_output

__all__ = ["main", "build_parser", "read_input", "write_output", "CLIError"]

PROG = "turbotsne"

log = logging.getLogger(__name__)


class CLIError(Exception):
    """A usage or input error: printed as ``turbotsne: error: ...`` with exit status ``code``."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


# --------------------------------------------------------------------------- #
# flag types
# --------------------------------------------------------------------------- #
def _number_or(kind, *words):
    def convert(text):
        if text in words:
            return None if text == "none" else text
        try:
            return kind(text)
        except ValueError:
            alts = " or ".join([kind.__name__] + [repr(w) for w in words])
            raise argparse.ArgumentTypeError(f"expected {alts}, got {text!r}") from None

    convert.__name__ = kind.__name__
    return convert


def _json_dict(text):
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"expected a JSON object such as '{{\"p\": 3}}', got {text!r} ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {text!r}")
    return value


def _initialization(text):
    if text.endswith(".npy"):
        if not os.path.isfile(text):
            raise argparse.ArgumentTypeError(f"initialization file not found: {text}")
        return np.load(text, allow_pickle=False)
    return text


#: converters of the TSNE parameters that are flags (callbacks and verbose are not).
_TSNE_FLAG_TYPES = {
    "n_components": int,
    "perplexity": float,
    "learning_rate": _number_or(float, "auto"),
    "early_exaggeration_iter": int,
    "early_exaggeration": _number_or(float, "auto"),
    "n_iter": int,
    "exaggeration": _number_or(float, "none"),
    "dof": float,
    "theta": float,
    "n_interpolation_points": int,
    "min_num_intervals": int,
    "ints_in_interval": float,
    "initialization": _initialization,
    "metric": str,
    "metric_params": _json_dict,
    "initial_momentum": float,
    "final_momentum": float,
    "max_grad_norm": _number_or(float, "none"),
    "max_step_norm": _number_or(float, "none"),
    "n_jobs": int,
    "neighbors": str,
    "negative_gradient_method": str,
    "callbacks_every_iters": int,
    "random_state": _number_or(int, "none"),
    "n_iter_without_progress": _number_or(int, "none"),
    "min_grad_norm": _number_or(float, "none"),
    "knn_kwargs": _json_dict,
}
_NOT_FLAGS = ("callbacks", "verbose")


def _converter_for(default):
    """The flag converter of a parameter not listed in ``_TSNE_FLAG_TYPES``, from its default:
    int, float, a float or ``none`` for ``None``, else text (so a new TSNE parameter is a flag
    without an edit here)."""
    if isinstance(default, (bool, str)):
        return str
    if isinstance(default, int):
        return int
    if isinstance(default, float):
        return float
    return _number_or(float, "none") if default is None else str

_TSNE_FLAG_HELP = {
    "initialization": "pca, spectral, random or a .npy file of initial positions",
    "metric_params": "JSON object, e.g. '{\"p\": 3}'",
    "negative_gradient_method": "exact, bh, fft or auto",
    "neighbors": "exact, auto, approx, voyager, annoy, pynndescent or hnsw",
    "n_jobs": "threads: -1 all cores, -2 all but one",
    "device": "cpu, cuda, cuda:N or auto (a CUDA device needs the gpu extra)",
    "backend": "auto, numba or torch",
}


def tsne_parameters():
    """The ``TSNE.__init__`` parameters with their defaults, in order.

    Returns
    -------
    dict
        Parameter name -> default value; every name but ``callbacks`` and
        ``verbose`` is a flag of ``embed`` and ``demo``.
    """
    from .estimator import TSNE

    sig = inspect.signature(TSNE.__init__)
    return {name: p.default for name, p in sig.parameters.items() if name != "self"}


def _add_tsne_flags(parser, defaults=None):
    group = parser.add_argument_group("t-SNE parameters (those of turbotsne.TSNE; the default is the library's)")
    defaults = defaults or {}
    for name, lib_default in tsne_parameters().items():
        if name in _NOT_FLAGS:
            continue
        kind = _TSNE_FLAG_TYPES.get(name) or _converter_for(lib_default)
        shown = defaults.get(name, lib_default)
        extra = _TSNE_FLAG_HELP.get(name)
        help_text = f"default: {shown!r}" + (f"; {extra}" if extra else "")
        metavar = {int: "N", float: "X"}.get(kind, "VALUE")
        group.add_argument("--" + name.replace("_", "-"), dest="tsne_" + name, type=kind,
                           default=argparse.SUPPRESS, metavar=metavar, help=help_text)


def _tsne_kwargs(args, defaults=None):
    kwargs = dict(defaults or {})
    kwargs.update({k[5:]: v for k, v in vars(args).items() if k.startswith("tsne_")})
    return kwargs


# --------------------------------------------------------------------------- #
# files
# --------------------------------------------------------------------------- #
def _read(args):
    """``read_input`` of the command's INPUT, a missing file or reader being a usage error."""
    try:
        return read_input(args.input, args.key, args.labels, args.header)
    except (FileNotFoundError, ImportError) as e:
        raise CLIError(str(e)) from None


def _check_output(path, formats=OUTPUT_FORMATS, what="output"):
    ext = file_format(path)
    if formats is not None and ext not in formats:
        raise CLIError(f"unknown {what} format {ext or '(none)'!r} of {path}; use one of {', '.join(formats)}.")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise CLIError(f"the folder of the {what} file does not exist: {folder}")


def _save_plot(path, Y, labels, label_name, title):
    from .plotting import _require_matplotlib

    try:
        import matplotlib
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install 'turbotsne[plot]'") from None
    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")
    plt = _require_matplotlib()
    from .plotting import plot

    ax = plot(Y, labels, title=title, label_name=label_name)
    ax.figure.savefig(path, dpi=150, bbox_inches="tight")
    plt.close(ax.figure)


# --------------------------------------------------------------------------- #
# commands
# --------------------------------------------------------------------------- #
def _progress_context(args):
    from .callbacks import progress_options

    show = args.progress if args.progress is not None else bool(getattr(sys.stderr, "isatty", lambda: False)())
    stack = contextlib.ExitStack()
    stack.enter_context(progress_options(disable=not show, file=sys.stderr))
    if show and args.verbose:
        try:
            from tqdm.contrib.logging import logging_redirect_tqdm

            stack.enter_context(logging_redirect_tqdm())
        except ImportError:  # pragma: no cover
            pass
    return stack, show


def _fit(args, X, defaults=None):
    from .estimator import TSNE

    kwargs = _tsne_kwargs(args, defaults)
    stack, show = _progress_context(args)
    kwargs["verbose"] = bool(show or args.verbose)
    tsne = TSNE(**kwargs)
    t0 = time.perf_counter()
    with stack:
        Y = tsne.fit_transform(X)
    return tsne, Y, time.perf_counter() - t0


def _report_quality(X, Y, labels, args):
    from .metrics import quality_report

    n = Y.shape[0]
    report = quality_report(X, Y, labels, subsample=min(n, args.quality_subsample), random_state=0,
                            n_jobs=getattr(args, "tsne_n_jobs", 1))
    print(json.dumps(report), file=sys.stdout)


def cmd_embed(args):
    """``turbotsne embed``: fit t-SNE on INPUT and write the embedding to OUT.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments of ``embed``.

    Returns
    -------
    int
        The exit status (0); errors are raised as :class:`CLIError` or the
        library's ``ValueError``.
    """
    if args.sample is not None or args.input.rstrip("/").endswith(".zarr"):
        return _embed_on_dask(args)
    _check_output(args.output)
    if args.plot:
        _check_output(args.plot, (".png", ".pdf", ".svg", ".jpg", ".jpeg"), "plot")
    if args.save_model:
        _check_output(args.save_model, None, "model")
    X, labels, label_name = _read(args)
    tsne, Y, elapsed = _fit(args, X)
    write_output(args.output, Y)
    print(f"{PROG}: embedded {Y.shape[0]} points into {Y.shape[1]}-D in {elapsed:.1f} s "
          f"(KL divergence {tsne.kl_divergence_:.4f}) -> {args.output}", file=sys.stderr)
    if args.save_model:
        with open(args.save_model, "wb") as f:
            pickle.dump(tsne, f, protocol=pickle.HIGHEST_PROTOCOL)
    if args.plot:
        _save_plot(args.plot, Y, labels, label_name, f"t-SNE of {os.path.basename(args.input)}")
    if args.quality:
        _report_quality(X, Y, labels, args)
    return 0


def _embed_on_dask(args):
    """``embed --sample N`` (or a .zarr input): :func:`turbotsne.dask.embed` — the sample fitted
    here, the rest placed on a dask cluster (``--scheduler`` or a LocalCluster), zarr out."""
    if args.sample is None:
        raise CLIError("a .zarr input is embedded on dask: give --sample N, the points fitted on this machine.")
    if not args.output.rstrip("/").endswith(".zarr"):
        raise CLIError(f"with --sample the embedding is written block by block: OUTPUT must be a .zarr store, "
                       f"got {args.output}.")
    if args.plot:
        _check_output(args.plot, (".png",), "plot")
    try:
        from .dask import embed
    except ImportError as e:
        raise CLIError(str(e)) from None
    kwargs = _tsne_kwargs(args)
    n_jobs = kwargs.pop("n_jobs", -1)
    random_state = kwargs.pop("random_state", 0)
    t0 = time.perf_counter()
    result = embed(args.input, sample_size=args.sample, output=args.output, scheduler=args.scheduler,
                   key=args.key, n_jobs=n_jobs, random_state=0 if random_state is None else random_state, plot=args.plot,
                   progress=bool(args.progress if args.progress is not None else sys.stderr.isatty()), **kwargs)
    n = result.embedding.shape[0]
    print(f"{PROG}: fitted {len(result.sample)} points, placed {n - len(result.sample)} on dask, "
          f"{time.perf_counter() - t0:.1f} s -> {args.output}", file=sys.stderr)
    if args.quality:
        print(json.dumps(result.quality))
    return 0


def cmd_transform(args):
    """``turbotsne transform``: map new points onto a saved model's embedding.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments of ``transform``.

    Returns
    -------
    int
        The exit status (0); a model whose ``transform`` raises
        ``NotImplementedError`` gives a :class:`CLIError` (status 2).
    """
    from .estimator import TSNE

    _check_output(args.output)
    if args.plot:
        _check_output(args.plot, (".png", ".pdf", ".svg", ".jpg", ".jpeg"), "plot")
    if not os.path.exists(args.model):
        raise CLIError(f"model file not found: {args.model}")
    try:
        with open(args.model, "rb") as f:
            model = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as e:
        raise CLIError(f"{args.model} is not a saved turbotsne model ({type(e).__name__}: {e}).") from None
    if not isinstance(model, TSNE) or not hasattr(model, "embedding_"):
        raise CLIError(f"{args.model} does not hold a fitted turbotsne.TSNE (got {type(model).__name__}).")
    X, labels, label_name = _read(args)
    kwargs = {k[10:]: v for k, v in vars(args).items() if k.startswith("transform_")}
    stack, _ = _progress_context(args)
    t0 = time.perf_counter()
    try:
        with stack:
            Y = model.transform(X, **kwargs)
    except NotImplementedError as e:
        raise CLIError(f"transform is not available: {e}") from None
    except TypeError as e:
        raise CLIError(f"transform does not accept these options: {e}") from None
    Y = np.asarray(Y)
    write_output(args.output, Y)
    print(f"{PROG}: placed {Y.shape[0]} new points in {time.perf_counter() - t0:.1f} s -> {args.output}",
          file=sys.stderr)
    if args.plot:
        _save_plot(args.plot, Y, labels, label_name, f"{os.path.basename(args.input)} on the model")
    return 0


#: the README's main job: exact t-SNE of scikit-learn's digits, seeded.
DEMO_DEFAULTS = {"negative_gradient_method": "exact", "random_state": 0, "n_jobs": -1}


def cmd_demo(args):
    """``turbotsne demo``: embed scikit-learn's handwritten digits and write a PNG coloured by digit.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed arguments of ``demo`` (t-SNE flags override ``DEMO_DEFAULTS``).

    Returns
    -------
    int
        The exit status (0).
    """
    from sklearn.datasets import load_digits

    _check_output(args.output, (".png", ".pdf", ".svg", ".jpg", ".jpeg"), "plot")
    X, y = load_digits(return_X_y=True)
    tsne, Y, elapsed = _fit(args, X, DEMO_DEFAULTS)
    method = _tsne_kwargs(args, DEMO_DEFAULTS)["negative_gradient_method"]
    title = f"digits, turbotsne ({method}): {elapsed:.1f} s, KL {tsne.kl_divergence_:.3f}"
    _save_plot(args.output, Y, y, "digit", title)
    print(f"{PROG}: embedded the {X.shape[0]} digits in {elapsed:.1f} s (KL divergence "
          f"{tsne.kl_divergence_:.4f}) -> {args.output}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- #
# parser
# --------------------------------------------------------------------------- #
class _Parser(argparse.ArgumentParser):
    """argparse with the error raised (so ``main`` returns the status instead of exiting)."""

    def error(self, message):
        raise CLIError(f"{self.prog}: error: {message}\n(see '{self.prog} --help')")


def _add_common(p, inputs=True):
    if inputs:
        p.add_argument("--key", help=".npz: the array to read (default: the first); .h5ad: use obsm[KEY] instead of X")
        p.add_argument("--labels", metavar="COL|FILE",
                       help="a column (name or index) of a .csv/.tsv/.parquet input, an array of a .npz, an obs "
                            "column of a .h5ad, taken out of the data; or a file of labels (.npy, or one per line); "
                            "used to colour --plot")
        p.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                       help=".csv/.tsv: whether the first line is a header (default: detected)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: only when stderr is a terminal)")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress messages on stderr")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")


def build_parser():
    """The ``argparse`` parser of the ``turbotsne`` command.

    Returns
    -------
    argparse.ArgumentParser
        With the sub-commands ``embed``, ``transform`` and ``demo``; its
        ``error`` raises :class:`CLIError` instead of exiting.
    """
    from . import __version__

    parser = _Parser(prog=PROG, description="Fast t-SNE from the command line.",
                     epilog="Run 'turbotsne COMMAND --help' for the options of a command.")
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    p = sub.add_parser("embed", help="embed a data file",
                       description="Fit t-SNE on INPUT and write the embedding to OUTPUT.")
    p.add_argument("input", help="data file: " + ", ".join(INPUT_FORMATS))
    p.add_argument("-o", "--output", required=True, help="embedding file: " + ", ".join(OUTPUT_FORMATS))
    p.add_argument("--plot", metavar="PNG", help="also write a scatter plot (needs matplotlib)")
    p.add_argument("--save-model", metavar="PATH", help="pickle the fitted TSNE (for 'turbotsne transform')")
    p.add_argument("--quality", action="store_true",
                   help="print a JSON quality report (trustworthiness, kNN preservation, KL, kNN accuracy) on stdout")
    p.add_argument("--quality-subsample", type=int, default=10_000, metavar="N",
                   help="points the quality report is computed on (default: %(default)s)")
    p.add_argument("--sample", type=int, metavar="N",
                   help="fit N sampled points here and place the rest on dask (needs the dask extra; "
                        "INPUT .zarr, .npy, .parquet or .h5ad (--key for an obsm entry), OUTPUT .zarr)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="with --sample: an existing dask scheduler (tcp://host:8786); default a local cluster")
    _add_common(p)
    _add_tsne_flags(p)
    p.set_defaults(func=cmd_embed)

    p = sub.add_parser("transform", help="map new points onto a saved model",
                       description="Map the points of INPUT onto the embedding of a saved model. "
                                   "Load only model files you trust: they are pickles.")
    p.add_argument("model", help="a model written by 'turbotsne embed --save-model'")
    p.add_argument("input", help="data file: " + ", ".join(INPUT_FORMATS))
    p.add_argument("-o", "--output", required=True, help="embedding file: " + ", ".join(OUTPUT_FORMATS))
    p.add_argument("--plot", metavar="PNG", help="also write a scatter plot of the new points")
    g = p.add_argument_group("transform parameters (passed to TSNE.transform when given)")
    g.add_argument("--perplexity", dest="transform_perplexity", type=float, default=argparse.SUPPRESS)
    g.add_argument("--n-iter", dest="transform_n_iter", type=int, default=argparse.SUPPRESS)
    g.add_argument("--learning-rate", dest="transform_learning_rate", type=_number_or(float, "auto"),
                   default=argparse.SUPPRESS)
    g.add_argument("--exaggeration", dest="transform_exaggeration", type=float, default=argparse.SUPPRESS)
    g.add_argument("--initialization", dest="transform_initialization", default=argparse.SUPPRESS)
    _add_common(p)
    p.set_defaults(func=cmd_transform)

    p = sub.add_parser("demo", help="embed scikit-learn's digits and write a PNG (the README's example)",
                       description="Embed scikit-learn's handwritten digits (exact t-SNE, random_state 0, "
                                   "all cores) and write a PNG coloured by digit.")
    p.add_argument("-o", "--output", default="digits_tsne.png", help="the PNG to write (default: %(default)s)")
    _add_common(p, inputs=False)
    _add_tsne_flags(p, DEMO_DEFAULTS)
    p.set_defaults(func=cmd_demo)
    return parser


def _error(message):
    text = message if message.startswith(PROG) else f"{PROG}: error: {message}"
    print(text, file=sys.stderr)


def main(argv=None):
    """Run the ``turbotsne`` command; returns the exit status.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 on usage and input errors, 1 on other errors, 130 on Ctrl-C.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except CLIError as e:
        _error(str(e))
        return e.code
    except SystemExit as e:  # --help, --version
        return 0 if e.code is None else int(e.code)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    try:
        return args.func(args)
    except CLIError as e:
        if args.debug:
            raise
        _error(str(e))
        return e.code
    except (ValueError, TypeError) as e:  # the library's parameter and data checks
        if args.debug:
            raise
        _error(str(e))
        return 2
    except KeyboardInterrupt:
        _error("interrupted")
        return 130
    except Exception as e:  # noqa: BLE001 - a command line reports, it does not dump tracebacks
        if args.debug:
            raise
        _error(f"{type(e).__name__}: {e} (run with --debug for the traceback)")
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
