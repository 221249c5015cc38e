"""`turbotsne embed --sample N`: the dask recipe from the command line, on its own LocalCluster."""
import numpy as np
import pytest

from conftest import make_clusters

pytest.importorskip("distributed")
pytest.importorskip("zarr")
da = pytest.importorskip("dask.array")

from turbotsne.cli import main  # noqa: E402

FLAGS = ["--negative-gradient-method", "bh", "--neighbors", "exact", "--n-iter", "60",
         "--early-exaggeration-iter", "30", "--random-state", "0"]


def test_command_line_embed_with_a_sample_on_a_local_cluster(tmp_path, capsys):
    X, _ = make_clusters(800, 8, n_clusters=4, seed=11)
    np.save(tmp_path / "x.npy", X)
    # no --scheduler: embed starts a LocalCluster of --n-jobs workers and closes it
    argv = ["embed", str(tmp_path / "x.npy"), "--sample", "300", "-o", str(tmp_path / "y.zarr"), "--plot",
            str(tmp_path / "y.png"), "--n-jobs", "1", "--quality", "--no-progress", *FLAGS]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert "fitted 300 points, placed 500 on dask" in err and '"knn_preservation"' in out
    Y = da.from_zarr(str(tmp_path / "y.zarr")).compute()
    assert Y.shape == (800, 2) and np.all(np.isfinite(Y))
    assert (tmp_path / "y.png").stat().st_size > 0


def test_command_line_embed_refuses_what_the_dask_path_cannot_do(tmp_path, capsys):
    X, _ = make_clusters(50, 8, seed=1)
    np.save(tmp_path / "x.npy", X)
    assert main(["embed", str(tmp_path / "x.npy"), "--sample", "30", "-o", str(tmp_path / "y.npy")]) == 2
    assert "OUTPUT must be a .zarr store" in capsys.readouterr().err
    da.from_array(X, chunks=(25, 8)).to_zarr(str(tmp_path / "x.zarr"))
    assert main(["embed", str(tmp_path / "x.zarr"), "-o", str(tmp_path / "y.zarr")]) == 2
    assert "give --sample N" in capsys.readouterr().err
