"""Datasets: IDX reading (gzip and raw), damaged files, standardisation, splits, autoencoder
targets, the download fallback, and the shared mnist-10k digits (skipped where absent)."""
import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from dfc_analog import Config
from dfc_analog import data as data_module
from dfc_analog.data import (MNIST_MEAN, MNIST_STD, DatasetError, image_dataset, load_dataset,
                             read_idx, validation_size)
from dfc_analog.train import main

MNIST_10K = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist-10k"
CLS = dict(layer_sizes=[784, 16, 10], activations=["tanh", "linear"], loss="cross_entropy")


def idx_bytes(array: np.ndarray) -> bytes:
    """An IDX file of a uint8 array: magic 0x00 0x00 0x08 ndim, big-endian sizes, data."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_set(folder: Path, n_train=50, n_test=20, compress=True, seed=0):
    """Tiny MNIST-like IDX files; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), np.uint8),
              "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, np.uint8),
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), np.uint8),
              "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, np.uint8)}
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        raw = idx_bytes(array)
        if compress:
            (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
        else:
            (folder / name).write_bytes(raw)
    return arrays


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Tests never download: every mirror fails at once."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(data_module.urllib.request, "urlopen", refuse)


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_gzip_and_raw(tmp_path, compress):
    arrays = write_set(tmp_path, compress=compress)
    suffix = ".gz" if compress else ""
    images = read_idx(tmp_path / f"train-images-idx3-ubyte{suffix}")
    labels = read_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}")
    np.testing.assert_array_equal(images, arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(labels, arrays["train-labels-idx1-ubyte"])


@pytest.mark.parametrize("mangle,words", [
    (lambda raw: raw[:-7], ["truncated"]),
    (lambda raw: raw[:10], ["truncated"]),
    (lambda raw: b"\x00\x00\x08", ["wrong magic"]),
    (lambda raw: b"\x12\x34" + raw[2:], ["not an IDX file", "wrong magic"]),
    (lambda raw: raw[:2] + b"\x07" + raw[3:], ["wrong magic"]),
    (lambda raw: raw + b"\x00", ["padded"]),
])
def test_damaged_idx_files(tmp_path, mangle, words):
    raw = idx_bytes(np.zeros((3, 28, 28), np.uint8))
    path = tmp_path / "bad-idx3-ubyte"
    path.write_bytes(mangle(raw))
    with pytest.raises(DatasetError) as info:
        read_idx(path)
    message = str(info.value)
    assert all(w in message for w in words), message
    assert message.count(".") >= 1 and "\n" not in message


def test_truncated_gzip(tmp_path):
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((3, 28, 28), np.uint8)))[:-12])
    with pytest.raises(DatasetError, match="cannot be read as an IDX file"):
        read_idx(path)


def test_mnist_standardisation_split_and_labels(tmp_path):
    arrays = write_set(tmp_path, n_train=50, n_test=20)
    ds = image_dataset("mnist", tmp_path, dtype=torch.float64)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (45, 5, 20)   # a tenth for validation
    assert ds.train.y.dtype == torch.int64 and ds.is_classification
    expected = (arrays["t10k-images-idx3-ubyte"].reshape(20, -1) / 255.0 - MNIST_MEAN) / MNIST_STD
    np.testing.assert_allclose(ds.test.x.numpy(), expected, rtol=1e-12)
    np.testing.assert_array_equal(ds.test.y.numpy(), arrays["t10k-labels-idx1-ubyte"])
    # train + validation are exactly the training file, each image once, labels kept with it
    all_x = torch.cat([ds.train.x, ds.val.x])
    all_y = torch.cat([ds.train.y, ds.val.y])
    file_x = torch.from_numpy((arrays["train-images-idx3-ubyte"].reshape(50, -1) / 255.0
                               - MNIST_MEAN) / MNIST_STD)
    order = [int(torch.nonzero((file_x == row).all(1))[0]) for row in all_x]
    assert sorted(order) == list(range(50))
    np.testing.assert_array_equal(all_y.numpy(), arrays["train-labels-idx1-ubyte"][order])


