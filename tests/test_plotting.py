import subprocess
import sys
import time

import numpy as np
import pytest

mpl = pytest.importorskip("matplotlib")
mpl.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import turbotsne  # noqa: E402
from turbotsne import plotting  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def blobs(n, d, seed=0):
    r = np.random.default_rng(seed)
    labels = r.integers(0, 5, size=n)
    Y = r.normal(size=(n, d)) + 4 * np.eye(5, d)[labels]
    return Y, labels


def legend_texts(ax):
    leg = ax.get_legend()
    return [] if leg is None else [t.get_text() for t in leg.get_texts()]


def test_import_does_not_import_matplotlib():
    code = "import sys, turbotsne; assert turbotsne.plot; print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_2d_without_labels():
    Y, _ = blobs(1000, 2)
    ax = turbotsne.plot(Y)
    (coll,) = ax.collections
    assert coll.get_offsets().shape == (1000, 2)
    assert coll.get_rasterized()
    assert coll.get_sizes()[0] == pytest.approx(plotting.default_marker_size(1000))
    assert ax.get_legend() is None


def test_2d_categorical_labels_get_a_legend_and_colours():
    Y, labels = blobs(800, 2)
    names = np.array(["a", "b", "c", "d", "e"])[labels]
    ax = turbotsne.plot(Y, names, title="blobs")
    assert legend_texts(ax) == ["a", "b", "c", "d", "e"]
    assert ax.get_title() == "blobs"
    (coll,) = ax.collections
    colours = coll.get_facecolors()
    assert len(np.unique(colours[:, :3].round(6), axis=0)) == 5
    # points are drawn in a shuffled order, colours follow them
    offsets = coll.get_offsets()
    i = int(np.flatnonzero((Y == offsets[0]).all(axis=1))[0])
    assert np.allclose(colours[0, :3], plotting._palette(5)[labels[i]])


def test_2d_continuous_labels_get_a_colorbar():
    Y, _ = blobs(500, 2)
    values = Y[:, 0] * 3.7
    ax = turbotsne.plot(Y, values, label_name="x")
    assert ax.get_legend() is None
    assert len(ax.figure.axes) == 2  # the plot and its colour bar
    assert ax.figure.axes[1].get_ylabel() == "x"


def test_many_integer_classes_are_continuous_few_are_categorical():
    Y, _ = blobs(600, 2)
    many = np.arange(600) % 50
    ax = turbotsne.plot(Y, many)
    assert ax.get_legend() is None and len(ax.figure.axes) == 2
    ax2 = turbotsne.plot(Y, many % 12)
    assert len(legend_texts(ax2)) == 12
    strings = np.array([f"c{i}" for i in many])  # 50 string categories: colours, no legend
    ax3 = turbotsne.plot(Y, strings)
    assert ax3.get_legend() is None
    assert len(np.unique(ax3.collections[0].get_facecolors()[:, :3].round(6), axis=0)) == 50


def test_sizes_and_alpha_shrink_with_n():
    assert plotting.default_marker_size(1000) > plotting.default_marker_size(100_000) > \
        plotting.default_marker_size(1_000_000) > 0
    assert 1 >= plotting.default_alpha(1000) > plotting.default_alpha(1_000_000) > 0


def test_1d_heatmap_strip():
    Y, labels = blobs(700, 1)
    ax = turbotsne.plot(Y[:, 0], labels)
    (im,) = ax.images
    arr = im.get_array()
    assert arr.shape[0] == 1 and arr.shape[2] == 4 and arr.shape[1] >= 200
    assert legend_texts(ax) == [str(i) for i in range(5)]
    x0, x1, _, _ = im.get_extent()
    assert x0 == pytest.approx(Y.min()) and x1 == pytest.approx(Y.max())
    ax2 = turbotsne.plot(Y)  # density strip
    assert len(ax2.images) == 1
    ax3 = turbotsne.plot(Y, Y[:, 0] ** 2)
    assert len(ax3.figure.axes) == 2


def test_3d_scatter_with_and_without_labels():
    Y, labels = blobs(600, 3)
    ax = turbotsne.plot(Y, labels)
    assert ax.name == "3d"
    assert legend_texts(ax) == [str(i) for i in range(5)]
    ax2 = turbotsne.plot(Y)
    assert ax2.name == "3d" and len(ax2.collections) == 1
    # on given 2-D axes: projected
    fig, flat = plt.subplots()
    assert turbotsne.plot(Y, labels, ax=flat) is flat
    assert flat.collections[0].get_offsets().shape == (600, 2)


def test_accepts_an_embedding_object():
    from turbotsne import PerplexityBasedNN, TSNEEmbedding

    Y, _ = blobs(100, 2)
    emb = TSNEEmbedding(Y, PerplexityBasedNN(Y, perplexity=5, method="exact"))
    ax = turbotsne.plot(emb)
    assert np.allclose(np.sort(ax.collections[0].get_offsets()[:, 0]), np.sort(Y[:, 0]))


def test_large_n_density_path_is_quick():
    Y, labels = blobs(200_000, 2, seed=1)
    t0 = time.perf_counter()
    ax = turbotsne.plot(Y, labels)
    ax.figure.canvas.draw()
    elapsed = time.perf_counter() - t0
    assert len(ax.images) == 1 and not ax.collections
    assert legend_texts(ax) == [str(i) for i in range(5)]
    img = ax.images[0].get_array()
    assert img.shape[2] == 4 and img[..., 3].max() == pytest.approx(1.0)
    assert elapsed < 20
    ax2 = turbotsne.plot(Y)
    assert len(ax2.images) == 1
    ax3 = turbotsne.plot(Y, Y[:, 0])
    assert len(ax3.images) == 1 and len(ax3.figure.axes) == 2


def test_density_can_be_forced_and_turned_off():
    Y, labels = blobs(300, 2)
    ax = turbotsne.plot(Y, labels, density=True, gridsize=50)
    assert ax.images[0].get_array().shape[1] <= 51


def test_errors():
    with pytest.raises(ValueError, match="1, 2 or 3 components"):
        turbotsne.plot(np.zeros((10, 4)))
    with pytest.raises(ValueError, match="labels must be a 1-D array of length 10"):
        turbotsne.plot(np.zeros((10, 2)), np.arange(9))
    with pytest.raises(ValueError, match="NaN"):
        turbotsne.plot(np.full((10, 2), np.nan))
    with pytest.raises(ValueError, match="density must be"):
        turbotsne.plot(np.zeros((10, 2)), density="yes")
