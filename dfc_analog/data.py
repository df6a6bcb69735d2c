"""Datasets: the paper's student–teacher regression (Fig. 3) and its image tasks (Table 1).

``load_dataset(cfg)`` returns a :class:`Dataset` with ``train``, ``val`` and ``test`` splits, each
with ``x`` (inputs) and ``y`` (targets) on the config's device:

* ``student-teacher``: a random teacher network n_0-1000-1000-1000-1000-n_L with ReLU hidden layers
  and a linear output (Xavier-normal weights with gain 3, zero biases, as in the authors' code)
  labels inputs drawn from U[-1, 1]^{n_0}; everything is generated from the seed, in float64.
* ``mnist``, ``fashion-mnist``: 28×28 images flattened to 784 inputs, ``y`` the int64 class label
  (0-9) for the cross-entropy of the linear output layer. MNIST is standardised with the usual mean
  0.1307 and std 0.3081, Fashion-MNIST only scaled by 1/255, as the authors do.
* ``mnist-autoencoder``: standardised MNIST inputs, and ``y`` the very same standardised input
  (the 784-256-32-256-784 autoencoder of Table 1).

The image sets are read from the four standard IDX files (gzip or raw) in ``cfg.data_dir``. Missing
files are downloaded from the usual public mirrors (short timeout); where that is impossible, the
error names the files to put where. The validation split is carved out of the training file with
a fixed permutation that does not depend on the run's seed (the authors use one fixed split for
every seed): 5,000 samples, as in the paper, for training files of 50,000 samples or more, 10 % of
smaller ones (800 of mnist-10k's 8,000), or ``val_samples`` when set.
"""
from __future__ import annotations

import gzip
import math
import zlib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from dfc_analog.config.seeds import generator
from dfc_analog.errors import DFCError

TEACHER_HIDDEN = (1000, 1000, 1000, 1000)
TEACHER_GAIN = 3.0
STUDENT_TEACHER_SIZES = (5000, 1000, 1000)   # train / validation / test when set to 0 ("auto")

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
IDX_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
             "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}
MIRRORS = {
    "mnist": ("https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
                      "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/"
                      "data/fashion/"),
}
SOURCE = {"mnist": "mnist", "mnist-autoencoder": "mnist", "fashion-mnist": "fashion-mnist"}
DOWNLOAD_TIMEOUT_S = 10.0
VAL_SAMPLES_FULL = 5000        # the paper's validation split of a full 60k training file
VAL_FRACTION_SMALL = 0.1       # for training files under FULL_SET_SIZE samples
FULL_SET_SIZE = 50000
SPLIT_SEED = 0                 # the fixed, seed-independent validation split
IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


class DatasetError(DFCError):
    """A data folder that lacks, or holds damaged, dataset files."""


@dataclass
class Split:
    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return self.x.shape[0]


@dataclass
class Dataset:
    train: Split
    val: Split
    test: Split
    name: str

    @property
    def is_classification(self) -> bool:
        return not torch.is_floating_point(self.train.y)


# --- the student-teacher task --------------------------------------------------------------------
def teacher_labels(x: torch.Tensor, n_out: int, generator: torch.Generator) -> torch.Tensor:
    """Outputs of a random ReLU teacher n_0-1000x4-n_out on inputs ``x`` (float64)."""
    sizes = [x.shape[1], *TEACHER_HIDDEN, n_out]
    h = x
    for i in range(len(sizes) - 1):
        std = TEACHER_GAIN * math.sqrt(2.0 / (sizes[i] + sizes[i + 1]))
        W = torch.randn(sizes[i + 1], sizes[i], generator=generator, dtype=torch.float64) * std
        h = h @ W.T
        if i < len(sizes) - 2:
            h = torch.relu(h)
    return h


def student_teacher(n_in: int, n_out: int, n_train: int, n_val: int, n_test: int, seed: int,
                    dtype: torch.dtype = torch.float32, device="cpu") -> Dataset:
    """The paper's Fig. 3 regression task with ``n_train / n_val / n_test`` samples."""
    gen = generator("student_teacher", seed)
    n = n_train + n_val + n_test
    x = torch.rand(n, n_in, generator=gen, dtype=torch.float64) * 2.0 - 1.0
    y = teacher_labels(x, n_out, gen)
    x, y = x.to(dtype=dtype, device=device), y.to(dtype=dtype, device=device)
    a, b = n_train, n_train + n_val
    return Dataset(Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:], y[b:]),
                   "student-teacher")


