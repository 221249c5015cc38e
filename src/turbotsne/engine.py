"""Where the work runs: one engine object, resolved once, that owns every per-engine operation.

:func:`resolve_engine` turns the user's ``device`` / ``backend`` into a :class:`NumbaEngine`
(the CPU kernels; the default) or a :class:`TorchEngine` (PyTorch tensors on a CUDA device or
on the CPU). ``fit``, ``optimize``, ``transform`` and the affinity classes resolve it once and
call its methods: the neighbour index on the device, conditional probabilities, the
symmetrisation, a dense P, PCA, the optimiser's array operations, the gradient backend and
what "auto" means for the gradient method. No other module asks which engine it holds.

``device``: ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"``, ``"auto"`` (a CUDA device when
PyTorch sees one, else the CPU) or a ``torch.device``. ``backend``: ``"auto"`` (torch on a CUDA
device, numba on the CPU), ``"numba"`` (CPU only) or ``"torch"``. PyTorch is the optional
``gpu`` extra, imported only when a torch engine is asked for, never at ``import turbotsne``.
"""
from __future__ import annotations

import contextlib
import re

import numpy as np
import scipy.sparse as sp

from ._config import thread_limit

#: accepted values of ``backend``
BACKENDS = ("auto", "numba", "torch")
_DEVICE_RE = re.compile(r"^(cpu|cuda|auto|cuda:\d+)$")
_INSTALL_HINT = 'pip install "turbotsne[gpu]"'

#: below this many points "auto" picks Barnes-Hut on the CPU, from it on FFT interpolation (1-3 dimensions)
AUTO_FFT_FROM = 10_000
#: the same for a 2-D fit, whose Barnes-Hut traversal walks the tree per group of points (the two
#: methods tie near 15,000 MNIST points: BENCHMARKS.md, "Barnes-Hut grouped traversal")
AUTO_FFT_FROM_2D_FIT = 15_000


class _Engine:
    """What both engines share: identity (``kind``, ``device``) and the gradient-method rules."""

    kind = ""
    device = None
    #: the gradient methods this engine has
    methods = ()
    #: whether an embedding keeps its gradient backend (and the device copy of P) between ``optimize`` calls
    keeps_backend = False

    def __repr__(self):
        return f"Engine({self.kind!r}, device={str(self.device) if self.device is not None else 'cpu'!r})"

    def __str__(self):
        return f"{self.kind} on {self.device if self.device is not None else 'cpu'}"

    def __eq__(self, other):
        return isinstance(other, _Engine) and (self.kind, str(self.device)) == (other.kind, str(other.device))

    def __hash__(self):
        return hash((self.kind, str(self.device)))

    @property
    def params(self):
        """``device`` / ``backend`` keywords that name this engine again (for the stages it builds)."""
        return {"device": str(self.device) if self.device is not None else "cpu", "backend": self.kind}

    def check_method(self, method):
        """Refuse a canonical method this engine does not have."""
        if method not in self.methods:
            raise ValueError(f"negative_gradient_method={method!r} is not available with backend={self.kind!r}; "
                             f"use one of {list(self.methods)}.")

    def dense_squared_distances(self, data, metric, metric_params, n_jobs):
        from sklearn.metrics import pairwise_distances

        # pairwise_distances is not split over jobs: its chunking would make P depend on n_jobs.
        if metric == "precomputed":
            return np.asarray(data, dtype=np.float64) ** 2
        if metric == "euclidean":
            return pairwise_distances(data, metric="euclidean", squared=True)
        return pairwise_distances(data, metric=metric, **(metric_params or {})) ** 2


class NumbaEngine(_Engine):
    """The CPU kernels (numba, scipy.fft) on NumPy arrays."""

    kind = "numba"
    methods = ("exact", "bh", "fft")

    def auto_method(self, n_samples, n_components, *, dense=False, reference=False):
        """``negative_gradient_method="auto"``: exact for a dense P or more than 3 components;
        Barnes-Hut below :data:`AUTO_FFT_FROM` points (:data:`AUTO_FFT_FROM_2D_FIT` for a 2-D fit),
        FFT interpolation from there on; new points against a 3-D reference stay on Barnes-Hut
        (the reference FFT has no near field, so its capped 3-D grid would be coarse)."""
        if dense or n_components > 3:
            return "exact"
        threshold = AUTO_FFT_FROM_2D_FIT if n_components == 2 and not reference else AUTO_FFT_FROM
        if n_samples < threshold or (reference and n_components == 3):
            return "bh"
        return "fft"

    def gradient_backend(self, method, P, options, *, n_components, reference=None):
        """The gradient backend of ``method`` for ``P`` (:func:`turbotsne.gradients.make_backend`);
        with ``reference`` (a fixed ``(m, d)`` embedding) new points are optimised against it."""
        from .gradients import make_backend

        return make_backend(method, P, reference=reference, n_samples=P.shape[0], n_components=n_components,
                            **options.repulsion_params)

    def neighbors_for(self, neighbors, metric, metric_params, sparse, n_jobs):
        return neighbors

    def to_numpy(self, a):
        return a

    def knn_indices(self, indices):
        from .affinity_kernels import index_dtype

        return indices.astype(index_dtype(*indices.shape), copy=False)

    def conditional_probabilities(self, sq_distances, perplexity, n_jobs):
        from .affinity_kernels import conditional_probabilities

        return conditional_probabilities(sq_distances, perplexity, n_jobs=n_jobs, overwrite=True)

    def symmetrize(self, conditional, indices, dtype, n_jobs):
        """``(P + P^T) / sum`` as CSR, built in the conditionals' memory (converted to ``dtype`` first)."""
        from .affinity_kernels import symmetrize

        return symmetrize(np.asarray(conditional, dtype=dtype), indices, overwrite=True, n_jobs=n_jobs)

    def dense_joint_probabilities(self, data, metric, metric_params, perplexity, n_jobs):
        from .affinity_kernels import joint_probabilities_dense

        D = self.dense_squared_distances(data, metric, metric_params, n_jobs)
        return joint_probabilities_dense(D, perplexity, n_jobs=n_jobs)

    def pca(self, X, n_components, random_state):
        from .initialization import pca

        return pca(X, n_components, random_state=random_state)

    @contextlib.contextmanager
    def optimizer_arrays(self, embedding, state):
        """``(Y, state, ops)`` for one ``optimize`` call: here the embedding's own arrays."""
        from .optimizer import NumpyOps

        yield embedding, state, NumpyOps


