"""Bad input and faults on every command line: one table, one rule.

Each case runs a command (``main(argv)`` in this process; a few as real processes) in a fresh
folder holding copies of two trained runs, then asserts: exit status 2, no traceback, exactly one
``error:`` line, and every file that was there before is still there, byte for byte. Add a row
for every new command line or option.

Classes (issue 15) and the rows that cover them: data loss (``export-netlist-over-*``,
``train-locked``, ``train-existing-run``), failing writes (``*-full-disk``, ``*-read-only``),
unbounded numbers (``*-huge-*``, ``*-inf``, ``*-seed-*``, ``*-step-*``), damaged inputs
(``*-damaged-*``, ``*-gzip-*``, ``*-empty-idx``, ``*-negative-label``, ``*-npy-*``), NaN weights
(``*-nan-weights``), fixed-step solvers and max_steps (``train-euler-*``), resume consistency
(``resume-*``), misleading sentences (``*-config-directory``, ``*-file-as-run``,
``*-rtol-tiny``, ``*-negative-*``).
"""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import signal
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from dfc_analog import data as data_module
from dfc_analog import evaluate, export, figures, runio, train, validate
from dfc_analog.config.options import Config
from dfc_analog.training.loop import run_training

ROOT = Path(__file__).resolve().parents[1]
MAINS = {"train": train.main, "evaluate": evaluate.main, "export": export.main,
         "validate": validate.main, "figures": figures.main}


# ------------------------------------------------------------------------------------------
# Two small trained runs (student-teacher and MNIST-shaped), made once