def test_fashion_mnist_is_only_scaled(tmp_path):
    arrays = write_set(tmp_path)
    ds = image_dataset("fashion-mnist", tmp_path, dtype=torch.float64)
    np.testing.assert_allclose(ds.test.x.numpy(),
                               arrays["t10k-images-idx3-ubyte"].reshape(20, -1) / 255.0)
    assert float(ds.train.x.min()) >= 0 and float(ds.train.x.max()) <= 1


def test_autoencoder_targets_are_the_standardised_inputs(tmp_path):
    write_set(tmp_path)
    ds = image_dataset("mnist-autoencoder", tmp_path, dtype=torch.float32)
    for split in (ds.train, ds.val, ds.test):
        assert split.y.dtype == torch.float32
        torch.testing.assert_close(split.y, split.x, rtol=0, atol=0)
    assert not ds.is_classification


def test_validation_split_is_fixed_and_seed_independent(tmp_path):
    write_set(tmp_path)
    cfg = Config(dataset="mnist", data_dir=str(tmp_path), **CLS)
    a, b = load_dataset(cfg), load_dataset(cfg.replace(seed=7))
    torch.testing.assert_close(a.val.x, b.val.x, rtol=0, atol=0)
    torch.testing.assert_close(a.train.x, b.train.x, rtol=0, atol=0)
    small = load_dataset(cfg.replace(train_samples=10, val_samples=8, test_samples=5))
    assert (len(small.train), len(small.val), len(small.test)) == (10, 8, 5)
    torch.testing.assert_close(small.train.x, load_dataset(cfg.replace(val_samples=8)).train.x[:10])


def test_validation_sizes():
    assert validation_size(60000, 0) == 5000        # the paper's split
    assert validation_size(50000, 0) == 5000
    assert validation_size(8000, 0) == 800          # a tenth of a small set
    assert validation_size(8000, 123) == 123


def test_student_teacher_sizes_unchanged():
    ds = load_dataset(Config())
    assert (len(ds.train), len(ds.val), len(ds.test)) == (5000, 1000, 1000)


def test_missing_files_name_what_to_put_where(tmp_path):
    write_set(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DatasetError) as info:
        image_dataset("mnist", tmp_path)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte.gz" in message and str(tmp_path) in message
    assert "train-images" not in message


def test_download_fills_the_folder(tmp_path, monkeypatch):
    arrays = write_set(tmp_path / "mirror")

    class Response:
        def __init__(self, payload):
            self.payload = payload

        def read(self):
            return self.payload

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    def serve(url, timeout):
        assert timeout <= 30
        name = url.rsplit("/", 1)[1]
        return Response((tmp_path / "mirror" / name).read_bytes())

    monkeypatch.setattr(data_module.urllib.request, "urlopen", serve)
    ds = image_dataset("mnist", tmp_path / "data")
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(
        name + ".gz" for name in arrays)
    assert len(ds.test) == 20


def test_bad_data_dir_is_one_sentence(tmp_path, capsys):
    code = main(["--dataset", "mnist", "--layer-sizes", "784", "16", "10", "--activations",
                 "tanh", "linear", "--loss", "cross_entropy", "--data-dir",
                 str(tmp_path / "nothing"), "--epochs", "1", "--no-progress", "--out",
                 str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: the mnist files ") and err.count("\n") == 1
    assert "train-images-idx3-ubyte.gz" in err


def test_wrong_layer_sizes_for_a_dataset(capsys, tmp_path):
    code = main(["--dataset", "mnist", "--loss", "cross_entropy", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 2 and "layer_sizes must start with 784 and end with 10" in err


@pytest.mark.skipif(not MNIST_10K.is_dir(), reason="../shared/data/mnist-10k is absent")
def test_shared_mnist_10k():
    ds = image_dataset("mnist", MNIST_10K, dtype=torch.float64)
    assert (len(ds.train), len(ds.val), len(ds.test)) == (7200, 800, 2000)
    # standardised with the full-MNIST statistics: close to, not exactly, zero mean / unit std
    assert abs(float(ds.train.x.mean())) < 0.05 and abs(float(ds.train.x.std()) - 1) < 0.05
    counts = torch.bincount(torch.cat([ds.train.y, ds.val.y, ds.test.y]), minlength=10)
    assert int(counts.sum()) == 10000 and int(counts.min()) > 800
