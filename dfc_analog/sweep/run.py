"""Running a sweep: every pending cell of a :class:`SweepFolder` as a task of
:func:`dfc_analog.parallel.run_tasks`, each result written as it arrives.

A cell whose task raises is written to ``failures/`` with its parameters and the sweep goes on;
running the sweep again retries it. The same cells and seeds give the same table with every
executor, since each cell's randomness comes from its own parameters only.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Callable

from dfc_analog.parallel import TaskFailure, run_tasks
from dfc_analog.sweep.folder import SweepFolder


@dataclass
class SweepOutcome:
    """What one invocation did: cells computed now, found finished, and failed."""

    computed: int
    reused: int
    failed: list        # failure records {"params", "error"}
    folder: SweepFolder


def timed(task: Callable, kwargs: dict) -> tuple:
    """(task's result, seconds it took): the unit of work each executor runs."""
    start = time.perf_counter()
    result = task(**kwargs)
    return result, time.perf_counter() - start


def run_sweep(folder: SweepFolder, task: Callable, executor: str = "local",
              workers: int | None = None, address: str | None = None,
              progress: bool = True, threads: int | None = None) -> SweepOutcome:
    """Compute every pending cell of ``folder`` by ``task(params=cell, **settings)``."""
    from tqdm import tqdm

    pending = folder.pending()
    keys = list(pending)
    settings = folder.definition["settings"]
    jobs = [dict(task=task, kwargs=dict(params=pending[key], **settings)) for key in keys]
    reused = len(folder.cells) - len(keys)
    failed = []
    with tqdm(total=len(folder.cells), initial=reused, desc=f"sweep {folder.path.name}",
              unit="cell", disable=not progress) as bar:
        for index, outcome in run_tasks(timed, jobs, workers, capture=True, executor=executor,
                                        address=address, threads=threads):
            key = keys[index]
            if isinstance(outcome, TaskFailure):
                folder.record_failure(key, outcome.error)
                failed.append({"params": pending[key], "error": outcome.error})
                bar.write(f"cell {pending[key]} failed: {outcome.error}", file=sys.stderr)
            else:
                result, seconds = outcome
                folder.record(key, result, seconds)
            bar.update()
    folder.write_table()
    return SweepOutcome(len(keys) - len(failed), reused, failed, folder)
