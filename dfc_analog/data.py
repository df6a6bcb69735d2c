"""Datasets: the built-in nonlinear student–teacher regression task of the paper's Fig. 3.

A random teacher network n_0-1000-1000-1000-1000-n_L with ReLU hidden layers and a linear output
(Xavier-normal weights with gain 3, zero biases, as in the authors' code) labels inputs drawn from
U[-1, 1]^{n_0}. Everything is generated from the seed, in float64, then cast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

TEACHER_HIDDEN = (1000, 1000, 1000, 1000)
TEACHER_GAIN = 3.0


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
    gen = torch.Generator().manual_seed(seed)
    n = n_train + n_val + n_test
    x = torch.rand(n, n_in, generator=gen, dtype=torch.float64) * 2.0 - 1.0
    y = teacher_labels(x, n_out, gen)
    x, y = x.to(dtype=dtype, device=device), y.to(dtype=dtype, device=device)
    a, b = n_train, n_train + n_val
    return Dataset(Split(x[:a], y[:a]), Split(x[a:b], y[a:b]), Split(x[b:], y[b:]),
                   "student-teacher")


def load_dataset(cfg) -> Dataset:
    """The dataset a config names, on the config's device and dtype."""
    from .network import resolve_dtype
    return student_teacher(cfg.layer_sizes[0], cfg.layer_sizes[-1], cfg.train_samples,
                           cfg.val_samples, cfg.test_samples, cfg.seed, resolve_dtype(cfg.dtype),
                           cfg.device)
