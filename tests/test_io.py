"""turbotsne.io from Python: the readers and writers of the command line, and their errors."""

import numpy as np
import pytest

from turbotsne.io import INPUT_FORMATS, OUTPUT_FORMATS, READERS, WRITERS, file_format, read_input, write_output


@pytest.fixture
def data():
    rng = np.random.default_rng(3)
    return rng.normal(size=(12, 3)), np.array(["a", "b", "c"] * 4)


def test_formats_are_the_tables():
    assert INPUT_FORMATS == (".npy", ".npz", ".csv", ".tsv", ".parquet", ".h5ad") == tuple(READERS)
    assert OUTPUT_FORMATS == (".npy", ".csv", ".tsv") == tuple(WRITERS)
    assert file_format("A/B.CSV") == ".csv" and file_format("x.tar.gz") == ".gz" and file_format("x") == ""


@pytest.mark.parametrize("ext", OUTPUT_FORMATS)
def test_write_then_read_round_trip(tmp_path, data, ext):
    Y = data[0]
    path = str(tmp_path / f"y{ext}")
    write_output(path, Y)
    X, labels, name = read_input(path)
    assert labels is None and name is None and X.shape == Y.shape
    if ext == ".npy":
        np.testing.assert_array_equal(X, Y)
    else:  # nine significant digits
        np.testing.assert_allclose(X, Y, rtol=1e-8)
        assert open(path).readline().strip() == ("tsne_1,tsne_2,tsne_3" if ext == ".csv" else "tsne_1\ttsne_2\ttsne_3")


def test_labels_column_npz_array_and_file(tmp_path, data):
    X, labels = data
    with open(tmp_path / "x.csv", "w") as f:
        f.write("f0,f1,f2,kind\n")
        for row, lab in zip(X, labels):
            f.write(",".join(repr(float(v)) for v in row) + f",{lab}\n")
    Xr, y, name = read_input(str(tmp_path / "x.csv"), labels="kind")
    np.testing.assert_allclose(Xr, X, rtol=1e-15)
    assert name == "kind" and list(y) == list(labels)
    np.savez(tmp_path / "x.npz", X=X, y=np.arange(12))
    Xr, y, name = read_input(str(tmp_path / "x.npz"), labels="y")
    np.testing.assert_array_equal(Xr, X)
    assert name == "y" and list(y) == list(range(12))
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "labels.txt").write_text("\n".join(labels) + "\n")
    _, y, name = read_input(str(tmp_path / "x.npy"), labels=str(tmp_path / "labels.txt"))
    assert name == "labels.txt" and list(y) == list(labels)


def test_errors(tmp_path, data):
    X, _ = data
    with pytest.raises(FileNotFoundError, match="input file not found: .*nope.npy"):
        read_input(str(tmp_path / "nope.npy"))
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ValueError, match=r"unknown input format '\.json'"):
        read_input(str(tmp_path / "x.json"))
    with pytest.raises(ValueError, match=r"unknown output format '\.xlsx'"):
        write_output(str(tmp_path / "y.xlsx"), X)
    assert not (tmp_path / "y.xlsx").exists()
    (tmp_path / "x.csv").write_text("a,b\n1,2\n3,oops\n")
    with pytest.raises(ValueError, match=r"column 'b' is not numeric \(line 3: 'oops'\)"):
        read_input(str(tmp_path / "x.csv"))
    np.save(tmp_path / "x.npy", X)
    with pytest.raises(ValueError, match="neither a column of .* nor a file"):
        read_input(str(tmp_path / "x.npy"), labels="missing")
    np.save(tmp_path / "s.npy", np.array(["a", "b"]))
    with pytest.raises(ValueError, match="the data are not numeric"):
        read_input(str(tmp_path / "s.npy"))


def test_missing_optional_reader_is_an_import_error(tmp_path, without_optional_readers):
    for ext, package in ((".parquet", "pyarrow"), (".h5ad", "anndata")):
        path = tmp_path / f"x{ext}"
        path.write_bytes(b"not really")
        with pytest.raises(ImportError, match=rf"needs the '{package}' package: pip install {package}"):
            read_input(str(path))
