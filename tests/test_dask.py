"""turbotsne.dask: placement of dask arrays on a cluster equals the in-process transform; the recipe."""
import os
import sys

import numpy as np
import pytest

from conftest import make_clusters

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")

from turbotsne import TSNE  # noqa: E402

FIT = dict(negative_gradient_method="bh", neighbors="exact", random_state=0, n_iter=80, early_exaggeration_iter=40)
PLACE = dict(n_iter=60)


def assert_same_placement(actual, expected):
    # per point, so equal to the in-process transform; a worker's copy of the model can round a
    # vectorised sum differently (~1e-15), hence a tolerance far below any visible difference
    np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-12 * np.abs(expected).max())


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0")
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():
    X, y = make_clusters(1000, 8, n_clusters=4, seed=11)
    model = TSNE(**FIT).fit(X[:400])
    return X, y, model


def test_import_turbotsne_does_not_import_dask():
    import subprocess

    code = "import sys, turbotsne; sys.exit('dask' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_dask_transform_equals_in_process_transform(client, data):
    X, _, model = data
    new = X[400:]
    expected = model.transform(new, **PLACE)
    Y = model.transform(da.from_array(new, chunks=(130, 8)), **PLACE)
    assert isinstance(Y, da.Array) and Y.chunks == ((130, 130, 130, 130, 80), (2,))
    # the model is one task of the graph, shared by every block (sent to each worker once)
    assert len(Y.__dask_graph__()) == 2 * Y.numblocks[0] + 1
    assert_same_placement(Y.compute(), expected)
    # the embedding object's transform, likewise
    emb = model.tsne_embedding_
    assert_same_placement(emb.transform(da.from_array(new, chunks=(200, 8)), **PLACE).compute(),
                          np.asarray(emb.transform(new, **PLACE)))


def test_the_workers_receive_the_model_without_the_fits_P(data):
    from turbotsne.dask import _for_placement

    _, _, model = data
    P = model.tsne_embedding_.affinities.P
    for fitted in (model, model.tsne_embedding_):
        light = _for_placement(fitted)
        shipped = getattr(light, "tsne_embedding_", light).affinities.P
        assert shipped.nnz == 0 and shipped.shape == P.shape
    assert model.tsne_embedding_.affinities.P is P and P.nnz > 0  # the caller's model keeps its P


def test_fft_placement_agrees_with_the_one_batch_transform(client, data):
    # the FFT grid spans the reference and the batch's points: chunks agree to rounding, not bit for bit
    X, _, _ = data
    model = TSNE(**{**FIT, "negative_gradient_method": "fft"}).fit(X[:400])
    new = X[400:]
    Y = model.transform(da.from_array(new, chunks=(150, 8)), **PLACE).compute()
    np.testing.assert_allclose(Y, model.transform(new, **PLACE), rtol=0, atol=1e-9)


def test_threads_of_a_worker_share_numba_without_a_thread_safe_layer(data):
    # numba's workqueue layer aborts the process when two threads launch parallel kernels at once:
    # blocks placed by the threads of one worker take turns there
    X, _, model = data
    new = X[400:800]
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=True, dashboard_address=":0",
                                  env={"NUMBA_THREADING_LAYER": "workqueue"}) as cluster, \
            distributed.Client(cluster) as c:
        assert set(c.run(lambda: os.environ.get("NUMBA_THREADING_LAYER")).values()) == {"workqueue"}
        Y = model.transform(da.from_array(new, chunks=(25, 8)), **PLACE)
        assert_same_placement(c.compute(Y).result(), model.transform(new, **PLACE))


def test_dask_dataframe_input(client, data):
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    X, _, model = data
    new = X[400:700]
    frame = dd.from_pandas(pd.DataFrame(new, columns=[f"f{i}" for i in range(8)]), npartitions=3)
    assert_same_placement(model.transform(frame, **PLACE).compute(), model.transform(new, **PLACE))


