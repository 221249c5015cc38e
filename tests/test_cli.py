import os
import pickle
import subprocess
import sys

import numpy as np
import pytest

from conftest import make_clusters
from turbotsne import TSNE
from turbotsne.cli import build_parser, main, read_input, tsne_parameters

FAST = ["--early-exaggeration-iter", "20", "--n-iter", "30", "--perplexity", "10", "--random-state", "0",
        "--negative-gradient-method", "bh", "--no-progress"]
SRC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "src")


@pytest.fixture(scope="module")
def data():
    X, labels = make_clusters(n=150, n_features=4, n_clusters=3, seed=5)
    return X, labels


@pytest.fixture(scope="module")
def reference_embedding(data):
    X, _ = data
    return TSNE(early_exaggeration_iter=20, n_iter=30, perplexity=10, random_state=0,
                negative_gradient_method="bh").fit_transform(X)


def write_delimited(path, X, labels=None, header=True, delimiter=","):
    cols = [f"f{j}" for j in range(X.shape[1])]
    with open(path, "w") as f:
        if header:
            f.write(delimiter.join(cols + (["label"] if labels is not None else [])) + "\n")
        for i, row in enumerate(X):
            fields = [repr(float(v)) for v in row]
            if labels is not None:
                fields.append(str(labels[i]))
            f.write(delimiter.join(fields) + "\n")


def run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("out_ext", [".npy", ".csv"])
def test_npy_round_trip(tmp_path, data, reference_embedding, capsys, out_ext):
    X, _ = data
    np.save(tmp_path / "x.npy", X)
    out = tmp_path / f"y{out_ext}"
    code, _, err = run(["embed", str(tmp_path / "x.npy"), "-o", str(out)] + FAST, capsys)
    assert code == 0, err
    assert "embedded 150 points" in err
    Y = np.load(out) if out_ext == ".npy" else np.loadtxt(out, delimiter=",", skiprows=1)
    np.testing.assert_allclose(Y, reference_embedding, rtol=1e-7, atol=1e-7)
    if out_ext == ".csv":
        assert open(out).readline().strip() == "tsne_1,tsne_2"


def test_npz_first_array_key_and_labels(tmp_path, data, reference_embedding, capsys):
    X, labels = data
    path = tmp_path / "x.npz"
    np.savez(path, data=X, other=X[:, :2] * 5, cls=labels)
    code, _, err = run(["embed", str(path), "-o", str(tmp_path / "a.npy")] + FAST, capsys)
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "a.npy"), reference_embedding, rtol=1e-7, atol=1e-7)
    code, _, err = run(["embed", str(path), "--key", "other", "-o", str(tmp_path / "b.npy")] + FAST, capsys)
    assert code == 0, err
    assert not np.allclose(np.load(tmp_path / "b.npy"), reference_embedding)
    Xr, y, name = read_input(str(path), labels="cls")
    np.testing.assert_array_equal(Xr, X)
    np.testing.assert_array_equal(y, labels)
    assert name == "cls"
    code, _, err = run(["embed", str(path), "--key", "nope", "-o", str(tmp_path / "c.npy")] + FAST, capsys)
    assert code == 2 and "no array 'nope'" in err


@pytest.mark.parametrize("ext,delimiter", [(".csv", ","), (".tsv", "\t")])
def test_delimited_round_trip_with_header_and_labels(tmp_path, data, reference_embedding, capsys, ext, delimiter):
    X, labels = data
    names = np.array(["alpha", "beta", "gamma"])[labels]
    path = tmp_path / f"x{ext}"
    write_delimited(path, X, names, header=True, delimiter=delimiter)
    out = tmp_path / "y.npy"
    code, _, err = run(["embed", str(path), "--labels", "label", "-o", str(out), "--plot",
                        str(tmp_path / "p.png")] + FAST, capsys)
    assert code == 0, err
    np.testing.assert_allclose(np.load(out), reference_embedding, rtol=1e-7, atol=1e-7)
    assert (tmp_path / "p.png").stat().st_size > 1000
    Xr, y, name = read_input(str(path), labels="label")
    np.testing.assert_allclose(Xr, X)
    assert list(y[:5]) == list(names[:5]) and name == "label"


