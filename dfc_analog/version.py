"""The package's version and the git commit it runs from, recorded with every output.

``__version__`` has one source, the ``version`` of ``pyproject.toml``: read from the installed
package's metadata, or from ``pyproject.toml`` itself when the package runs from a source tree
that is not installed. :func:`provenance` is what run folders (``config.json``), validation
reports and netlist headers record.
"""
from __future__ import annotations

import functools
import subprocess
import tomllib
from importlib import metadata
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _version() -> str:
    pyproject = PACKAGE_DIR.parent / "pyproject.toml"
    try:     # a source checkout: its pyproject.toml is the truth even where an older copy is installed
        with open(pyproject, "rb") as f:
            project = tomllib.load(f).get("project", {})
        if project.get("name") == "dfc_analog":
            return str(project["version"])
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        pass
    try:
        return metadata.version("dfc_analog")
    except metadata.PackageNotFoundError:
        return "unknown"


__version__ = _version()


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """``git rev-parse HEAD`` of the checkout the package runs from; None outside a git checkout
    (an installed wheel) or without git."""
    try:
        proc = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True,
                              text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    if proc.returncode != 0 or len(commit) != 40:
        return None
    # the package must belong to that checkout, not sit in a venv inside some other repository
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=PACKAGE_DIR,
                         capture_output=True, text=True, timeout=10).stdout.strip()
    if not top or (Path(top) / "pyproject.toml").resolve().parent != PACKAGE_DIR.parent:
        return None
    return commit


def provenance(commit: bool = True) -> dict:
    """``{"dfc_analog_version": ..., "git_commit": ...}`` (the commit only where there is one and
    ``commit`` asks for it)."""
    out = {"dfc_analog_version": __version__}
    if commit and git_commit() is not None:
        out["git_commit"] = git_commit()
    return out
