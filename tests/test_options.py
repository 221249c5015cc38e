"""OptimizeOptions and the one place that resolves "auto": rules, checks and messages."""
import numpy as np
import pytest
from sklearn.datasets import load_digits

from turbotsne import PerplexityBasedDense, TSNEEmbedding
from turbotsne.engine import NUMBA, AUTO_FFT_FROM, AUTO_FFT_FROM_2D_FIT
from turbotsne.initialization import pca
from turbotsne.options import (EMBEDDING_DEFAULTS, OptimizeOptions, check_method, early_exaggeration, resolve,
                               resolve_method)


def test_build_validates_and_normalises():
    o = OptimizeOptions.build("X.optimize", negative_gradient_method="BH", callbacks=print, exaggeration=4,
                              momentum=0.5)
    assert o.negative_gradient_method == "bh" and o.callbacks == (print,)
    assert o.exaggeration == 4.0 and isinstance(o.exaggeration, float) and o.momentum == 0.5
    with pytest.raises(TypeError, match=r"X.optimize got unexpected parameters \['thetta'\]"):
        OptimizeOptions.build("X.optimize", thetta=0.5)
    with pytest.raises(ValueError, match=r"The 'theta' parameter of X.optimize must be a float in the range "
                                         r"\[0.0, inf\)"):
        OptimizeOptions.build("X.optimize", theta=-1)
    with pytest.raises(ValueError, match="'momentum' parameter of X"):
        OptimizeOptions.build("X", momentum=1.5)
    with pytest.raises(ValueError, match="'device' parameter of X"):
        OptimizeOptions.build("X", device="gpu")
    with pytest.raises(AttributeError):  # frozen: one value handed down, never changed on the way
        o.theta = 0.1


def test_embedding_defaults_are_the_per_embedding_options():
    assert set(EMBEDDING_DEFAULTS) == set(OptimizeOptions.names()) - {"learning_rate", "exaggeration", "momentum"}
    assert EMBEDDING_DEFAULTS["negative_gradient_method"] == "auto" and EMBEDDING_DEFAULTS["max_step_norm"] == 5


@pytest.mark.parametrize("n, d, dense, reference, expected", [
    (AUTO_FFT_FROM_2D_FIT - 1, 2, False, False, "bh"),
    (AUTO_FFT_FROM_2D_FIT, 2, False, False, "fft"),
    (AUTO_FFT_FROM - 1, 2, False, True, "bh"),   # new points against a 2-D reference: its own threshold
    (AUTO_FFT_FROM, 2, False, True, "fft"),
    (AUTO_FFT_FROM - 1, 1, False, False, "bh"),
    (AUTO_FFT_FROM, 1, False, False, "fft"),
    (AUTO_FFT_FROM, 3, False, False, "fft"),
    (AUTO_FFT_FROM, 3, False, True, "bh"),   # new points against a 3-D reference stay on Barnes-Hut
    (AUTO_FFT_FROM, 1, False, True, "fft"),
    (500, 4, False, False, "exact"),
    (50_000, 2, True, False, "exact"),       # a dense P only has the exact method
])
def test_auto_method_on_the_cpu(n, d, dense, reference, expected):
    assert resolve_method("auto", n, d, NUMBA, dense=dense, reference=reference) == expected


def test_auto_method_on_torch():
    torch = pytest.importorskip("torch")
    from turbotsne.engine import TorchEngine

    engine = TorchEngine(torch.device("cpu"))
    assert resolve_method("auto", 500, 2, engine) == "fft"
    assert resolve_method("auto", 500, 3, engine, reference=True) == "fft"
    assert resolve_method("auto", 500, 5, engine) == "exact"
    with pytest.raises(ValueError, match="'bh' is not available with backend='torch'"):
        resolve_method("barneshut", 500, 2, engine)


def test_check_method_messages():
    with pytest.raises(ValueError, match="dense P is only supported by the exact method"):
        check_method("fft", 2, NUMBA, dense=True)
    with pytest.raises(ValueError, match="'fft' supports n_components of 1, 2 or 3 only"):
        check_method("fft", 4, NUMBA)
    with pytest.raises(ValueError, match="'bh' supports at most 3 embedding dimensions.*'exact'"):
        check_method("bh", 4, NUMBA)
    check_method("bh", 4, NUMBA, theta=0)  # theta = 0 is the exact sum, in any dimension
    check_method("exact", 7, NUMBA)


def test_resolve_learning_rate_and_exaggeration():
    o = resolve(OptimizeOptions(), 1200, 2, NUMBA)
    assert (o.negative_gradient_method, o.exaggeration, o.learning_rate) == ("bh", 1.0, 1200.0)
    o = resolve(OptimizeOptions(exaggeration=12, learning_rate="auto"), 1200, 2, NUMBA)
    assert (o.exaggeration, o.learning_rate) == (12.0, 100.0)
    assert resolve(OptimizeOptions(learning_rate=33), 1200, 2, NUMBA).learning_rate == 33.0
    assert resolve(OptimizeOptions(exaggeration=12), 5, 2, NUMBA).learning_rate == 1.0  # at least 1
    assert early_exaggeration("auto", None) == 12.0
    assert early_exaggeration("auto", 20) == 20.0
    assert early_exaggeration(4, 20) == 4.0


def test_dense_affinities_optimise_with_the_default_method():
    # "auto" on a dense P means the exact method (it used to pick Barnes-Hut and refuse the dense P)
    X = load_digits().data[:300]
    emb = TSNEEmbedding(pca(X, 2, random_state=0), PerplexityBasedDense(X, 20))
    out = emb.optimize(20, exaggeration=12)
    assert np.all(np.isfinite(np.asarray(out))) and out.kl_divergence > 0
    ref = TSNEEmbedding(pca(X, 2, random_state=0), emb.affinities, negative_gradient_method="exact")
    np.testing.assert_array_equal(np.asarray(ref.optimize(20, exaggeration=12)), np.asarray(out))
