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
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
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
    assert_same_placement(np.concatenate(client.gather(blocks)), expected)


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


def test_command_line_embed_with_a_sample(client, data, tmp_path, capsys):
    pytest.importorskip("zarr")
    from turbotsne.cli import main

    X, _, _ = data
    np.save(tmp_path / "x.npy", X)
    argv = ["embed", str(tmp_path / "x.npy"), "--sample", "300", "-o", str(tmp_path / "y.zarr"), "--scheduler",
            client.scheduler.address, "--quality", "--no-progress", "--negative-gradient-method", "bh",
            "--neighbors", "exact", "--n-iter", "60", "--early-exaggeration-iter", "30", "--random-state", "0"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "fitted 300 points, placed 700 on dask" in err and '"knn_preservation"' in out
    Y = da.from_zarr(str(tmp_path / "y.zarr")).compute()
    assert Y.shape == (1000, 2) and np.all(np.isfinite(Y))
    assert main(["embed", str(tmp_path / "x.npy"), "--sample", "300", "-o", str(tmp_path / "y.npy")]) == 2
    assert "OUTPUT must be a .zarr store" in capsys.readouterr().err
