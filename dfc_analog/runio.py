"""The run folder: what training writes and what export, validation and users' scripts read.

    RUN_DIR/
      config.json      every hyper-parameter (the keys of :class:`dfc_analog.config.Config`)
      checkpoint.pt    network, optimizer and progress, for ``--resume``
      metrics.csv      one row per epoch (epoch 0 = before training)
      loss_curve.png   train / validation / test loss over epochs
      weights.npz      W1..WL (n_i x n_{i-1}), b1..bL (n_i), Q1..QL (n_i x n_L), float64

Every file is written to a temporary name in the same folder and then renamed over the old one,
so an interrupted write never leaves a truncated file behind.
"""
from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from dfc_analog.config.options import Config
from dfc_analog.errors import ConfigError, DFCError
from dfc_analog.model.network import DFCNetwork

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.csv"
WEIGHTS = "weights.npz"
LOSS_CURVE = "loss_curve.png"
FORMAT_VERSION = 2


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def prepare_run_dir(path: Path) -> Path:
    """Create the folder (and parents) and prove it is writable, or say why not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder '{path}': "
                          f"{exc.strerror or exc}.") from None
    return path


def weights_arrays(net: DFCNetwork) -> dict:
    out = {}
    for i in range(net.num_layers):
        out[f"W{i + 1}"] = net.W[i].detach().cpu().double().numpy()
        out[f"b{i + 1}"] = net.b[i].detach().cpu().double().numpy()
        out[f"Q{i + 1}"] = net.Q[i].detach().cpu().double().numpy()
    return out


def save_weights(path: Path, net: DFCNetwork) -> None:
    buf = io.BytesIO()
    np.savez(buf, **weights_arrays(net))
    atomic_write(path, buf.getvalue())


def save_config(path: Path, cfg: Config) -> None:
    atomic_write(path, (json.dumps(cfg.to_dict(), indent=2) + "\n").encode())


def save_metrics(path: Path, rows: list) -> None:
    if not rows:
        return
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0].keys()))
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue().encode())


def save_checkpoint(path: Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save({"format_version": FORMAT_VERSION, **state}, buf)
    atomic_write(path, buf.getvalue())


def load_checkpoint(run_dir: Path) -> dict:
    """Read ``checkpoint.pt`` of a run folder, with one-sentence errors for every failure."""
    path = Path(run_dir) / CHECKPOINT
    if not Path(run_dir).is_dir():
        raise DFCError(f"run folder '{run_dir}' does not exist.")
    if not path.is_file():
        raise DFCError(f"'{run_dir}' holds no {CHECKPOINT}: it is not a dfc_analog run folder.")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise DFCError(f"checkpoint '{path}' cannot be read ({type(exc).__name__}): the file is "
                       "damaged or not a dfc_analog checkpoint.") from None
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise DFCError(f"checkpoint '{path}' is not a dfc_analog checkpoint of format "
                       f"{FORMAT_VERSION}.")
    return state


def load_run(run_dir: str | Path, device: str | None = None):
    """(config, network) of a trained run; the network carries the last saved weights.

    The network lands on ``device``, else on the run's own device, or on the CPU where that is
    a CUDA device this machine lacks (a run trained on a GPU reads back anywhere).
    """
    state = load_checkpoint(Path(run_dir))
    cfg = Config.from_dict(state["config"], source=f"{run_dir}/{CHECKPOINT}")
    if device is None and cfg.device.startswith("cuda") and not torch.cuda.is_available():
        device = "cpu"
    if device is not None:
        cfg = cfg.replace(device=device)
    net = DFCNetwork.from_config(cfg)
    try:
        net.load_state_dict(state["network"])
    except (RuntimeError, KeyError) as exc:
        raise DFCError(f"the weights in '{run_dir}/{CHECKPOINT}' do not fit layer_sizes "
                       f"{cfg.layer_sizes}: {str(exc).splitlines()[0]}") from None
    return cfg, net
