"""Run one netlist in ngspice's shared library through PySpice; also a stand-alone worker script.

This module imports nothing from ``dfc_analog`` (only numpy and PySpice), so that
:func:`dfc_analog.circuit.simulate.run_netlist` can start it as a fresh, light process for every
run: ``python ngspice_worker.py NETLIST NAMES_JSON OUT_NPZ``. A fresh process per run isolates
the caller from PySpice's ~13 MiB leak per transient and from ngspice's global state, and it
needs no fork of the caller (ngspice uses OpenMP, which does not survive a fork of a process
whose OpenMP pool torch has started).

PySpice 1.5 on ngspice ≥ 35: its "Unsupported Ngspice version" log is silenced; its habit of
treating every stderr note (gmin stepping, "Note: ...") as a failure is bypassed by issuing the
run command directly and judging ngspice's messages here; and Debian's ``libngspice0`` ships
``libngspice.so.0`` where PySpice looks for ``libngspice.so``, so the library is located here
(``$NGSPICE_LIBRARY_PATH`` wins) and handed to PySpice.
"""
from __future__ import annotations

import ctypes.util
import json
import logging
import os
import sys
from pathlib import Path

import numpy as np

INSTALL = "sudo apt-get install -y ngspice libngspice0"
FAILED = 3          # exit status of the worker script when ngspice fails
# ngspice stderr text that means the analysis failed (everything else is a note or a warning).
_FAILURES = ("error", "timestep too small", "singular matrix", "no convergence", "aborted",
             "stepping failed", "unknown", "could not find")


class SimulatorFailure(Exception):
    """One sentence on why ngspice could not give a result."""


def library_path() -> str:
    """The ngspice shared library: ``$NGSPICE_LIBRARY_PATH``, else the one the loader finds."""
    path = os.environ.get("NGSPICE_LIBRARY_PATH") or ctypes.util.find_library("ngspice")
    if path:
        return path
    for candidate in ("/usr/lib/x86_64-linux-gnu/libngspice.so.0",
                      "/usr/lib/aarch64-linux-gnu/libngspice.so.0", "/usr/lib/libngspice.so.0",
                      "/usr/local/lib/libngspice.so"):
        if Path(candidate).exists():
            return candidate
    raise SimulatorFailure(f"the ngspice shared library (libngspice) is not installed; install "
                           f"it with '{INSTALL}' (or set NGSPICE_LIBRARY_PATH to the library).")


def _shared():
    """This process's ngspice instance (PySpice's NgSpiceShared), quiet."""
    path = library_path()
    try:
        from PySpice.Spice.NgSpice.Shared import NgSpiceShared
    except ImportError as exc:
        raise SimulatorFailure(f"PySpice cannot be imported ({exc}); install the package with "
                               "'.venv/bin/pip install -c constraints.txt -e .'.") from None
    logging.getLogger("PySpice.Spice.NgSpice.Shared").setLevel(logging.CRITICAL)
    NgSpiceShared.LIBRARY_PATH = path
    try:
        return NgSpiceShared.new_instance()
    except OSError as exc:
        raise SimulatorFailure(f"cannot load the ngspice library '{path}' ({exc}); install it "
                               f"with '{INSTALL}'.") from None


def _first_failure(lines) -> str | None:
    """The first failure message, with its continuation line when it ends in a colon."""
    lines = [line.strip() for line in lines if line.strip()]
    for n, text in enumerate(lines):
        low = text.lower()
        if not low.startswith(("warning", "note")) and any(word in low for word in _FAILURES):
            if text.endswith(":") and n + 1 < len(lines):
                text = f"{text} {lines[n + 1]}"
            return text
    return None


def run(netlist: str, vectors: list) -> dict:
    """Load ``netlist`` into this process's ngspice, run its analysis and return the named node
    vectors (and ``time`` for a transient) as float64 arrays."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceCircuitError, ffi, ffi_string_utf8
    ng = _shared()
    lib = ng._ngspice_shared
    before = ffi_string_utf8(lib.ngSpice_CurPlot())
    try:
        ng.load_circuit(netlist)
    except NgSpiceCircuitError:
        pass  # judged from ngspice's own messages below
    failure = _first_failure(ng._stderr + ng._stdout)
    if failure:
        raise SimulatorFailure(f"ngspice rejected the netlist: {failure}")
    ng.clear_output()
    lib.ngSpice_Command(b"run")
    plot = ffi_string_utf8(lib.ngSpice_CurPlot())
    failure = _first_failure(ng._stderr)
    if failure or plot == before or plot == "const":
        raise SimulatorFailure(
            f"the circuit failed to converge in ngspice ({failure or 'no result'}); use looser "
            "SPICE tolerances, a smaller max step, or a smaller k_p or target step size.")
    out = {}
    for name in (["time"] if plot.startswith("tran") else []) + list(vectors):
        info = lib.ngGet_Vec_Info(f"{plot}.{name}".encode())
        if info == ffi.NULL or info.v_realdata == ffi.NULL:
            raise SimulatorFailure(f"ngspice returned no vector '{name}' for the {plot} "
                                   "analysis.")
        out[name] = np.frombuffer(ffi.buffer(info.v_realdata, info.v_length * 8),
                                  dtype=np.float64).copy()
    lib.ngSpice_Command(b"destroy all")
    lib.ngSpice_Command(b"remcirc")
    return out


def main(argv) -> int:
    netlist, names, out = argv
    try:
        data = run(Path(netlist).read_text(), json.loads(Path(names).read_text()))
    except SimulatorFailure as exc:
        print(exc, file=sys.stderr)
        return FAILED
    np.savez(out, **data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