def idx_bytes(array: np.ndarray, type_byte: int = 0x08) -> bytes:
    dtype = {0x08: np.uint8, 0x0C: ">i4"}[type_byte]
    header = bytes([0, 0, type_byte, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def write_idx_set(folder: Path, n_train=40, n_test=10, labels_test=None, images_test=None):
    rng = np.random.default_rng(0)
    files = {"train-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n_train, 28, 28))),
             "train-labels-idx1-ubyte": idx_bytes(rng.integers(0, 10, n_train)),
             "t10k-images-idx3-ubyte": images_test or idx_bytes(
                 rng.integers(0, 256, (n_test, 28, 28))),
             "t10k-labels-idx1-ubyte": labels_test or idx_bytes(rng.integers(0, 10, n_test))}
    folder.mkdir(parents=True, exist_ok=True)
    for name, raw in files.items():
        (folder / (name + ".gz")).write_bytes(gzip.compress(raw))
    return folder


TINY = dict(layer_sizes=[4, 3, 2], activations=["tanh", "linear"], method="dfc-ssa",
            train_samples=32, val_samples=8, test_samples=8, batch_size=16, epochs=2,
            diagnostics=False, dtype="float64")
MNIST = dict(dataset="mnist", layer_sizes=[784, 10], activations=["linear"], method="dfc-ssa",
             loss="cross_entropy", train_samples=20, val_samples=5, batch_size=10, epochs=1,
             diagnostics=False)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """No case downloads: every mirror fails at once."""
    def refuse(*args, **kwargs):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(data_module.urllib.request, "urlopen", refuse)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    data = write_idx_set(root / "mnist-data")
    run_training(Config.from_dict(TINY), root / "run", progress=False)
    run_training(Config.from_dict({**MNIST, "data_dir": str(data)}), root / "mrun",
                 progress=False)
    return root


# ------------------------------------------------------------------------------------------
# The rule


@dataclass
class W:
    """The case's folder: ``run`` (student-teacher) and ``mrun`` (MNIST) copies, ``tmp``."""

    tmp: Path
    run: Path
    mrun: Path
    cleanups: list = field(default_factory=list)

    def __getattr__(self, name):       # w.x -> str(tmp / "x") for brevity in the table
        return str(self.tmp / name.replace("_", "."))


def hash_tree(root: Path) -> dict:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            out[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def assert_one_sentence(code, out: str, err: str, words) -> None:
    assert code == 2, f"exit status {code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback" not in out + err, err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert len(lines) == 1, err
    for word in words:
        assert word in lines[0], err


@dataclass
class Case:
    name: str
    cli: str
    argv: Callable            # W -> list of str
    words: tuple = ()         # each must appear in the error line
    setup: Callable = None    # W -> None, before the files are hashed


# --- set-ups ---------------------------------------------------------------------------------


def damage_checkpoint(key=None, nan=False, garbage=False, folder="run"):
    def setup(w):
        path = getattr(w, folder) / runio.CHECKPOINT
        if garbage:
            path.write_bytes(b"not a checkpoint")
            return
        state = runio.load_checkpoint(path.parent)
        if key:
            del state[key]
        if nan:
            state["network"]["W.0"][0, 0] = float("nan")
        runio.save_checkpoint(path, state)
    return setup


def write_npy(name, array):
    def setup(w):
        np.save(w.tmp / name, array)
    return setup


def mkdir(name):
    return lambda w: (w.tmp / name).mkdir()


def write_file(name, text="x"):
    return lambda w: (w.tmp / name).write_text(text)


def bad_idx(kind):
    def setup(w):
        folder = w.tmp / "bad"
        if kind == "gzip":
            write_idx_set(folder)
            raw = (folder / "t10k-images-idx3-ubyte.gz").read_bytes()
            # keep the 10-byte gzip header, break the deflate stream right after it (zlib.error)
            (folder / "t10k-images-idx3-ubyte.gz").write_bytes(
                raw[:10] + b"\xff" * 16 + raw[26:])
        elif kind == "empty":
            write_idx_set(folder, images_test=idx_bytes(np.zeros((0, 28, 28))),
                          labels_test=idx_bytes(np.zeros(0)))
        elif kind == "negative":
            write_idx_set(folder, labels_test=idx_bytes(np.array([-1] + [1] * 9), 0x0C))
    return setup


def damage_metrics(text):
    return lambda w: (w.run / runio.METRICS).write_text(text)


def hold_lock(w):
    """Another process holds the run folder's lock."""
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); "
            "fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid()); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(w.run / runio.LOCK)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    w.cleanups.append(lambda: (proc.kill(), proc.wait()))


def tiny_tmpfs(w, size="128k"):
    """A tmpfs of ``size`` at tmp/full, or skip where mounting is not allowed."""
    mount = w.tmp / "full"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                          capture_output=True)
    if proc.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    w.cleanups.append(lambda: subprocess.run(["umount", "-l", str(mount)]))
    return mount


def fill(folder: Path) -> None:
    with open(folder / "filler", "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass


def full_disk(w):
    fill(tiny_tmpfs(w))


def run_on_full_disk(w):
    """The run folder lives on a file system with no room left."""
    mount = tiny_tmpfs(w, "1m")
    shutil.copytree(w.run, mount / "run")
    w.run = mount / "run"
    fill(mount)


def immutable(folder_name):
    """A read-only folder: immutable (chattr +i), which binds root too; skip without chattr."""
    def setup(w):
        folder = getattr(w, folder_name) if folder_name in ("run", "mrun") else \
            w.tmp / folder_name
        folder.mkdir(exist_ok=True)
        if shutil.which("chattr") is None or subprocess.run(
                ["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("chattr +i is not available here")
        w.cleanups.append(lambda: subprocess.run(["chattr", "-i", str(folder)]))
    return setup


# --- the table -------------------------------------------------------------------------------

FAST = ["--train-samples", "16", "--val-samples", "4", "--test-samples", "4", "--epochs", "1",
        "--no-progress", "--diagnostics", "--no-diagnostics", "--method", "dfc-ssa"]
MNIST_ARGS = ["--dataset", "mnist", "--layer-sizes", "784", "10", "--activations", "linear",
              "--loss", "cross_entropy"] + FAST

CASES = [
    # --- dfc-train: unbounded numbers ---
    Case("train-huge-layer", "train", lambda w: ["--layer-sizes", "15", "100000000000", "5",
                                                 "--out", w.o] + FAST, ("layer_sizes", "limit")),
    Case("train-spice-other-rule", "train", lambda w: FAST + ["--simulator", "spice",
                                                              "--method", "dfc-ss", "--out", w.o],
         ("simulator 'spice'", "method 'dfc'")),
    Case("train-spice-large-net", "train", lambda w: FAST + ["--simulator", "spice",
                                                             "--method", "dfc", "--layer-sizes", "15", "200", "50",
                                                             "5", "--out", w.o], ("toy scale",)),
    Case("export-circuit-target-op", "export", lambda w: ["--netlist", w.o_cir, "--target",
                                                          "circuit", "--phase", "op", w.run],
         ("--target circuit", "wake phase")),
    Case("train-seed-float", "train", lambda w: ["--seed", "1e23", "--out", w.o], ("--seed",)),
    Case("train-seed-huge", "train", lambda w: ["--seed", "1" + "0" * 23, "--out", w.o] + FAST,
         ("seed must be an integer from 0 to",)),
    Case("train-seed-negative", "train", lambda w: ["--seed", "-1", "--out", w.o] + FAST,
         ("seed must be",)),
    Case("train-huge-epochs", "train", lambda w: FAST + ["--epochs", "10000000000000",
                                                         "--out", w.o], ("epochs", "limit")),
    Case("train-huge-samples", "train", lambda w: FAST + ["--train-samples", "10000000000",
                                                          "--out", w.o], ("train_samples",)),
    Case("train-huge-batch", "train", lambda w: FAST + ["--batch-size", "100000000", "--out",
                                                        w.o], ("batch_size", "limit")),
    Case("train-huge-max-steps", "train", lambda w: FAST + ["--max-steps", "10000000000000",
                                                            "--out", w.o], ("max_steps",)),
    Case("train-euler-step-tiny", "train", lambda w: FAST + ["--solver", "euler", "--step-size",
                                                             "1e-9", "--out", w.o],
         ("max_steps", "euler")),
    Case("train-euler-authors-step", "train", lambda w: FAST + [
        "--solver", "authors-euler", "--step-size", "1e-7", "--out", w.o], ("max_steps",)),
    Case("train-rk4-over-max-steps", "train", lambda w: FAST + [
        "--solver", "rk4", "--step-size", "0.01", "--max-steps", "10", "--out", w.o],
         ("500 steps", "max_steps 10")),
    Case("train-t-end-inf", "train", lambda w: FAST + ["--t-end", "inf", "--out", w.o],
         ("t_end",)),
    Case("train-tau-v-nan", "train", lambda w: FAST + ["--tau-v", "nan", "--out", w.o],
         ("tau_v",)),
    Case("train-sleep-steps-huge", "train", lambda w: FAST + [
        "--train-feedback", "--method", "dfc", "--dt-fb", "1e-9", "--out", w.o], ("limit",)),
    Case("train-threads-negative", "train", lambda w: FAST + ["--threads", "-2", "--out", w.o],
         ("threads",)),
    # --- dfc-train: misleading sentences ---
    Case("train-rtol-tiny", "train", lambda w: FAST + ["--rtol", "1e-20", "--out", w.o],
         ("rtol", "resolution")),
    Case("train-atol-tiny-float32", "train", lambda w: FAST + ["--atol", "1e-9", "--dtype",
                                                               "float32", "--out", w.o],
         ("atol", "float32")),
    Case("train-negative-exponent", "train", lambda w: FAST + ["--alpha", "-1e-3", "--out", w.o],
         ("alpha must be zero or positive",)),
    Case("train-config-directory", "train", lambda w: ["--config", w.cfgdir, "--out", w.o],
         ("is a directory",), mkdir("cfgdir")),
    Case("train-config-missing", "train", lambda w: ["--config", w.nope, "--out", w.o],
         ("does not exist",)),
    Case("train-config-damaged", "train", lambda w: ["--config", w.c_toml, "--out", w.o],
         ("not valid TOML",), write_file("c.toml", "tau_v = = 2\n")),
    Case("train-seeds-zero", "train", lambda w: FAST + ["--seeds", "0", "--out", w.o],
         ("--seeds",)),
    Case("train-seeds-past-max", "train", lambda w: FAST + [
        "--seed", str(2 ** 32 - 2), "--seeds", "5", "--out", w.o], ("largest seed",)),
    # --- dfc-train: data loss and failing writes ---
    Case("train-existing-run", "train", lambda w: FAST + ["--out", str(w.run)],
         ("already holds a run",)),
    Case("train-locked", "train", lambda w: FAST + ["--out", str(w.run), "--overwrite"],
         ("in use by process",), hold_lock),
    Case("train-out-is-file", "train", lambda w: FAST + ["--out", w.f], ("is a file",),
         write_file("f")),
    Case("train-full-disk", "train", lambda w: FAST + ["--out", str(w.tmp / "full" / "r")],
         ("No space left", "full"), full_disk),
    Case("train-read-only", "train", lambda w: FAST + ["--out", str(w.tmp / "ro" / "r")],
         ("cannot write", "ro"), immutable("ro")),
    # --- dfc-train: damaged inputs ---
    Case("train-gzip-broken", "train", lambda w: MNIST_ARGS + ["--data-dir", w.bad, "--out",
                                                               w.o], ("gzip",), bad_idx("gzip")),
    Case("train-empty-idx", "train", lambda w: MNIST_ARGS + ["--data-dir", w.bad, "--out", w.o],
         ("no images",), bad_idx("empty")),
    Case("train-negative-label", "train", lambda w: MNIST_ARGS + ["--data-dir", w.bad, "--out",
                                                                  w.o], ("label -1",),
         bad_idx("negative")),
    Case("train-data-missing", "train", lambda w: MNIST_ARGS + ["--data-dir", w.nodata, "--out",
                                                                w.o], ("missing",)),
    # --- dfc-train --resume: consistency ---
    Case("resume-fewer-epochs", "train", lambda w: ["--resume", str(w.run), "--epochs", "1"],
         ("trained 2 epochs", "at least 2")),
    Case("resume-other-setting", "train", lambda w: ["--resume", str(w.run), "--k-p", "3"],
         ("only --epochs",)),
    Case("resume-missing-key", "train", lambda w: ["--resume", str(w.run), "--epochs", "3"],
         ("lacks optimizers",), damage_checkpoint(key="optimizers")),
    Case("resume-nan-weights", "train", lambda w: ["--resume", str(w.run), "--epochs", "3"],
         ("W1", "NaN"), damage_checkpoint(nan=True)),
    Case("resume-garbage-checkpoint", "train", lambda w: ["--resume", str(w.run)],
         ("cannot be read",), damage_checkpoint(garbage=True)),
    Case("resume-file-as-run", "train", lambda w: ["--resume", w.f], ("is a file",),
         write_file("f")),
    Case("resume-missing-run", "train", lambda w: ["--resume", w.nope], ("does not exist",)),
    Case("resume-read-only", "train", lambda w: ["--resume", str(w.run), "--epochs", "3"],
         ("cannot write",), immutable("run")),
    # --- dfc-evaluate ---
    Case("evaluate-missing-run", "evaluate", lambda w: [w.nope], ("does not exist",)),
    Case("evaluate-file-as-run", "evaluate", lambda w: [w.f], ("is a file",), write_file("f")),
    Case("evaluate-damaged-metrics", "evaluate", lambda w: [str(w.run)], ("metrics.csv",),
         damage_metrics("epoch,train_loss,val_loss,test_loss\n0,1.0,oops\n")),
    Case("evaluate-metrics-columns", "evaluate", lambda w: [str(w.run)], ("metrics.csv",),
         damage_metrics("epoch,loss\n0,1\n1,2\n")),
    Case("evaluate-nan-weights", "evaluate", lambda w: [str(w.run)], ("W1", "NaN"),
         damage_checkpoint(nan=True)),
    Case("evaluate-garbage-checkpoint", "evaluate", lambda w: [str(w.run)], ("cannot be read",),
         damage_checkpoint(garbage=True)),
    Case("evaluate-bad-split", "evaluate", lambda w: [str(w.run), "--split", "dev"],
         ("invalid choice",)),
    Case("evaluate-threads-huge", "evaluate", lambda w: [str(w.run), "--threads", "100000"],
         ("--threads",)),
    Case("evaluate-data-dir-empty", "evaluate", lambda w: [str(w.mrun), "--data-dir", w.nodata],
         ("missing",)),
    Case("evaluate-full-disk", "evaluate", lambda w: [str(w.run)], ("No space left",),
         run_on_full_disk),
    Case("evaluate-read-only", "evaluate", lambda w: [str(w.run)], ("cannot write",),
         immutable("run")),
    # --- dfc-export: data loss ---
    Case("export-netlist-over-checkpoint", "export", lambda w: [
        "--netlist", str(w.run / "checkpoint.pt"), str(w.run)], ("overwrite an input",)),
    Case("export-netlist-over-config", "export", lambda w: [
        "--netlist", str(w.run / "config.json"), str(w.run)], ("overwrite an input",)),
    Case("export-graph-over-weights", "export", lambda w: [
        "--graph", str(w.run / "weights.npz"), str(w.run)], ("overwrite an input",)),
    Case("export-netlist-is-graph", "export", lambda w: [
        "--netlist", w.o_cir, "--graph", w.o_cir, str(w.run)], ("same file",)),
    Case("export-netlist-over-sample", "export", lambda w: [
        "--netlist", w.x_npy, "--sample", w.x_npy, "--target", w.t_npy, str(w.run)],
         ("overwrite an input",), write_npy("x.npy", np.zeros(4))),
    # --- dfc-export: numbers ---
    Case("export-t-end-inf", "export", lambda w: ["--netlist", w.o_cir, "--t-end", "inf",
                                                  str(w.run)], ("positive numbers",)),
    Case("export-step-huge-grid", "export", lambda w: [
        "--netlist", w.o_cir, "--t-end", "1000", "--step", "1e-9", str(w.run)], ("limit",)),
    Case("export-settle-inf", "export", lambda w: ["--netlist", w.o_cir, "--settle", "inf",
                                                   str(w.run)], ("settling",)),
    Case("export-negative-reltol", "export", lambda w: [
        "--netlist", w.o_cir, "--reltol", "-1e-3", str(w.run)], ("reltol must be a positive",)),
    Case("export-negative-time-scale", "export", lambda w: [
        "--netlist", w.o_cir, "--time-scale", "-1e-6", str(w.run)], ("time_scale",)),
    Case("export-sample-float-index", "export", lambda w: [
        "--netlist", w.o_cir, "--sample", "1e12", str(w.run)], ("--sample",)),
    Case("export-sample-out-of-range", "export", lambda w: [
        "--netlist", w.o_cir, "--sample", "99999", str(w.run)], ("out of range",)),
    Case("export-sample-negative", "export", lambda w: [
        "--netlist", w.o_cir, "--sample", "-1", str(w.run)], ("out of range",)),
    # --- dfc-export: damaged inputs, NaN weights ---
    Case("export-npy-strings", "export", lambda w: [
        "--netlist", w.o_cir, "--sample", w.s_npy, "--target", w.s_npy, str(w.run)],
         ("real numbers",), write_npy("s.npy", np.array(["a", "b", "c", "d"]))),
    Case("export-npy-complex", "export", lambda w: [
        "--netlist", w.o_cir, "--sample", w.c_npy, "--target", w.c_npy, str(w.run)],
         ("real numbers",), write_npy("c.npy", np.ones(4) * (1 + 2j))),
    Case("export-npy-nan", "export", lambda w: [
        "--netlist", w.o_cir, "--phase", "op", "--sample", w.n_npy, str(w.run)], ("NaN",),
         write_npy("n.npy", np.array([0.0, np.nan, 0.0, 0.0]))),
    Case("export-npy-wrong-size", "export", lambda w: [
        "--netlist", w.o_cir, "--sample", "0", "--target", w.t_npy, str(w.run)],
         ("must hold 2 values",), write_npy("t.npy", np.zeros(7))),
    Case("export-npy-damaged", "export", lambda w: [
        "--netlist", w.o_cir, "--phase", "op", "--sample", w.d_npy, str(w.run)],
         ("cannot read",), write_file("d.npy", "garbage")),
    Case("export-op-nan-weights", "export", lambda w: [
        "--netlist", w.o_cir, "--phase", "op", str(w.run)], ("W1", "NaN"),
         damage_checkpoint(nan=True)),
    Case("export-nothing", "export", lambda w: [str(w.run)], ("nothing to write",)),
    Case("export-file-as-run", "export", lambda w: ["--netlist", w.o_cir, w.f], ("is a file",),
         write_file("f")),
    Case("export-into-missing-folder", "export", lambda w: [
        "--netlist", str(w.tmp / "no" / "o.cir"), str(w.run)], ("cannot write",)),
    Case("export-full-disk", "export", lambda w: [
        "--netlist", str(w.tmp / "full" / "o.cir"), str(w.run)], ("No space left",), full_disk),
    Case("export-data-dir-empty", "export", lambda w: [
        "--netlist", w.o_cir, "--data-dir", w.nodata, str(w.mrun)], ("missing",)),
    # --- dfc-validate ---
    Case("validate-huge-points", "validate", lambda w: [str(w.run), "--points", "1" + "0" * 12],
         ("points", "limit")),
    Case("validate-points-float", "validate", lambda w: [str(w.run), "--points", "1e12"],
         ("--points",)),
    Case("validate-one-point", "validate", lambda w: [str(w.run), "--points", "1"],
         ("points",)),
    Case("validate-negative-reltol", "validate", lambda w: [str(w.run), "--reltol", "-1e-3"],
         ("reltol must be a positive",)),
    Case("validate-reltol-above-one", "validate", lambda w: [str(w.run), "--reltol", "2"],
         ("below 1",)),
    Case("validate-t-end-inf", "validate", lambda w: [str(w.run), "--t-end", "inf"],
         ("t_end",)),
    Case("validate-negative-safety", "validate", lambda w: [str(w.run), "--safety", "-1"],
         ("safety",)),
    Case("validate-zero-workers", "validate", lambda w: [str(w.run), "--workers", "0"],
         ("workers",)),
    Case("validate-zero-samples", "validate", lambda w: [str(w.run), "--samples", "0"],
         ("samples",)),
    Case("validate-index-out-of-range", "validate", lambda w: [
        str(w.run), "--sample-index", "3", "99999"], ("99999", "out of range")),
    Case("validate-index-negative", "validate", lambda w: [str(w.run), "--sample-index", "-1"],
         ("out of range",)),
    Case("validate-index-twice", "validate", lambda w: [str(w.run), "--sample-index", "1", "1"],
         ("differ",)),
    Case("validate-bad-split", "validate", lambda w: [str(w.run), "--split", "dev"],
         ("invalid choice",)),
    Case("validate-missing-run", "validate", lambda w: [w.nope], ("does not exist",)),
    Case("validate-file-as-run", "validate", lambda w: [w.f], ("is a file",), write_file("f")),
    Case("validate-nan-weights", "validate", lambda w: [str(w.run)], ("W1", "NaN"),
         damage_checkpoint(nan=True)),
    Case("validate-out-is-file", "validate", lambda w: [str(w.run), "--out", w.f],
         ("is a file",), write_file("f")),
    Case("validate-data-dir-empty", "validate", lambda w: [str(w.mrun), "--data-dir", w.nodata],
         ("missing",)),
    # --- figures ---
    Case("figures-seed-negative", "figures", lambda w: ["fig1d", "--out", w.o, "--seed", "-5"],
         ("seed",)),
    Case("figures-bad-figure", "figures", lambda w: ["fig9", "--out", w.o], ("invalid choice",)),
    Case("figures-no-out", "figures", lambda w: ["fig1d"], ("--out",)),
    Case("figures-out-is-file", "figures", lambda w: ["fig1d", "--out", w.f], ("is a file",),
         write_file("f")),
    Case("figures-threads-negative", "figures", lambda w: ["fig1d", "--out", w.o, "--threads",
                                                           "-1"], ("--threads",)),
    Case("figures-read-only", "figures", lambda w: ["fig1d", "--out", str(w.tmp / "ro" / "f")],
         ("cannot write",), immutable("ro")),
]


def test_the_table_covers_every_command_line():
    assert len(CASES) >= 60 and len({c.name for c in CASES}) == len(CASES)
    assert {c.cli for c in CASES} == set(MAINS)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input(case, runs, tmp_path, capsys):
    w = W(tmp_path, tmp_path / "run", tmp_path / "mrun")
    shutil.copytree(runs / "run", w.run)
    shutil.copytree(runs / "mrun", w.mrun)
    try:
        if case.setup is not None:
            case.setup(w)
        argv = [str(a) for a in case.argv(w)]
        before = hash_tree(tmp_path)
        capsys.readouterr()
        try:
            code = MAINS[case.cli](argv)
        except SystemExit as exc:      # argparse's own errors
            code = exc.code
        out, err = capsys.readouterr()
        assert_one_sentence(code, out, err, case.words)
        after = hash_tree(tmp_path)
        changed = [p for p, h in before.items() if after.get(p) != h]
        assert not changed, f"changed or removed: {changed}"
        assert not (tmp_path / "nodata").exists()      # a failed data look-up makes no folder
    finally:
        for undo in reversed(w.cleanups):
            undo()


# ------------------------------------------------------------------------------------------
# Real processes: the console entry, Ctrl-C during start-up, two trainings into one folder


def python(*args, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=kwargs.pop("cwd", ROOT), **kwargs)


def test_export_over_its_checkpoint_in_a_real_process(runs, tmp_path):
    run = shutil.copytree(runs / "run", tmp_path / "run")
    before = hash_tree(run)
    proc = python("-m", "dfc_analog.export", "--netlist", str(run / "checkpoint.pt"), str(run))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: --netlist") and proc.stderr.count("\n") == 1
    assert hash_tree(run) == before


def test_ctrl_c_during_start_up_is_quiet(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "dfc_analog.train", "--out",
                             str(tmp_path / "r")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    time.sleep(0.6)            # inside the imports of torch and the package
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err


def test_two_trainings_into_one_folder(tmp_path):
    """Started together, one trains and the other is refused (the lock, or the finished run):
    the folder holds one complete run."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, "-m", "dfc_analog.train", "--out", str(tmp_path / "run"),
            "--layer-sizes", "4", "3", "2", "--activations", "tanh", "linear",
            "--train-samples", "300", "--val-samples", "20", "--test-samples", "20", "--epochs",
            "2", "--no-progress", "--threads", "1"]
    procs = [subprocess.Popen(argv + ["--seed", str(s)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env) for s in (1, 2)]
    results = [(p.wait(timeout=300), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 2], results
    winner = next(k for k, (code, _, _) in enumerate(results) if code == 0)
    loser_err = results[1 - winner][2]
    assert "Traceback" not in loser_err and loser_err.count("error:") == 1
    # the holder names itself in the lock file just after taking the lock: a loser that
    # reads it in between is told of "another process"
    assert "is in use by" in loser_err or "already holds a run" in loser_err
    cfg, net = runio.load_run(tmp_path / "run")
    state = runio.load_checkpoint(tmp_path / "run", runio.CHECKPOINT_KEYS)
    assert cfg.seed == (1, 2)[winner] and state["config"]["seed"] == cfg.seed
    import json
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == cfg.seed
    weights = np.load(tmp_path / "run" / "weights.npz")
    torch.testing.assert_close(torch.from_numpy(weights["W1"]), net.W[0].detach().double())
    assert len(state["metrics"]) == 3
