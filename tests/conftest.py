import numpy as np
import pytest


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def make_clusters(n=600, n_features=10, n_clusters=5, seed=0, spread=0.5):
    """A generated clustered data set: well-separated Gaussian blobs."""
    r = np.random.default_rng(seed)
    centers = r.normal(scale=6.0, size=(n_clusters, n_features))
    labels = r.integers(0, n_clusters, size=n)
    X = centers[labels] + r.normal(scale=spread * 2, size=(n, n_features))
    return X, labels


@pytest.fixture
def without_optional_readers(monkeypatch):
    """``import pyarrow`` / ``import anndata`` fail as if the packages were not installed."""
    import builtins

    real_import = builtins.__import__

    def no_optional(name, *args, **kwargs):
        if name.split(".")[0] in ("pyarrow", "anndata"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_optional)


def assert_same_up_to_rounding(actual, expected):
    """Two transforms of the same points from the same state: equal to the last bits. Repeated
    transforms in one process have differed by up to ~2e-15 (relative) depending on what was
    allocated in between (an allocation-dependent rounding whose cause is not found; one case in
    docs/design/first_run.md), so exact equality would make these tests flaky; any real
    difference is many orders larger."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-12 * np.abs(expected).max())
