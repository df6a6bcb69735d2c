"""The sweep folder: what a sweep is, and every result as it arrives.

    OUT/
      sweep.json         the task, its fixed settings and the list of cells (one dict each)
      cells/<key>.json   one finished cell: its parameters, its result, seconds, where it ran
      failures/<key>.json  a cell whose task raised: the error in one line (run again on resume)
      results.csv        every finished cell, a row each (rewritten as results arrive)

A cell's key is a hash of its parameters, so a cell is recognised whatever order the cells come
in. Every file is written atomically, so an interrupted sweep loses at most the cells that were
running, and running the same sweep again computes only what is missing.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path

from dfc_analog.errors import ConfigError, DFCError
from dfc_analog.runio import atomic_write, prepare_run_dir

SWEEP = "sweep.json"
RESULTS = "results.csv"


def cell_key(params: dict) -> str:
    """A stable name for a cell: 16 hex digits of the hash of its parameters."""
    text = json.dumps(params, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class SweepFolder:
    """A sweep's folder: its definition (``sweep.json``) and the finished cells.

    Another sweep in the same folder is an error; ``overwrite`` discards its cells, and
    ``redefine`` does so only when the definition changed (the cells' tasks decide what of their
    own output they can continue, as a training run continues with more epochs)."""

    def __init__(self, path, task: str, settings: dict, cells: list, overwrite: bool = False,
                 redefine: bool = False):
        self.path = prepare_run_dir(Path(path))
        self.definition = {"task": task, "settings": settings, "cells": cells}
        keys = [cell_key(c) for c in cells]
        if len(set(keys)) != len(keys):
            raise ConfigError("the sweep names the same cell twice.")
        existing = self.path / SWEEP
        if existing.exists() and not overwrite:
            try:
                stored = json.loads(existing.read_text())
            except (OSError, ValueError) as exc:
                raise DFCError(f"cannot read '{existing}': {exc}.") from None
            if stored != json.loads(json.dumps(self.definition)) and redefine:
                overwrite = True            # the cells' results are stale; their runs are not
            elif stored != json.loads(json.dumps(self.definition)):
                raise ConfigError(f"'{self.path}' holds another sweep; use another --out, or "
                                  "--overwrite to start afresh.")
        if overwrite:
            for sub in ("cells", "failures"):
                for old in (self.path / sub).glob("*.json"):
                    old.unlink()
        for sub in ("cells", "failures"):
            (self.path / sub).mkdir(exist_ok=True)
        atomic_write(existing, (json.dumps(self.definition, indent=1) + "\n").encode())
        self.cells = {key: cell for key, cell in zip(keys, cells)}

    def done(self) -> dict:
        """key -> record of every finished cell of this sweep (damaged files count as missing)."""
        records = {}
        for path in (self.path / "cells").glob("*.json"):
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue
            if path.stem in self.cells and record.get("params") == self.cells[path.stem]:
                records[path.stem] = record
        return records

    def pending(self) -> dict:
        """key -> parameters of every cell still to compute, in the sweep's order."""
        finished = self.done()
        return {key: cell for key, cell in self.cells.items() if key not in finished}

    def record(self, key: str, result: dict, seconds: float) -> None:
        record = {"params": self.cells[key], "result": result, "seconds": round(seconds, 3)}
        atomic_write(self.path / "cells" / f"{key}.json", (json.dumps(record) + "\n").encode())
        failure = self.path / "failures" / f"{key}.json"
        if failure.exists():
            failure.unlink()

    def record_failure(self, key: str, error: str) -> None:
        record = {"params": self.cells[key], "error": error}
        atomic_write(self.path / "failures" / f"{key}.json", (json.dumps(record) + "\n").encode())

    def failures(self) -> list:
        out = []
        for path in sorted((self.path / "failures").glob("*.json")):
            try:
                out.append(json.loads(path.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def rows(self) -> list:
        """One flat dict per finished cell (parameters, then results), in the sweep's order."""
        finished = self.done()
        return [{**finished[key]["params"], **finished[key]["result"]}
                for key in self.cells if key in finished]

    def write_table(self) -> Path:
        rows = self.rows()
        columns = list(dict.fromkeys(k for row in rows for k in row))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        atomic_write(self.path / RESULTS, buf.getvalue().encode())
        return self.path / RESULTS