def test_csv_without_header_and_label_by_index(tmp_path, data):
    X, labels = data
    path = tmp_path / "x.csv"
    write_delimited(path, X, labels, header=False)
    Xr, y, _ = read_input(str(path), labels="-1")
    np.testing.assert_allclose(Xr, X)
    np.testing.assert_array_equal(y, labels)
    assert y.dtype.kind == "i"
    Xall, y2, _ = read_input(str(path))  # no labels: the label column is numeric data
    assert Xall.shape == (150, 5) and y2 is None


def test_labels_from_a_file(tmp_path, data, capsys):
    X, labels = data
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "labels.txt").write_text("\n".join(str(v) for v in labels) + "\n")
    _, y, _ = read_input(str(tmp_path / "x.npy"), labels=str(tmp_path / "labels.txt"))
    np.testing.assert_array_equal(y, labels)
    (tmp_path / "short.txt").write_text("1\n2\n")
    code, _, err = run(["embed", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "short.txt"), "-o",
                        str(tmp_path / "y.npy")] + FAST, capsys)
    assert code == 2 and "has 2 labels but the data has 150 rows" in err
    code, _, err = run(["embed", str(tmp_path / "x.npy"), "--labels", "missing", "-o",
                        str(tmp_path / "y.npy")] + FAST, capsys)
    assert code == 2 and "neither a column" in err


def test_parquet_round_trip(tmp_path, data, reference_embedding, capsys):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    X, labels = data
    table = pa.table({**{f"f{j}": X[:, j] for j in range(X.shape[1])},
                      "cls": np.array(["a", "b", "c"])[labels]})
    pq.write_table(table, tmp_path / "x.parquet")
    code, _, err = run(["embed", str(tmp_path / "x.parquet"), "--labels", "cls", "-o", str(tmp_path / "y.npy")]
                       + FAST, capsys)
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), reference_embedding, rtol=1e-7, atol=1e-7)
    code, _, err = run(["embed", str(tmp_path / "x.parquet"), "-o", str(tmp_path / "y.npy")] + FAST, capsys)
    assert code == 2 and "column 'cls' is not numeric" in err


def test_h5ad_round_trip(tmp_path, data, reference_embedding, capsys):
    anndata = pytest.importorskip("anndata")
    import pandas as pd

    X, labels = data
    adata = anndata.AnnData(X=X, obs=pd.DataFrame({"cls": labels.astype(str)}, index=[str(i) for i in range(150)]))
    adata.obsm["X_pca"] = X[:, :2].copy()
    adata.write_h5ad(tmp_path / "x.h5ad")
    code, _, err = run(["embed", str(tmp_path / "x.h5ad"), "--labels", "cls", "-o", str(tmp_path / "y.npy")]
                       + FAST, capsys)
    assert code == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), reference_embedding, rtol=1e-7, atol=1e-7)
    Xr, _, _ = read_input(str(tmp_path / "x.h5ad"), key="X_pca")
    np.testing.assert_allclose(Xr, X[:, :2])


def test_optional_readers_name_their_package(tmp_path, without_optional_readers, capsys):
    for ext, package in ((".parquet", "pyarrow"), (".h5ad", "anndata")):
        path = tmp_path / f"x{ext}"
        path.write_bytes(b"not really")
        code, _, err = run(["embed", str(path), "-o", str(tmp_path / "y.npy")], capsys)
        assert code == 2
        assert f"needs the '{package}' package" in err