def test_a_worker_killed_mid_run_still_gives_the_whole_result(client, data):
    X, _, model = data
    new = X[400:]
    expected = model.transform(new, **PLACE)
    Y = model.transform(da.from_array(new, chunks=(25, 8)), **PLACE)
    blocks = client.compute(list(Y.to_delayed().ravel()))
    next(distributed.as_completed(blocks))  # the run has started
    victim = sorted(client.scheduler_info()["workers"])[0]
    client.restart_workers([victim])  # the process is killed and its nanny starts a new one
    result = np.concatenate(client.gather(blocks))
    assert_same_placement(result, expected)


def test_bad_input_is_refused_before_work(client, data):
    X, _, model = data
    with pytest.raises(ValueError, match="X has 5 features, but the model was fitted with 8"):
        model.transform(da.from_array(X[:, :5], chunks=(100, 5)))
    unknown = da.from_array(X, chunks=(100, 8))
    unknown = unknown[unknown[:, 0] > -1e9]
    with pytest.raises(ValueError, match=r"unknown chunk sizes; call X.compute_chunk_sizes\(\)"):
        model.transform(unknown)
    with pytest.raises(ValueError, match="must be numeric"):
        model.transform(da.from_array(np.array([["a"] * 8] * 10), chunks=(5, 8)))
    bad = X[400:500].copy()
    bad[7, 3] = np.nan
    lazy = model.transform(da.from_array(bad, chunks=(50, 8)), **PLACE)  # NaN shows when its block runs
    with pytest.raises(ValueError, match="Input X contains NaN"):
        lazy.compute()


def test_embed_recipe_on_a_zarr_store(client, data, tmp_path):
    pytest.importorskip("zarr")
    pytest.importorskip("matplotlib")
    from turbotsne.dask import embed

    X, y, _ = data
    source = str(tmp_path / "x.zarr")
    da.from_array(X, chunks=(250, 8)).to_zarr(source)
    result = embed(source, sample_size=300, output=str(tmp_path / "y.zarr"), plot=str(tmp_path / "y.png"),
                   scheduler=client.scheduler.address, labels=y, progress=False, transform_params=PLACE, **FIT)
    Y = result.embedding.compute()
    assert Y.shape == (1000, 2) and np.all(np.isfinite(Y))
    np.testing.assert_array_equal(Y[result.sample], result.model.embedding_)  # the sample keeps its fit
    rest = np.setdiff1d(np.arange(1000), result.sample)
    assert_same_placement(Y[rest], result.model.transform(X[rest], n_jobs=1, **PLACE))
    assert (tmp_path / "y.png").stat().st_size > 0
    assert 0.9 < result.quality["knn_accuracy"] <= 1.0 and set(result.timings) >= {"fit_s", "place_s"}


