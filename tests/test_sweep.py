"""Sweeps (``dfc-sweep``, :mod:`dfc_analog.sweep`): the same table from the local and the Ray
executor, resuming a killed sweep without recomputing finished cells, a failing cell reported
with its parameters while the others go on, and a ``ray start --head`` cluster reached through
``--address``."""
import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from dfc_analog.parallel import TaskFailure, run_tasks
from dfc_analog.sweep.cli import main, parse_values, sweep_cells

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "method='dfc-ssa'", "--set", "train_samples=64", "--set", "val_samples=16",
        "--set", "test_samples=16", "--set", "epochs=1", "--set", "diagnostics=false"]


def ray_missing() -> bool:
    try:
        import ray  # noqa: F401
    except ImportError:
        return True
    return False


def table(out: Path) -> list:
    with open(out / "results.csv") as f:
        return sorted((dict(r) for r in csv.DictReader(f)), key=lambda r: r["seed"])


def test_values_and_cells():
    assert parse_values("k_p=1.5,2") == ("k_p", [1.5, 2])
    assert parse_values("method=dfc,'bp'") == ("method", ["dfc", "bp"])
    cells = sweep_cells({"seed": 3}, [("k_p", [1, 2])], 2)
    assert cells == [{"k_p": 1, "seed": 3}, {"k_p": 1, "seed": 4},
                     {"k_p": 2, "seed": 3}, {"k_p": 2, "seed": 4}]


def double(x):
    if x < 0:
        raise ValueError(f"negative input {x}")
    return 2 * x


def test_local_executor_in_process_and_in_workers():
    jobs = [dict(x=k) for k in range(5)]
    assert sorted(run_tasks(double, jobs, workers=1)) == [(k, 2 * k) for k in range(5)]
    assert sorted(run_tasks(double, jobs, workers=2)) == [(k, 2 * k) for k in range(5)]
    out = dict(run_tasks(double, [dict(x=1), dict(x=-1)], workers=1, capture=True))
    assert out[0] == 2 and isinstance(out[1], TaskFailure) and "negative input -1" in out[1].error


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_failing_cell_is_reported_and_the_sweep_goes_on(tmp_path, capsys):
    """The cell on device 'cuda' fails on a machine without one: it is reported with its
    parameters, the other cell finishes, the exit status is 1, and a second run retries only the
    failed cell."""
    out = tmp_path / "sweep"
    argv = TINY + ["--vary", "device='cpu','cuda'", "--out", str(out), "--workers", "1",
                   "--no-progress"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert "'device': 'cuda'" in captured.err and "--device cpu" in captured.err
    assert [r["device"] for r in table(out)] == ["cpu"]
    (failure,) = [json.loads(p.read_text()) for p in (out / "failures").glob("*.json")]
    assert failure["params"] == {"device": "cuda", "seed": 42}
    assert main(argv) == 1
    assert "0 cells computed, 1 already finished, 1 failed" in capsys.readouterr().out


def test_killed_sweep_resumes_without_recomputing(tmp_path):
    """A sweep killed (SIGKILL) after its first cell finished computes only the others when run
    again, and leaves the finished cell's file untouched."""
    out = tmp_path / "sweep"
    argv = [sys.executable, "-m", "dfc_analog.sweep", *TINY, "--set", "epochs=3", "--seeds", "3",
            "--out", str(out), "--workers", "1", "--no-progress"]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "cells").glob("*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = {p.name: p.stat().st_mtime_ns for p in (out / "cells").glob("*.json")}
    assert 1 <= len(first) < 3
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"{3 - len(first)} cells computed, {len(first)} already finished" in done.stdout
    for name, mtime in first.items():
        assert (out / "cells" / name).stat().st_mtime_ns == mtime
    assert len(table(out)) == 3


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(ray_missing(), reason="needs Ray")
def test_local_and_ray_executors_give_the_same_table(tmp_path):
    argv = TINY + ["--seeds", "3", "--no-progress", "--workers", "2"]
    assert main(argv + ["--out", str(tmp_path / "local")]) == 0
    # Ray in a process of its own, so that this test process keeps no Ray state
    ray = subprocess.run([sys.executable, "-m", "dfc_analog.sweep", *argv, "--executor", "ray",
                          "--out", str(tmp_path / "ray")], cwd=ROOT, capture_output=True,
                         text=True, timeout=600)
    assert ray.returncode == 0, ray.stderr
    local, remote = table(tmp_path / "local"), table(tmp_path / "ray")
    assert [(r["seed"], r["value"]) for r in local] == [(r["seed"], r["value"]) for r in remote]


@pytest.mark.skipif(ray_missing(), reason="needs Ray")
def test_ray_cluster_through_address(tmp_path):
    """``ray start --head`` on this machine, the sweep sent to it with --address."""
    ray_cli = Path(sys.executable).parent / "ray"
    port = free_port()
    # a throw-away cluster on the loopback address, without Ray's token authentication
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    start = subprocess.run([str(ray_cli), "start", "--head", f"--port={port}", "--num-cpus=2",
                            "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                            "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=180, env=env)
    if start.returncode != 0:
        pytest.skip(f"ray start --head failed here: {start.stderr[-300:]}")
    try:
        run = subprocess.run([sys.executable, "-m", "dfc_analog.sweep", *TINY, "--seeds", "2",
                              "--executor", "ray", "--address", f"127.0.0.1:{port}",
                              "--out", str(tmp_path / "cluster"), "--no-progress"],
                             cwd=ROOT, capture_output=True, text=True, timeout=600, env=env)
        assert run.returncode == 0, run.stderr
        assert len(table(tmp_path / "cluster")) == 2
    finally:
        subprocess.run([str(ray_cli), "stop", "--force"], capture_output=True, timeout=120,
                       env=env)


def test_bad_sweep_input_is_one_sentence(tmp_path, capsys):
    assert main(["--vary", "k_p", "--out", str(tmp_path / "a")]) == 2
    assert "--vary expects KEY=V1,V2" in capsys.readouterr().err
    assert main(["--vary", "tau_v=-1", "--out", str(tmp_path / "b")]) == 2
    assert "tau_v" in capsys.readouterr().err
    assert main(["--address", "127.0.0.1:1", "--out", str(tmp_path / "c")] + TINY) == 2
    assert "--executor ray" in capsys.readouterr().err
    assert main(["--executor", "ray", "--address", "127.0.0.1:1", "--out", str(tmp_path / "d")]
                + TINY) == 2
    assert "no Ray cluster answers at 127.0.0.1:1" in capsys.readouterr().err
