"""The run folder: what training writes and what export, validation and users' scripts read.

    RUN_DIR/
      config.json      every hyper-parameter (the keys of :class:`dfc_analog.config.Config`)
      checkpoint.pt    network, optimizer and progress, for ``--resume``
      metrics.csv      one row per epoch (epoch 0 = before training)
      loss_curve.png   train / validation / test loss over epochs
      weights.npz      W1..WL (n_i x n_{i-1}), b1..bL (n_i), Q1..QL (n_i x n_L), float64
      .lock            held by the process that trains into the folder (its pid inside)

Every file is written to a temporary name in the same folder and then renamed over the old one,
so an interrupted write never leaves a truncated file behind; the temporaries a killed writer
leaves are removed at the next write or lock. Files follow the umask like any other.
"""
from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import re
import secrets
import shutil
from pathlib import Path

import numpy as np
import torch

from dfc_analog.config.options import Config
from dfc_analog.errors import ConfigError, DFCError, DivergenceError
from dfc_analog.model.network import DFCNetwork
from dfc_analog.version import provenance

CHECKPOINT = "checkpoint.pt"
CONFIG = "config.json"
METRICS = "metrics.csv"
WEIGHTS = "weights.npz"
LOSS_CURVE = "loss_curve.png"
LOCK = ".lock"
FORMAT_VERSION = 2
RESUME_CHANGES = ("epochs", "device", "threads")   # what --resume may change
CHECKPOINT_KEYS = ("config", "network", "optimizers", "metrics", "pass", "batch", "loss_sum",
                   "nfe_sum")
# What a run folder's tools write beside the training files; --overwrite clears them with it.
RUN_FILES = (CHECKPOINT, CONFIG, METRICS, WEIGHTS, LOSS_CURVE)
DERIVED = ("evaluation*.json", "confusion_matrix*.png", "reconstruction*.png", "predictions*.png")
DERIVED_DIRS = ("validation-*",)
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.tmp$")


class WriteError(DFCError):
    """A file that could not be written (full disk, read-only or immutable folder, ...)."""


def write_error(path, exc: OSError) -> WriteError:
    return WriteError(f"cannot write '{path}': {exc.strerror or exc}.")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:      # alive, another user's
        return True
    return True


def remove_stale_temporaries(folder: Path, name: str | None = None) -> None:
    """Remove the temporary files that writers killed mid-write left in ``folder`` (of file
    ``name`` only, when given): those of processes that no longer run."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m and (name is None or m["name"] == name) and not _alive(int(m["pid"])):
            try:
                entry.unlink()
            except OSError:
                pass


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and an atomic rename.

    The file gets the mode any new file gets (0666 less the umask), and a failure is a
    :class:`WriteError` that names the file. Temporaries left by a killed writer of the same
    file (``.NAME.PID-XXXXXXXX.tmp``) are removed first.
    """
    path = Path(path)
    remove_stale_temporaries(path.parent, path.name)
    tmp = path.parent / f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
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
    except OSError as exc:
        raise write_error(path, exc) from None


def save_figure(path: Path, fig, **savefig) -> None:
    """Write a matplotlib figure as PNG through :func:`atomic_write` and close it (every figure
    of the package goes through here)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", **savefig)
    finally:
        plt.close(fig)
    atomic_write(path, buf.getvalue())


def make_dir(path: Path) -> Path:
    """``mkdir -p`` that says which folder cannot be made."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise WriteError(f"cannot make folder '{path}': a file of that name is in the way.") \
            from None
    except OSError as exc:
        raise WriteError(f"cannot make folder '{path}': {exc.strerror or exc}.") from None
    return path