def test_embed_from_parquet_kept_lazy_with_a_plot(client, data, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    pytest.importorskip("matplotlib")
    from turbotsne.dask import embed

    X, y, _ = data
    source = tmp_path / "x.parquet"
    pd.DataFrame(X[:600], columns=[f"f{i}" for i in range(8)]).to_parquet(source)
    result = embed(source, sample_size=250, scheduler=client.scheduler.address, labels=da.from_array(y[:600]),
                   plot=str(tmp_path / "y.png"), progress=False, transform_params=PLACE, **{**FIT, "random_state": 3})
    assert isinstance(result.embedding, da.Array) and result.embedding.shape == (600, 2)
    Y = result.embedding.compute()  # the cluster is gone: the lazy result computes in this process
    rest = np.setdiff1d(np.arange(600), result.sample)
    np.testing.assert_array_equal(Y[result.sample], result.model.embedding_)
    assert_same_placement(Y[rest], result.model.transform(X[rest], n_jobs=1, **PLACE))
    assert (tmp_path / "y.png").stat().st_size > 0 and "knn_accuracy" in result.quality


def _write_h5ad(path, X, obsm):
    """A minimal .h5ad (AnnData's HDF5 layout: a dense X, an obsm group), written with h5py."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X)
        group = f.create_group("obsm")
        for name, value in obsm.items():
            group.create_dataset(name, data=value)
        group.create_group("spatial_df")  # not an array: refused by name


def test_embed_from_h5ad_reads_X_or_an_obsm_entry_block_by_block(client, data, tmp_path):
    from turbotsne.dask import embed, open_source

    X, _, _ = data
    source = tmp_path / "x.h5ad"
    _write_h5ad(source, X[:500, :3], {"X_pca": X[:500]})
    lazy = open_source(str(source), chunk_rows=120, key="X_pca")
    assert lazy.chunks[0] == (120, 120, 120, 120, 20)
    np.testing.assert_array_equal(lazy.compute(), X[:500])
    np.testing.assert_array_equal(open_source(str(source), chunk_rows=200).compute(), X[:500, :3])
    result = embed(str(source), key="X_pca", sample_size=200, chunk_rows=120, scheduler=client.scheduler.address,
                   progress=False, transform_params=PLACE, **FIT)
    expected = embed(da.from_array(X[:500], chunks=(120, 8)), sample_size=200, scheduler=client.scheduler.address,
                     progress=False, transform_params=PLACE, **FIT)
    np.testing.assert_array_equal(result.sample, expected.sample)
    np.testing.assert_array_equal(result.model.embedding_, expected.model.embedding_)
    assert_same_placement(result.embedding.compute(), expected.embedding.compute())
    with pytest.raises(ValueError, match=r"has no obsm/X_umap; obsm keys: X_pca, spatial_df"):
        embed(str(source), key="X_umap", sample_size=10)
    with pytest.raises(ValueError, match=r"obsm/spatial_df .* is not a dense 2-D array"):
        embed(str(source), key="spatial_df", sample_size=10)
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match=r"key='X_pca' selects an obsm entry of a \.h5ad source"):
        embed(str(tmp_path / "x.npy"), key="X_pca", sample_size=10)


def test_embed_refuses_bad_arguments_before_starting_a_cluster(data, tmp_path, monkeypatch):
    import turbotsne.dask as tdask

    def no_cluster(*args):
        raise AssertionError("a cluster was started")

    monkeypatch.setattr(tdask, "_client", no_cluster)
    X = data[0]
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match=r"reads \.zarr stores, \.npy files, \.parquet files or folders and \.h5ad"):
        tdask.embed(str(tmp_path / "x.csv"), sample_size=10)
    with pytest.raises(ValueError, match="does not exist"):
        tdask.embed(str(tmp_path / "missing.zarr"), sample_size=10)
    with pytest.raises(ValueError, match="'sample_size' parameter of embed must be an int"):
        tdask.embed(str(tmp_path / "x.npy"), sample_size=0)
    with pytest.raises(ValueError, match="writes the embedding to a .zarr store"):
        tdask.embed(str(tmp_path / "x.npy"), sample_size=10, output=str(tmp_path / "y.npy"))
    with pytest.raises(ValueError, match="must be numeric"):
        tdask.embed(da.from_array(np.array([["a"] * 8] * 10), chunks=(5, 8)), sample_size=5)


def test_a_cluster_started_with_dasks_own_command_line(data, tmp_path):
    # the remote path: a scheduler and a worker in their own processes, reached by address
    import shutil
    import subprocess
    import time

    dask_cli = shutil.which("dask") or os.path.join(os.path.dirname(sys.executable), "dask")
    if not os.path.exists(dask_cli):
        pytest.skip("the dask command line is not installed")
    X, _, model = data
    file = tmp_path / "scheduler.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([dask_cli, "scheduler", "--port", "0", "--no-dashboard", "--scheduler-file",
                               str(file)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(300):
            if file.exists() and file.stat().st_size:
                break
            time.sleep(0.1)
        procs.append(subprocess.Popen([dask_cli, "worker", "--scheduler-file", str(file), "--nthreads", "1",
                                       "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        with distributed.Client(scheduler_file=str(file), timeout=60) as remote:
            remote.wait_for_workers(1, timeout=60)
            new = X[400:600]
            Y = model.transform(da.from_array(new, chunks=(70, 8)), **PLACE)
            assert_same_placement(remote.compute(Y).result(), model.transform(new, **PLACE))
    finally:
        for p in reversed(procs):
            p.terminate()
            p.wait(timeout=30)
