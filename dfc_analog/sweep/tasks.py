"""The tasks a sweep's cells run. Each is a module-level function ``task(params, **settings)``
returning a flat dict of numbers, so every executor can ship it and the table can hold it."""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

from dfc_analog import runio
from dfc_analog.circuit.learning import circuit_phases
from dfc_analog.config.options import Config
from dfc_analog.training.loop import metric_name, reported, run_training


def run_folder_name(params: dict) -> str:
    """``seed42``, or ``target_stepsize=0.01-seed42``: a cell's run folder."""
    parts = [f"{k}={v}" for k, v in params.items() if k != "seed"]
    return "-".join(parts + [f"seed{params.get('seed', '')}"])


def train_cell(params: dict, config: dict, root: str, verbose: bool = False,
               runs: str = "runs") -> dict:
    """Train the run of ``config`` with ``params`` on top into ``root/runs/<cell>``; an
    unfinished run there is continued (its settings must match; a finished one is only read).
    Returns the metric the run reports (Table 1's rule, :func:`reported`)."""
    cfg = Config.from_dict({**config, **params}, source=f"sweep cell {params}")
    out = Path(root) / runs / run_folder_name(params)
    resume = (out / runio.CHECKPOINT).exists()
    if resume:
        runio.check_same_run(out, cfg)
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        if verbose:
            print(f"{run_folder_name(params)}: {'continuing' if resume else 'training into'} "
                  f"{out}", flush=True)
        with circuit_phases(cfg) as phases:
            rows = run_training(cfg, out, resume=resume, progress=False, **phases)
    value, epoch = reported(cfg, rows)
    return {"metric": metric_name(cfg), "value": value, "epoch": epoch,
            "final_test_loss": rows[-1]["test_loss"]}


from dfc_analog.sweep.deploy import deploy_cell  # noqa: E402

TASKS = {"train": train_cell, "deploy": deploy_cell}
