"""One way to run independent tasks in parallel: :func:`run_tasks`.

A task is a module-level callable and its keyword arguments, so that any backend can ship it to
another process. Results come back as the tasks finish, each with the index of its task. The
``local`` backend runs them in "spawn" worker processes of this machine, each with an equal share
of the cores for torch (one worker: in this very process, in order). The ``ray`` backend runs them
as Ray tasks: on a local Ray started on demand (nothing to start by hand), or on the cluster at
``address`` (``ray start --head`` prints it); a task whose worker is lost is run again. With
``capture=True`` a task that raises comes back as a :class:`TaskFailure` and the others go on;
otherwise the first error stops the run.
"""
from __future__ import annotations

import multiprocessing
import os
import traceback
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Callable, Iterator

from dfc_analog.errors import ConfigError


@dataclass(frozen=True)
class TaskFailure:
    """A task that raised: its index and the error, in one line."""

    index: int
    error: str

    def __str__(self) -> str:
        return f"task {self.index} failed: {self.error}"


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:                      # not on Linux
        return os.cpu_count() or 1


def _call(fn: Callable, kwargs: dict, threads: int | None, capture: bool, index: int):
    if threads is not None:
        import torch
        torch.set_num_threads(threads)
    if not capture:
        return fn(**kwargs)
    try:
        return fn(**kwargs)
    except Exception as exc:                    # reported with its task; the others go on
        last = traceback.extract_tb(exc.__traceback__)[-1]
        return TaskFailure(index, f"{type(exc).__name__}: {exc} ({os.path.basename(last.filename)}"
                                  f":{last.lineno})")


def _local(fn: Callable, jobs: list, workers: int, capture: bool, threads: int | None
           ) -> Iterator[tuple]:
    if workers == 1:
        for index, kwargs in enumerate(jobs):
            yield index, _call(fn, kwargs, None, capture, index)
        return
    threads = max(1, (threads or available_cores()) // workers)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context) as pool:
        futures = {pool.submit(_call, fn, kwargs, threads, capture, index): index
                   for index, kwargs in enumerate(jobs)}
        try:
            for future in as_completed(futures):
                yield futures[future], future.result()
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _check_reachable(address: str) -> None:
    """One sentence at once for a cluster address nobody answers at (Ray itself retries for
    minutes)."""
    import socket
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=5):
            pass
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no Ray cluster answers at {address} ({exc}); start one with "
                          "'ray start --head' or check --address.") from None


RAY_RETRIES = 3      # runs of a task whose worker process or node was lost


def _ray(fn: Callable, jobs: list, workers: int, capture: bool, address: str | None = None
         ) -> Iterator[tuple]:
    try:
        import ray
    except ImportError:
        raise ConfigError("the ray executor needs Ray: pip install 'ray>=2.40' (or use "
                          "--executor local).") from None
    if not ray.is_initialized():
        if address is not None:
            _check_reachable(address)
        try:
            ray.init(address=address, num_cpus=None if address else workers,
                     include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray"
            raise ConfigError(f"cannot start or reach {where}: {exc}".rstrip(".") + ".") from None
    threads = 1 if address is None else None
    remote = ray.remote(num_cpus=1, max_retries=RAY_RETRIES)(_call)
    refs = {remote.remote(fn, kwargs, threads, capture, index): index
            for index, kwargs in enumerate(jobs)}
    pending = list(refs)
    try:
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield refs[done[0]], ray.get(done[0])
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise


EXECUTORS = ("local", "ray")


def run_tasks(fn: Callable, jobs: list, workers: int | None = None, capture: bool = False,
              executor: str = "local", address: str | None = None,
              threads: int | None = None) -> Iterator[tuple]:
    """Run ``fn(**job)`` for every job; yields ``(index, result)`` as each finishes.

    ``workers``: parallel processes (default: one per available core, at most one per job; on a
    Ray cluster the cluster's own resources decide). ``threads``: torch threads in all, shared
    equally by local workers (default: the available cores). ``address``: a Ray cluster.
    """
    if executor not in EXECUTORS:
        raise ConfigError(f"unknown executor '{executor}': choose one of "
                          f"{', '.join(EXECUTORS)}.")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}.")
    if address is not None and executor != "ray":
        raise ConfigError("--address names a Ray cluster: use it with --executor ray.")
    if not jobs:
        return iter(())
    workers = max(1, min(len(jobs), workers or available_cores()))
    if executor == "ray":
        return _ray(fn, list(jobs), workers, capture, address)
    return _local(fn, list(jobs), workers, capture, threads)