def prepare_run_dir(path: Path) -> Path:
    """Create the folder (and parents) and prove it is writable, or say why not."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"output folder '{path}' is a file: give a folder.")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"cannot write to output folder '{path}': "
                          f"{exc.strerror or exc}.") from None
    return path


@contextlib.contextmanager
def output_dir(path: Path):
    """:func:`prepare_run_dir` for a tool's output folder that is removed again (with the
    parents it made) when the tool fails before writing anything into it."""
    path = Path(path)
    made = []
    p = path
    while not p.exists() and p != p.parent:
        made.append(p)
        p = p.parent
    prepare_run_dir(path)
    try:
        yield path
    except BaseException:
        for folder in made:          # deepest first; stops at the first that is not empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise


_held: dict = {}


@contextlib.contextmanager
def run_lock(run_dir: Path):
    """Hold the run folder's lock: one process at a time trains in (or clears) a folder.

    The lock is an ``fcntl`` lock on ``RUN_DIR/.lock``, which also holds the owner's process
    id: the second process is told which process holds the folder, and a lock file left by a
    process that died (``kill -9``, a crash) is recognised as stale — the kernel released its
    lock with the process — and taken over. Re-entrant within a process.
    """
    run_dir = prepare_run_dir(Path(run_dir))
    key = os.path.realpath(run_dir)
    if key in _held:
        _held[key][1] += 1
        try:
            yield
        finally:
            _held[key][1] -= 1
        return
    path = run_dir / LOCK
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise write_error(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        owner = os.pread(fd, 64, 0).decode(errors="replace").split()
        os.close(fd)
        who = f"process {owner[0]}" if owner and owner[0].isdigit() else "another process"
        raise DFCError(f"run folder '{run_dir}' is in use by {who}: wait for it to finish or "
                       "use another --out.") from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError:
        pass     # the kernel lock is what counts; the pid only names the owner
    _held[key] = [fd, 1]
    remove_stale_temporaries(run_dir)
    try:
        yield
    finally:
        del _held[key]
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)


def check_same_run(run_dir: Path, cfg: Config) -> dict:
    """The checkpoint state of ``run_dir`` if it holds the run of ``cfg`` (settings equal up to
    :data:`RESUME_CHANGES`); otherwise one sentence."""
    state = load_checkpoint(run_dir, CHECKPOINT_KEYS)
    free = {k: getattr(cfg, k) for k in RESUME_CHANGES}
    if {**Config().to_dict(), **state["config"], **free} != cfg.to_dict():
        raise ConfigError(f"'{run_dir}' holds a run with other settings; use another --out or "
                          "--overwrite.")
    return state


def clear_run(run_dir: Path) -> None:
    """Remove what a run and the tools after it wrote into ``run_dir`` (training files,
    evaluation and validation outputs), before ``--overwrite`` starts afresh; nothing else."""
    run_dir = Path(run_dir)
    doomed = [run_dir / name for name in RUN_FILES]
    for pattern in DERIVED:
        doomed += run_dir.glob(pattern)
    try:
        for path in doomed:
            if path.is_file():
                path.unlink()
        for pattern in DERIVED_DIRS:
            for folder in run_dir.glob(pattern):
                if (folder / "report.json").is_file() or (folder / "report.md").is_file():
                    shutil.rmtree(folder)
    except OSError as exc:
        raise WriteError(f"cannot clear the old run in '{run_dir}' for --overwrite: "
                         f"{os_error(exc)}.") from None


def os_error(exc: OSError) -> str:
    where = f"'{exc.filename}': " if exc.filename else ""
    return f"{where}{exc.strerror or exc}"


def refuse_overwriting_inputs(outputs: dict, inputs: list) -> None:
    """Raise when an output path names an input file or another output (a tool never writes
    over what it reads). ``outputs`` maps an option (``--netlist``) to its path."""
    def same(a, b) -> bool:
        try:
            return os.path.samefile(a, b)
        except OSError:
            return os.path.abspath(a) == os.path.abspath(b)

    given = [(opt, p) for opt, p in outputs.items() if p]
    for k, (opt, path) in enumerate(given):
        for other, p in given[k + 1:]:
            if same(path, p):
                raise ConfigError(f"{opt} and {other} name the same file '{path}': give each "
                                  "its own.")
        for p in inputs:
            if p is not None and Path(p).exists() and same(path, p):
                raise ConfigError(f"{opt} '{path}' would overwrite an input of this command "
                                  f"('{p}'): write to another file.")


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
    """``config.json``: every setting, then the package version and git commit that wrote the
    run (keys :meth:`Config.from_dict` skips, so the file stays a valid config file)."""
    atomic_write(path, (json.dumps({**cfg.to_dict(), **provenance()}, indent=2) + "\n").encode())


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


def load_checkpoint(run_dir: Path, required=("config", "network")) -> dict:
    """Read ``checkpoint.pt`` of a run folder, with one-sentence errors for every failure; the
    ``required`` keys must be there (:data:`CHECKPOINT_KEYS` to resume training)."""
    path = Path(run_dir) / CHECKPOINT
    if Path(run_dir).is_file():
        raise DFCError(f"'{run_dir}' is a file, not a run folder: give the folder that holds "
                       f"{CHECKPOINT} and config.json.")
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
    missing = [k for k in required if k not in state]
    if missing:
        raise DFCError(f"checkpoint '{path}' is damaged: it lacks {', '.join(missing)}.")
    if not isinstance(state["config"], dict) or not isinstance(state.get("metrics", []), list):
        raise DFCError(f"checkpoint '{path}' is damaged: its config or metrics are not readable.")
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
    check_weights(net, f"{run_dir}/{CHECKPOINT}")
    return cfg, net


def check_weights(net: DFCNetwork, where: str) -> None:
    """Raise when a weight tensor holds NaN or ±inf (a diverged optimizer step), naming it."""
    bad = net.nonfinite_weights()
    if bad:
        raise DivergenceError(f"the weights {', '.join(bad)} in '{where}' hold NaN or infinite "
                              "values: the run diverged; train it again with a lower lr.")
