import io
import logging

import numpy as np
import pytest

from conftest import make_clusters
from turbotsne import TSNE, PerplexityBasedNN, TSNEEmbedding
from turbotsne.callbacks import Callback, ErrorLogger, ProgressBar, make_progress
from turbotsne.initialization import random as random_init


@pytest.fixture(scope="module")
def small():
    X, _ = make_clusters(n=150, n_features=5, seed=1)
    aff = PerplexityBasedNN(X, perplexity=10, method="exact")
    Y0 = random_init(X.shape[0], 2, random_state=0)
    return aff, Y0


class Recorder:
    """A progress hook that records what the optimiser hands it."""

    def __init__(self):
        self.calls = []

    def start(self, n_iter):
        self.calls.append(("start", n_iter))

    def update(self, iteration, kl=None):
        self.calls.append(("update", iteration, kl))

    def close(self):
        self.calls.append(("close",))


def test_progress_hook_gets_every_iteration_and_kl(small):
    aff, Y0 = small
    rec = Recorder()
    emb = TSNEEmbedding(Y0, aff, negative_gradient_method="bh", verbose=rec)
    emb.optimize(120, inplace=True)
    assert rec.calls[0] == ("start", 120)
    assert rec.calls[-1] == ("close",)
    updates = [c for c in rec.calls if c[0] == "update"]
    assert [u[1] for u in updates] == list(range(1, 121))
    with_kl = [u[1] for u in updates if u[2] is not None]
    assert with_kl == [50, 100, 120]  # verbose logs every 50, plus the last iteration
    assert updates[-1][2] == pytest.approx(emb.kl_divergence)


def test_progress_bar_draws_kl_and_count(small):
    aff, Y0 = small
    out = io.StringIO()
    bar = ProgressBar("phase", disable=False, file=out, mininterval=0)
    emb = TSNEEmbedding(Y0, aff, negative_gradient_method="bh", verbose=bar)
    emb.optimize(60, inplace=True)
    text = out.getvalue()
    assert "phase" in text
    assert "60/60" in text
    assert f"KL={emb.kl_divergence:.4f}" in text
    assert bar.n == 60 and bar.kl == pytest.approx(emb.kl_divergence)
    assert bar.bar is None  # closed


def test_progress_bar_closes_when_a_callback_stops(small):
    aff, Y0 = small
    bar = ProgressBar(disable=True)
    emb = TSNEEmbedding(Y0, aff, negative_gradient_method="bh", verbose=bar,
                        callbacks=lambda it, err, Y: it >= 20, callbacks_every_iters=10)
    emb.optimize(100, inplace=True)
    assert emb.n_iter == 20
    assert bar.n == 20 and bar.bar is None


def test_progress_bar_update_before_start_is_ignored():
    bar = ProgressBar(disable=True)
    bar.update(5, 1.0)
    assert bar.n == 0 and bar.kl is None
    with bar.start(10) as b:
        b.update(3, 2.5)
        assert (b.n, b.kl) == (3, 2.5)
    assert bar.bar is None


def test_make_progress():
    assert make_progress(False) is None
    assert make_progress(0) is None
    p = make_progress(True, 12.0)
    assert isinstance(p, ProgressBar) and "12" in p.desc
    rec = Recorder()
    assert make_progress(rec) is rec


def test_tsne_verbose_one_bar_per_phase(monkeypatch):
    import turbotsne.callbacks as cb

    made = []
    original = cb.ProgressBar

    class Spy(original):
        def __init__(self, desc=None, **kw):
            super().__init__(desc, disable=True)
            made.append(self)

    monkeypatch.setattr(cb, "ProgressBar", Spy)
    X, _ = make_clusters(n=120, n_features=4, seed=2)
    TSNE(perplexity=10, early_exaggeration_iter=30, n_iter=40, verbose=True, random_state=0,
         negative_gradient_method="bh").fit(X)
    assert [p.n for p in made] == [30, 40]
    assert "exaggeration 12" in made[0].desc and made[1].desc == "t-SNE"


def test_error_logger_logs_kl(small, caplog):
    aff, Y0 = small
    logger = ErrorLogger()
    emb = TSNEEmbedding(Y0, aff, negative_gradient_method="bh", callbacks=[logger], callbacks_every_iters=25)
    with caplog.at_level(logging.INFO, logger="turbotsne.callbacks"):
        emb.optimize(75, inplace=True)
    assert [it for it, _ in logger.history] == [25, 50, 75]
    assert logger.history[-1][1] == pytest.approx(emb.kl_divergence)
    msgs = [r.getMessage() for r in caplog.records if r.name == "turbotsne.callbacks"]
    assert len(msgs) == 3
    assert "Iteration   75" in msgs[-1] and f"{emb.kl_divergence:6.4f}" in msgs[-1]
    assert "25 iterations" in msgs[-1]
    assert all(np.isfinite(e) for _, e in logger.history)


def test_callback_about_to_start_called_each_phase(small):
    aff, Y0 = small

    class Counting(Callback):
        starts = 0

        def optimization_about_to_start(self):
            self.starts += 1

        def __call__(self, iteration, error, embedding):
            return False

    c = Counting()
    emb = TSNEEmbedding(Y0, aff, negative_gradient_method="bh", callbacks=c)
    emb.optimize(5, inplace=True)
    emb.optimize(5, inplace=True)
    assert c.starts == 2