def test_save_model_and_transform_new_points(tmp_path, data, capsys):
    X, _ = data
    np.save(tmp_path / "x.npy", X)
    model = tmp_path / "model.pkl"
    code, _, err = run(["embed", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--save-model",
                        str(model)] + FAST, capsys)
    assert code == 0, err
    with open(model, "rb") as f:
        tsne = pickle.load(f)
    assert isinstance(tsne, TSNE) and tsne.perplexity == 10.0 and tsne.n_iter == 30
    np.testing.assert_array_equal(tsne.embedding_, np.load(tmp_path / "y.npy"))
    np.save(tmp_path / "new.npy", X[:10])
    code, _, err = run(["transform", str(model), str(tmp_path / "new.npy"), "-o", str(tmp_path / "z.npy"),
                        "--no-progress"], capsys)
    assert code == 0, err
    Z = np.load(tmp_path / "z.npy")
    np.testing.assert_allclose(Z, tsne.transform(X[:10]))
    assert Z.shape == (10, 2)


def test_transform_bad_model(tmp_path, capsys):
    (tmp_path / "bad.pkl").write_bytes(b"garbage")
    np.save(tmp_path / "x.npy", np.zeros((5, 2)))
    code, _, err = run(["transform", str(tmp_path / "bad.pkl"), str(tmp_path / "x.npy"), "-o",
                        str(tmp_path / "y.npy")], capsys)
    assert code == 2 and "not a saved turbotsne model" in err
    with open(tmp_path / "dict.pkl", "wb") as f:
        pickle.dump({"a": 1}, f)
    code, _, err = run(["transform", str(tmp_path / "dict.pkl"), str(tmp_path / "x.npy"), "-o",
                        str(tmp_path / "y.npy")], capsys)
    assert code == 2 and "does not hold a fitted turbotsne.TSNE" in err
    code, _, err = run(["transform", str(tmp_path / "none.pkl"), str(tmp_path / "x.npy"), "-o",
                        str(tmp_path / "y.npy")], capsys)
    assert code == 2 and "model file not found" in err


def test_missing_file(tmp_path, capsys):
    code, _, err = run(["embed", str(tmp_path / "nope.npy"), "-o", str(tmp_path / "y.npy")], capsys)
    assert code == 2
    assert "input file not found" in err and "nope.npy" in err


def test_unknown_flag_and_missing_output(tmp_path, capsys):
    code, _, err = run(["embed", "x.npy", "-o", "y.npy", "--perplexityy", "3"], capsys)
    assert code == 2 and "unrecognized arguments: --perplexityy" in err
    code, _, err = run(["embed", "x.npy"], capsys)
    assert code == 2 and "-o/--output" in err
    code, _, err = run(["frobnicate"], capsys)
    assert code == 2 and "invalid choice: 'frobnicate'" in err


def test_non_numeric_column(tmp_path, data, capsys):
    X, labels = data
    path = tmp_path / "x.csv"
    write_delimited(path, X, np.array(["u", "v", "w"])[labels], header=True)
    code, _, err = run(["embed", str(path), "-o", str(tmp_path / "y.npy")] + FAST, capsys)
    assert code == 2
    assert "column 'label' is not numeric" in err and "--labels label" in err
    assert not (tmp_path / "y.npy").exists()


