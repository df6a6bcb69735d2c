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

``python ngspice_worker.py --serve`` is a persistent simulator instead (:func:`serve`): it loads
one circuit and then, per request, changes sources and conductances with ngspice ``alter``
commands and re-runs the analysis (training with SPICE in the loop). A vector parameter too long
for one command (ngspice reads at most 1,024 characters of a command: the PWL corners of a
sleep phase's noise source, 52 corners in ~1,700 characters, are silently misread) comes
through a binary rawfile instead (:func:`_alter_vectors`).
"""
from __future__ import annotations

import ctypes.util
import json
import logging
import os
import sys
import tempfile
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


def _load(ng, netlist: str) -> None:
    """Load ``netlist`` into ``ng``, judging ngspice's own messages."""
    from PySpice.Spice.NgSpice.Shared import NgSpiceCircuitError
    try:
        ng.load_circuit(netlist)
    except NgSpiceCircuitError:
        pass  # judged from ngspice's own messages below
    failure = _first_failure(ng._stderr + ng._stdout)
    if failure:
        raise SimulatorFailure(f"ngspice rejected the netlist: {failure}")
    ng.clear_output()


def _analyse(ng, vectors: list) -> dict:
    """Run the loaded circuit's analysis; the named vectors (and ``time`` for a transient) as
    float64 arrays; the plot is destroyed afterwards."""
    from PySpice.Spice.NgSpice.Shared import ffi, ffi_string_utf8
    lib = ng._ngspice_shared
    before = ffi_string_utf8(lib.ngSpice_CurPlot())
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
    ng.clear_output()
    return out


def run(netlist: str, vectors: list) -> dict:
    """Load ``netlist`` into this process's ngspice, run its analysis and return the named node
    vectors (and ``time`` for a transient) as float64 arrays."""
    ng = _shared()
    _load(ng, netlist)
    out = _analyse(ng, vectors)
    ng._ngspice_shared.ngSpice_Command(b"remcirc")
    return out


def _alter(ng, commands: list) -> None:
    """Issue ngspice ``alter`` commands (``alter NAME PARAM = VALUE``) on the loaded circuit."""
    lib = ng._ngspice_shared
    for command in commands:
        lib.ngSpice_Command(command.encode())
    failure = _first_failure(ng._stderr + ng._stdout)
    if failure:
        raise SimulatorFailure(f"ngspice refused a change of the circuit: {failure}")
    ng.clear_output()


def _alter_vectors(ng, arrays: dict, rawfile: str) -> None:
    """Set vector parameters of the loaded circuit, ``arrays``: ``'@NAME[PARAM]'`` → float64
    array (e.g. a PWL source's corners t_0 v_0 t_1 v_1 ...), through ``rawfile``: written as an
    ngspice binary rawfile (one plot, a vector per parameter), loaded, each parameter altered to
    its vector, and the plot destroyed: the values exact to the last bit, in a few ms (the
    toy net's 25 noise sources and inputs: 8 ms per sample, 3 % of its sleep transient)."""
    from PySpice.Spice.NgSpice.Shared import ffi_string_utf8
    lib = ng._ngspice_shared
    by_length = {}
    for param, values in arrays.items():
        by_length.setdefault(len(values), []).append((param, values))
    for length, group in by_length.items():
        data = np.column_stack([np.arange(length, dtype=np.float64)] +
                               [np.asarray(v, dtype=np.float64) for _, v in group])
        head = ["Title: vector parameters", "Date: -", "Plotname: vectors", "Flags: real",
                f"No. Variables: {data.shape[1]}", f"No. Points: {length}", "Variables:",
                "\t0\tindex\tnotype"]
        head += [f"\t{n + 1}\tp{n}\tnotype" for n in range(len(group))] + ["Binary:", ""]
        with open(rawfile, "wb") as f:
            f.write("\n".join(head).encode())
            f.write(np.ascontiguousarray(data, dtype="<f8").tobytes())
        before = ffi_string_utf8(lib.ngSpice_CurPlot())
        lib.ngSpice_Command(f"load {rawfile}".encode())
        plot = ffi_string_utf8(lib.ngSpice_CurPlot())
        if plot == before:
            raise SimulatorFailure("ngspice could not load the vector parameters' rawfile.")
        for n, (param, _) in enumerate(group):
            lib.ngSpice_Command(f"alter {param} = {plot}.p{n}".encode())
        lib.ngSpice_Command(f"destroy {plot}".encode())
    failure = _first_failure(ng._stderr)
    if failure:
        raise SimulatorFailure(f"ngspice refused a change of the circuit: {failure}")
    ng.clear_output()


def serve(requests, replies) -> None:
    """A persistent simulator: pickled requests on ``requests``, pickled replies on ``replies``.

    ``("load", netlist)`` loads the circuit once; ``("run", common, per_run, vectors)`` issues
    the alter commands ``common`` once, then per entry ``(commands, arrays)`` of ``per_run`` its
    alter commands, its vector parameters (:func:`_alter_vectors`, ``{}`` for none) and the
    analysis, and replies the last value of each named vector, an array (len(per_run),
    len(vectors)); ``("quit",)`` ends. A reply is ``("ok", value)`` or ``("error", sentence)``.
    """
    import pickle
    ng = None
    with tempfile.TemporaryDirectory(prefix="dfc-ngspice-") as tmp:
        rawfile = str(Path(tmp) / "vectors.raw")
        while True:
            try:
                request = pickle.load(requests)
            except EOFError:
                return
            if request[0] == "quit":
                return
            try:
                if ng is None:
                    ng = _shared()
                if request[0] == "load":
                    _load(ng, request[1])
                    value = None
                else:
                    _, common, per_run, vectors = request
                    _alter(ng, common)
                    value = np.empty((len(per_run), len(vectors)))
                    for n, (commands, arrays) in enumerate(per_run):
                        _alter(ng, commands)
                        if arrays:
                            _alter_vectors(ng, arrays, rawfile)
                        data = _analyse(ng, vectors)
                        value[n] = [data[name][-1] for name in vectors]
                reply = ("ok", value)
            except SimulatorFailure as exc:
                reply = ("error", str(exc))
            pickle.dump(reply, replies, protocol=pickle.HIGHEST_PROTOCOL)
            replies.flush()


def main(argv) -> int:
    if argv == ["--serve"]:
        # the replies go on a private copy of stdout; ngspice's own prints go to stderr
        replies = os.fdopen(os.dup(1), "wb")
        os.dup2(2, 1)
        serve(sys.stdin.buffer, replies)
        return 0
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
