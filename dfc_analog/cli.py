"""What every command line shares: its name in usage, ``--version``, ``--threads``, negative
numbers as option values, and one way to end — ``error: <sentence>`` with exit status 2 for bad
input, exit status 130 for Ctrl-C, never a traceback.

A command is a ``main(argv=None) -> int`` decorated with :func:`command`. The console scripts
(``dfc-train``, ...) enter through :func:`entry`, which makes Ctrl-C quiet from the first moment,
while the heavy modules (torch) are still being imported; ``python -m dfc_analog.<tool>`` does the
same with :func:`quiet_startup` at the top of the tool's module.

This module imports nothing heavy: it runs before torch is loaded.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import os
import re
import signal
import sys

from dfc_analog.errors import DFCError
from dfc_analog.parallel import available_cores

# console script -> module of its main()
SCRIPTS = {"dfc-train": "train", "dfc-evaluate": "evaluate", "dfc-export": "export",
           "dfc-validate": "validate", "dfc-figures": "figures", "dfc-sweep": "sweep.cli"}
_NUMBER = re.compile(r"^-(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^-(inf|infinity|nan)$", re.IGNORECASE)


def _exit_quietly(signum, frame):
    raise SystemExit(128 + signum)


def quiet_startup() -> None:
    """Until a command's main() runs, Ctrl-C ends the process with status 130 and no
    traceback (it would otherwise interrupt the import of torch with one)."""
    signal.signal(signal.SIGINT, _exit_quietly)


def prog(module: str) -> str:
    """The name the user typed: the console script (``dfc-train``) or
    ``python -m dfc_analog.<module>``."""
    name = os.path.basename(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if name in SCRIPTS:
        return name
    return f"python -m dfc_analog.{module}"


class Parser(argparse.ArgumentParser):
    """argparse with negative numbers as option values: ``--reltol -1e-3`` reaches the option's
    own check instead of being taken for an option (argparse only knows ``-1`` and ``-.5``)."""

    def _parse_optional(self, arg_string):
        if _NUMBER.match(arg_string):
            return None
        return super()._parse_optional(arg_string)


def parser(module: str, threads: bool = True, **kwargs) -> Parser:
    """An argument parser named after the command, with ``--version`` and (unless the command
    takes it elsewhere) ``--threads``."""
    from dfc_analog.version import __version__

    name = prog(module)
    p = Parser(prog=name, **kwargs)
    p.add_argument("--version", action="version", version=f"{name} {__version__}",
                   help="print the version and exit")
    if threads:
        add_threads_argument(p)
    return p


def add_threads_argument(p, default=None) -> None:
    p.add_argument("--threads", type=int, metavar="N", default=default,
                   help="torch threads (default: the available cores, "
                        f"{available_cores()} here)")


def set_threads(n: int | None) -> int:
    """Apply ``--threads`` (None: the available cores); returns the number used."""
    if n is None or n == 0:
        n = available_cores()
    if not 1 <= n <= 4096:
        raise DFCError(f"--threads must be between 1 and 4096, got {n}.")
    import torch
    torch.set_num_threads(n)
    return n


def command(main):
    """Wrap a ``main(argv) -> int``: :class:`DFCError` → ``error: <sentence>`` and exit status 2;
    an ``OSError`` no writer turned into a sentence → the same, naming the file; Ctrl-C → 130."""
    @functools.wraps(main)
    def run(argv=None) -> int:
        if signal.getsignal(signal.SIGINT) is _exit_quietly:   # start-up is over
            signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            return main(argv)
        except DFCError as exc:
            return fail(exc)
        except OSError as exc:
            return fail(os_error_sentence(exc))
        except KeyboardInterrupt:
            sys.stderr.flush()
            return 130
    return run


def fail(message) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def os_error_sentence(exc: OSError, action: str = "cannot access") -> str:
    """``cannot access 'FILE': <reason>.`` from an OSError."""
    where = f" '{exc.filename}'" if exc.filename else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{action}{where}: {reason}."


def entry(script: str):
    """The console script ``script``: quiet Ctrl-C during start-up, then the command's main."""
    quiet_startup()
    try:
        module = importlib.import_module(f"dfc_analog.{SCRIPTS[script]}")
    except KeyboardInterrupt:   # a handler installed by an import
        sys.exit(130)
    sys.exit(module.main())


def train():
    entry("dfc-train")


def evaluate():
    entry("dfc-evaluate")


def export():
    entry("dfc-export")


def validate():
    entry("dfc-validate")


def figures():
    entry("dfc-figures")


def sweep():
    entry("dfc-sweep")
