import numpy as np
import pytest

from turbotsne.optimizer import OptimizerState, _step
from turbotsne.options import resolve_learning_rate


def naive_step(Y, grad, update, gains, lr, momentum, max_grad_norm, max_step_norm):
    """openTSNE's update with scikit-learn's gains rule, written plainly."""
    Y, update, gains = Y.copy(), update.copy(), gains.copy()
    g = grad.copy()
    if max_grad_norm is not None:
        norm = np.linalg.norm(g, axis=1)
        big = norm > max_grad_norm
        g[big] *= (max_grad_norm / norm[big])[:, None]
    inc = update * g < 0
    gains[inc] += 0.2
    gains[~inc] *= 0.8
    np.clip(gains, 0.01, None, out=gains)
    update = momentum * update - lr * gains * g
    if max_step_norm is not None:
        norm = np.linalg.norm(update, axis=1)
        big = norm > max_step_norm
        update[big] *= (max_step_norm / norm[big])[:, None]
    return Y + update, update, gains


@pytest.mark.parametrize("clip", [(None, None), (0.5, None), (None, 0.3), (0.5, 0.3)])
def test_step_matches_naive_update(clip):
    r = np.random.default_rng(0)
    Y, grad, update = r.normal(size=(3, 200, 2))
    gains = r.uniform(0.005, 3, size=(200, 2))
    exp_Y, exp_u, exp_g = naive_step(Y, grad, update, gains, 7.0, 0.8, *clip)
    row_sq = np.empty(200)
    inf = np.inf
    _step(Y, grad, update, gains, 7.0, 0.8, inf if clip[0] is None else clip[0],
          inf if clip[1] is None else clip[1], row_sq)
    np.testing.assert_allclose(Y, exp_Y, rtol=1e-12)
    np.testing.assert_allclose(update, exp_u, rtol=1e-12)
    np.testing.assert_allclose(gains, exp_g, rtol=1e-12)
    np.testing.assert_allclose(row_sq, (grad ** 2).sum(1))


def test_auto_learning_rate():
    assert resolve_learning_rate("auto", 1200, 12.0) == 100.0
    assert resolve_learning_rate("auto", 1200, 1.0) == 1200.0
    assert resolve_learning_rate(33, 1200, 12.0) == 33.0


def test_state_copy_is_independent():
    s = OptimizerState((5, 2))
    c = s.copy()
    c.gains[0, 0] = 9
    assert s.gains[0, 0] == 1