# --- IDX files ----------------------------------------------------------------------------------
def read_idx(path: str | Path) -> np.ndarray:
    """The array of an IDX file (``.gz`` or raw), with one-sentence errors for damaged files.

    Format: two zero bytes, a type byte (0x08 = uint8, ...), the number of dimensions d, then d
    big-endian uint32 sizes and the data.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DatasetError(f"'{path}' cannot be read as an IDX file (damaged or truncated "
                           f"gzip?): {exc}.") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DatasetError(f"'{path}' is not an IDX file (wrong magic number "
                           f"{raw[:4].hex() or 'none'}).")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f"'{path}' is truncated: its IDX header is incomplete.")
    shape = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, 4))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise DatasetError(f"'{path}' is truncated or padded: its header announces shape {shape} "
                           f"({expected} bytes) but it holds {len(raw)} bytes.")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape)


def find_idx(data_dir: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def download_idx(data_dir: Path, source: str, stems) -> None:
    """Fetch the gzip IDX files ``stems`` from the first public mirror that answers."""
    from dfc_analog.runio import atomic_write

    for stem in stems:
        for mirror in MIRRORS[source]:
            try:
                with urllib.request.urlopen(mirror + stem + ".gz",
                                            timeout=DOWNLOAD_TIMEOUT_S) as response:
                    payload = response.read()
            except (urllib.error.URLError, OSError, ValueError):
                continue
            if payload[:2] != b"\x1f\x8b":  # an error page, not the gzip file
                continue
            try:    # the folder is made only once there is something to put into it
                data_dir.mkdir(parents=True, exist_ok=True)
            except OSError:
                return
            atomic_write(data_dir / (stem + ".gz"), payload)
            break


def idx_files(data_dir: str | Path, source: str, download: bool = True) -> dict:
    """Paths of the four IDX files of ``source`` in ``data_dir``, downloading missing ones."""
    data_dir = Path(data_dir)
    missing = [s for s in IDX_FILES.values() if find_idx(data_dir, s) is None]
    if missing and download:
        download_idx(data_dir, source, missing)
        missing = [s for s in IDX_FILES.values() if find_idx(data_dir, s) is None]
    if missing:
        names = ", ".join(s + ".gz" for s in missing)
        raise DatasetError(f"the {source} files {names} are missing from '{data_dir}' and cannot "
                           f"be downloaded here: put the standard IDX files (gzip or raw) into "
                           f"'{data_dir}', or point --data-dir at the folder holding them.")
    return {key: find_idx(data_dir, stem) for key, stem in IDX_FILES.items()}


def validation_size(n_train_file: int, val_samples: int) -> int:
    """5,000 for a full training file (≥ 50,000 samples), 10 % of a smaller one, or as set."""
    if val_samples > 0:
        return val_samples
    if n_train_file >= FULL_SET_SIZE:
        return VAL_SAMPLES_FULL
    return max(1, int(round(VAL_FRACTION_SMALL * n_train_file)))


def image_dataset(name: str, data_dir: str | Path, train_samples: int = 0, val_samples: int = 0,
                  test_samples: int = 0, dtype: torch.dtype = torch.float32, device="cpu",
                  download: bool = True) -> Dataset:
    """MNIST, Fashion-MNIST or the MNIST autoencoder task from the IDX files in ``data_dir``.

    Validation: ``validation_size`` samples of the training file, chosen by a fixed permutation
    (seed 0) independent of the run's seed; ``train_samples`` / ``test_samples`` > 0 keep only the
    first so many of the remaining training / test samples (0 keeps all).
    """
    source = SOURCE[name]
    paths = idx_files(data_dir, source, download)
    arrays = {key: read_idx(p) for key, p in paths.items()}
    for part in ("train", "test"):
        x, y = arrays[f"{part}_x"], arrays[f"{part}_y"]
        if x.ndim != 3 or x.shape[1:] != (28, 28) or x.dtype != np.uint8:
            raise DatasetError(f"'{paths[part + '_x']}' must hold uint8 images of 28x28 pixels, "
                               f"got {x.dtype} of shape {x.shape}.")
        if y.ndim != 1 or y.shape[0] != x.shape[0]:
            raise DatasetError(f"'{paths[part + '_y']}' must hold one label per image of "
                               f"'{paths[part + '_x'].name}' ({x.shape[0]}), got shape {y.shape}.")
        if x.shape[0] == 0:
            raise DatasetError(f"'{paths[part + '_x']}' holds no images.")
        if y.size and not 0 <= int(y.min()) <= int(y.max()) <= 9:
            bad = int(y.max()) if int(y.max()) > 9 else int(y.min())
            raise DatasetError(f"'{paths[part + '_y']}' holds label {bad}; MNIST-style "
                               "labels are 0-9.")
    n_file = arrays["train_x"].shape[0]
    n_val = validation_size(n_file, val_samples)
    if n_val >= n_file:
        raise DatasetError(f"the validation split of {n_val} samples leaves nothing to train on: "
                           f"the training file holds {n_file}.")

    def inputs(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images.reshape(images.shape[0], -1).astype(np.float64)) / 255.0
        if source == "mnist":
            x = (x - MNIST_MEAN) / MNIST_STD
        return x.to(dtype=dtype, device=device)

    def split(images, labels, index) -> Split:
        x = inputs(images[index])
        y = x if name == "mnist-autoencoder" else torch.from_numpy(
            labels[index].astype(np.int64)).to(device)
        return Split(x, y)

    order = torch.randperm(n_file, generator=generator("validation_split", SPLIT_SEED)).numpy()
    val_idx, train_idx = np.sort(order[:n_val]), np.sort(order[n_val:])
    if train_samples > 0:
        train_idx = train_idx[:train_samples]
    test_idx = np.arange(arrays["test_x"].shape[0])
    if test_samples > 0:
        test_idx = test_idx[:test_samples]
    return Dataset(split(arrays["train_x"], arrays["train_y"], train_idx),
                   split(arrays["train_x"], arrays["train_y"], val_idx),
                   split(arrays["test_x"], arrays["test_y"], test_idx), name)


def load_dataset(cfg, download: bool = True) -> Dataset:
    """The dataset a config names, on the config's device and dtype."""
    from dfc_analog.model.network import resolve_dtype

    dtype = resolve_dtype(cfg.dtype)
    if cfg.dataset == "student-teacher":
        sizes = [n or auto for n, auto in zip(
            (cfg.train_samples, cfg.val_samples, cfg.test_samples), STUDENT_TEACHER_SIZES)]
        return student_teacher(cfg.layer_sizes[0], cfg.layer_sizes[-1], *sizes, cfg.seed, dtype,
                               cfg.device)
    return image_dataset(cfg.dataset, cfg.data_dir, cfg.train_samples, cfg.val_samples,
                         cfg.test_samples, dtype, cfg.device, download)