class TorchEngine(_Engine):
    """PyTorch tensors on ``device`` in float32 (a CUDA device, or torch's CPU build)."""

    kind = "torch"
    methods = ("exact", "fft")
    keeps_backend = True

    def __init__(self, device):
        self.device = device

    @property
    def dtype(self):
        """Working precision (float32)."""
        import torch

        return torch.float32

    @property
    def on_cuda(self):
        return self.device.type == "cuda"

    def check_method(self, method):
        if method == "bh":
            raise ValueError("negative_gradient_method='bh' is not available with backend='torch'; use 'fft' or "
                             "'exact' (there is no Barnes-Hut tree on torch), or backend='numba'.")
        super().check_method(method)

    def auto_method(self, n_samples, n_components, *, dense=False, reference=False):
        """``"auto"`` on torch: FFT interpolation in 1-3 dimensions at every size (on a GPU the grid
        convolution costs about the same at any N, and there is no Barnes-Hut tree), exact for a
        dense P or more than 3 components."""
        return "exact" if dense or n_components > 3 else "fft"

    def neighbors_for(self, neighbors, metric, metric_params, sparse, n_jobs):
        """The device's brute force for ``"exact"`` (and ``"auto"`` on CUDA) where the metric allows it."""
        from .gpu.neighbors import TorchExact

        wanted = neighbors == "exact" or (neighbors == "auto" and self.on_cuda)
        if wanted and not metric_params and TorchExact.supports(metric, sparse):
            return TorchExact(metric, n_jobs=n_jobs, device=self.device)
        return neighbors

    def knn_indices(self, indices):
        return indices

    def to_numpy(self, a):
        return a if isinstance(a, np.ndarray) else a.cpu().numpy()

    def gradient_backend(self, method, P, options, *, n_components, reference=None):
        """The torch gradient backend (:func:`turbotsne.gpu.gradients.make_backend`) on this device."""
        from .gpu.gradients import make_backend

        return make_backend(method, P, reference=reference, device=self.device, dtype=self.dtype,
                            n_components=n_components, **options.repulsion_params)

    def conditional_probabilities(self, sq_distances, perplexity, n_jobs):
        from .gpu import affinity as torch_affinity

        with thread_limit(n_jobs):
            return torch_affinity.conditional_probabilities(sq_distances, perplexity, self.device)

    def symmetrize(self, conditional, indices, dtype, n_jobs):
        from .gpu import affinity as torch_affinity

        return torch_affinity.symmetrize(conditional, indices)

    def dense_joint_probabilities(self, data, metric, metric_params, perplexity, n_jobs):
        from .gpu import affinity as torch_affinity

        with thread_limit(n_jobs):
            if metric in ("euclidean", "sqeuclidean", "cosine") and not metric_params and not sp.issparse(data):
                D = torch_affinity.squared_distances(data, metric, self.device)
            else:
                D = self.dense_squared_distances(data, metric, metric_params, n_jobs)
            return torch_affinity.joint_probabilities_dense(D, perplexity, self.device)

    def pca(self, X, n_components, random_state):
        """On the device for dense X with more samples and features than components, else the CPU's."""
        n = X.shape[0]
        if not sp.issparse(X) and n > n_components and X.shape[1] >= n_components:
            from .gpu.initialization import pca

            return pca(X, n_components, self.device)
        return NUMBA.pca(X, n_components, random_state)

    @contextlib.contextmanager
    def optimizer_arrays(self, embedding, state):
        """Device copies of the positions and optimiser state, written back on exit (also on error)."""
        from .gpu.optimizer import DeviceRun, TorchOps

        with DeviceRun(self, embedding, state) as run:
            yield run.Y, run.state, TorchOps


NUMBA = NumbaEngine()


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
    """The engine that ``device`` and ``backend`` name (see the module docstring).

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
    return TorchEngine(torch.device(device))


def cuda_available():
    """Whether PyTorch is installed and sees a CUDA device (False without torch)."""
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())