def test_bad_parameter_values(tmp_path, data, capsys):
    X, _ = data
    np.save(tmp_path / "x.npy", X)
    base = ["embed", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--no-progress"]
    code, _, err = run(base + ["--perplexity", "-5"], capsys)
    assert code == 2 and "The 'perplexity' parameter of TSNE must be a float in the range (0.0, inf)" in err
    code, _, err = run(base + ["--negative-gradient-method", "magic"], capsys)
    assert code == 2 and "'negative_gradient_method' parameter must be one of" in err
    code, _, err = run(base + ["--n-iter", "many"], capsys)
    assert code == 2 and "argument --n-iter: invalid int value: 'many'" in err
    code, _, err = run(base + ["--learning-rate", "fast"], capsys)
    assert code == 2 and "expected float or 'auto'" in err
    code, _, err = run(base + ["--metric-params", "{oops"], capsys)
    assert code == 2 and "expected a JSON object" in err
    assert not (tmp_path / "y.npy").exists()


def test_bad_output_format_is_caught_before_fitting(tmp_path, data, capsys):
    X, _ = data
    np.save(tmp_path / "x.npy", X)
    code, _, err = run(["embed", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.xlsx")], capsys)
    assert code == 2 and "unknown output format '.xlsx'" in err
    code, _, err = run(["embed", str(tmp_path / "x.npy"), "-o", str(tmp_path / "no" / "dir" / "y.npy")], capsys)
    assert code == 2 and "does not exist" in err
    (tmp_path / "x.json").write_text("{}")
    code, _, err = run(["embed", str(tmp_path / "x.json"), "-o", str(tmp_path / "y.npy")], capsys)
    assert code == 2 and "unknown input format '.json'" in err


def test_every_tsne_parameter_is_a_flag():
    parser = build_parser()
    embed = parser._subparsers._group_actions[0].choices["embed"]
    flags = {opt for action in embed._actions for opt in action.option_strings}
    for name in tsne_parameters():
        if name in ("callbacks", "verbose"):
            continue
        assert "--" + name.replace("_", "-") in flags, name


def test_flags_reach_the_estimator(tmp_path, data, capsys, monkeypatch):
    import turbotsne.estimator as est

    seen = {}
    original = est.TSNE.fit_transform

    def spy(self, X, y=None):
        seen.update(self.get_params())
        return original(self, X, y)

    monkeypatch.setattr(est.TSNE, "fit_transform", spy)
    X, _ = data
    np.save(tmp_path / "x.npy", X)
    code, _, err = run(["embed", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy"), "--dof", "0.7",
                        "--exaggeration", "2", "--learning-rate", "auto", "--max-step-norm", "none",
                        "--metric", "manhattan", "--neighbors", "exact", "--n-jobs", "2"] + FAST, capsys)
    assert code == 0, err
    assert seen["dof"] == 0.7 and seen["exaggeration"] == 2.0 and seen["learning_rate"] == "auto"
    assert seen["max_step_norm"] is None and seen["metric"] == "manhattan" and seen["n_jobs"] == 2
    assert seen["theta"] == 0.5  # not given: the library default


def test_progress_bars_when_forced(tmp_path, data, capsys):
    X, _ = data
    np.save(tmp_path / "x.npy", X)
    argv = ["embed", str(tmp_path / "x.npy"), "-o", str(tmp_path / "y.npy")] + FAST[:-1] + ["--progress"]
    code, _, err = run(argv, capsys)
    assert code == 0
    assert "t-SNE (exaggeration 12)" in err and "20/20" in err and "30/30" in err and "KL=" in err
    code, _, err = run(argv[:-1] + ["--no-progress"], capsys)
    assert code == 0 and "30/30" not in err


def test_quality_report_on_stdout(tmp_path, data, capsys):
    import json

    X, labels = data
    np.savez(tmp_path / "x.npz", X=X, y=labels)
    code, out, err = run(["embed", str(tmp_path / "x.npz"), "--labels", "y", "-o", str(tmp_path / "y.npy"),
                          "--quality"] + FAST, capsys)
    assert code == 0, err
    report = json.loads(out)
    assert set(report) >= {"trustworthiness", "knn_preservation", "kl_divergence", "knn_accuracy"}
    assert 0.5 < report["knn_accuracy"] <= 1


def test_demo_writes_png(tmp_path, capsys):
    out = tmp_path / "digits.png"
    code, _, err = run(["demo", "-o", str(out), "--early-exaggeration-iter", "5", "--n-iter", "5",
                        "--negative-gradient-method", "bh", "--n-jobs", "1", "--no-progress"], capsys)
    assert code == 0, err
    assert out.stat().st_size > 10_000
    assert "1797 digits" in err


def test_python_dash_m_help():
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "turbotsne", "--help"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert res.returncode == 0, res.stderr
    assert "usage: turbotsne" in res.stdout and "embed" in res.stdout and "transform" in res.stdout
    res = subprocess.run([sys.executable, "-m", "turbotsne", "embed", "missing.npy", "-o", "y.npy"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 2 and "input file not found" in res.stderr
