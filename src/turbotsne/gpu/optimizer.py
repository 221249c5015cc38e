"""The optimiser's array operations on torch tensors (the loop itself is shared).

:func:`turbotsne.optimizer.gradient_descent` runs unchanged on a torch engine
with :class:`TorchOps`: the same momentum, delta-bar-delta gains (+0.2 / x0.8,
floor 0.01), per-point gradient and step clipping and re-centring as the
numba ``_step``, vectorised over points. :class:`DeviceRun` moves the positions
and the optimiser state to the device for one ``optimize`` call and back.
"""
from __future__ import annotations

import numpy as np
import torch

from ..optimizer import GAIN_DECAY, GAIN_INCREASE, MIN_GAIN


class TorchOps:
    """:class:`turbotsne.optimizer.NumpyOps` on tensors."""

    @staticmethod
    def buffers(Y):
        return torch.empty_like(Y), torch.empty(Y.shape[0], dtype=Y.dtype, device=Y.device)

    @staticmethod
    def step(Y, grad, state, learning_rate, momentum, max_grad_norm, max_step_norm, row_sq):
        torch.sum(grad * grad, dim=1, out=row_sq)
        g = grad
        if np.isfinite(max_grad_norm):
            scale = torch.clamp(max_grad_norm / torch.sqrt(row_sq), max=1.0)
            g = grad * scale[:, None]
        gains, update = state.gains, state.update
        grows = (update * g) < 0
        torch.where(grows, gains + GAIN_INCREASE, torch.clamp(gains * GAIN_DECAY, min=MIN_GAIN), out=gains)
        update.mul_(momentum).sub_(learning_rate * gains * g)
        if np.isfinite(max_step_norm):
            u2 = torch.sum(update * update, dim=1)
            update.mul_(torch.clamp(max_step_norm / torch.sqrt(u2), max=1.0)[:, None])
        Y.add_(update)

    @staticmethod
    def recentre(Y):
        Y.sub_(Y.mean(dim=0))

    @staticmethod
    def grad_norm(row_sq):
        return float(torch.sqrt(row_sq.sum()))

    @staticmethod
    def to_numpy(Y):
        return Y.detach().to("cpu", torch.float64).numpy().copy()


class _TensorState:
    def __init__(self, gains, update):
        self.gains, self.update = gains, update


class DeviceRun:
    """Context for one ``optimize`` call on a torch engine.

    On entry, ``Y`` and ``state`` hold device tensors of the embedding's
    coordinates and optimiser state; on exit (also on error or Ctrl-C) they are
    written back into the embedding's NumPy arrays.
    """

    def __init__(self, engine, embedding, optimizer_state):
        self.engine = engine
        self.embedding, self.optimizer_state = embedding, optimizer_state

    def _to(self, a):
        return torch.as_tensor(a).to(device=self.engine.device, dtype=self.engine.dtype).contiguous()

    def __enter__(self):
        self.Y = self._to(self.embedding)
        self.state = _TensorState(self._to(self.optimizer_state.gains), self._to(self.optimizer_state.update))
        return self

    def __exit__(self, *exc):
        for dst, src in ((self.embedding, self.Y), (self.optimizer_state.gains, self.state.gains),
                         (self.optimizer_state.update, self.state.update)):
            dst[...] = src.detach().to("cpu", torch.float64).numpy()
        return False
