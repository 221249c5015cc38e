"""The PyTorch backend: the same pipeline on torch tensors, on a CUDA device or on the CPU.

Two keyword-only parameters, on :class:`turbotsne.TSNE`, the embedding API and
:class:`turbotsne.PerplexityBasedNN`, choose where the work runs:

``device``: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"auto"`` (a CUDA
    device when PyTorch is installed and sees one, else the CPU) or a
    ``torch.device``.
``backend``: ``"auto"`` (default: torch on a CUDA device, numba on the CPU),
    ``"numba"`` (the CPU kernels; CPU only) or ``"torch"`` (this package, also
    on the CPU: that is how CI tests it).

PyTorch is the optional ``gpu`` extra (``pip install "turbotsne[gpu]"``); it is
imported only when a torch engine is asked for, never at ``import turbotsne``.

On a torch engine: exact kNN by tiled brute force (:mod:`.neighbors`), the
perplexity search vectorised over all points and P symmetrised as a sparse
tensor (:mod:`.affinity`), PCA initialisation (:mod:`.initialization`), the
optimiser's step (:mod:`.optimizer`) and the exact and FFT-interpolation
gradients (:mod:`.gradients`) run on the device in float32. The embedding
objects keep their coordinates as NumPy arrays between ``optimize`` calls, so
everything else (callbacks, ``transform``, ``save``) is unchanged.
"""
from __future__ import annotations

import re

#: accepted values of ``backend``
BACKENDS = ("auto", "numba", "torch")
_DEVICE_RE = re.compile(r"^(cpu|cuda|auto|cuda:\d+)$")
_INSTALL_HINT = 'pip install "turbotsne[gpu]"'


class Engine:
    """Where an optimisation runs: ``kind`` is "numba" or "torch"; ``device`` a ``torch.device`` (torch only)."""

    def __init__(self, kind, device=None):
        self.kind = kind
        self.device = device

    @property
    def is_torch(self):
        return self.kind == "torch"

    @property
    def dtype(self):
        """Working precision of the torch path (float32)."""
        import torch

        return torch.float32

    def __repr__(self):
        return f"Engine({self.kind!r}, device={str(self.device) if self.device is not None else 'cpu'!r})"

    def __str__(self):
        return f"{self.kind} on {self.device if self.device is not None else 'cpu'}"

    def __eq__(self, other):
        return isinstance(other, Engine) and (self.kind, str(self.device)) == (other.kind, str(other.device))

    def __hash__(self):
        return hash((self.kind, str(self.device)))


NUMBA = Engine("numba")


def _import_torch(device, owner):
    try:
        import torch
    except ImportError:
        raise ImportError(
            f"{owner}: device={device!r} / backend='torch' needs PyTorch, which is not installed. "
            f"Install the GPU extra: {_INSTALL_HINT}") from None
    return torch


def check_device_backend(device, backend, owner):
    """Validate the form of ``device`` and ``backend`` (no torch import); returns them normalised."""
    if not isinstance(backend, str) or backend not in BACKENDS:
        raise ValueError(f"The 'backend' parameter of {owner} must be one of {list(BACKENDS)}. "
                         f"Got {backend!r} instead.")
    if type(device).__module__ == "torch" and type(device).__name__ == "device":
        device = str(device)
    if not isinstance(device, str) or not _DEVICE_RE.match(device):
        raise ValueError(f"The 'device' parameter of {owner} must be 'cpu', 'cuda', 'cuda:N', 'auto' or a "
                         f"torch.device. Got {device!r} instead.")
    if backend == "numba" and device.startswith("cuda"):
        raise ValueError(f"{owner}: backend='numba' runs on the CPU only, but device={device!r}. "
                         "Use backend='torch' (or 'auto') for a CUDA device.")
    return device, backend


def resolve_engine(device="cpu", backend="auto", owner="TSNE"):
    """The :class:`Engine` that ``device`` and ``backend`` name (see the module docstring).

    Raises ``ImportError`` (naming the ``gpu`` extra) when torch is needed but
    missing, and ``ValueError`` when a CUDA device is asked for but PyTorch
    sees none (or not that many). ``device="auto"`` never raises: it falls
    back to the CPU, where ``backend="auto"`` means numba.
    """
    device, backend = check_device_backend(device, backend, owner)
    if device == "auto":
        device = "cuda" if backend != "numba" and cuda_available() else "cpu"
    if device == "cpu" and backend in ("auto", "numba"):
        return NUMBA
    torch = _import_torch(device, owner)
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"{owner}: device={device!r} was asked for, but PyTorch sees no CUDA device "
                             "(torch.cuda.is_available() is False). Use device='cpu', or device='auto' to "
                             "fall back to the CPU.")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise ValueError(f"{owner}: device={device!r} was asked for, but PyTorch sees only "
                             f"{torch.cuda.device_count()} CUDA device(s).")
    return Engine("torch", torch.device(device))


def cuda_available():
    """Whether PyTorch is installed and sees a CUDA device (False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def resolve_auto(n_samples, n_components):
    """What ``negative_gradient_method="auto"`` stands for on a torch engine.

    FFT interpolation in 1-3 dimensions at every size (on a GPU the grid
    convolution costs about the same at any N, and there is no Barnes-Hut
    tree on torch); the exact gradient above 3 dimensions.
    """
    return "exact" if n_components > 3 else "fft"
