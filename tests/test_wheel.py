"""The installable package: the wheel holds the presets, the LICENSE and the console scripts
(default suite, a few seconds), and installed non-editable into a fresh virtual environment it
lists the presets and trains a preset run (slow).

Isolation: the fresh environment is made by ``venv --without-pip`` from the base interpreter and
sees the development environment's site-packages through a ``.pth`` line, for torch and the
other dependencies only: a directory named in a ``.pth`` file is appended to ``sys.path`` after the
environment's own site-packages, and the ``.pth`` files inside it (the editable install's hook)
are not run. The wheel goes in with ``pip --python ENV install --no-deps``; the commands run from a
folder outside the source tree, without ``PYTHONPATH``, and the test checks that
``dfc_analog`` is imported from the environment's site-packages.
"""
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from dfc_analog.version import __version__

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("dfc-train", "dfc-evaluate", "dfc-export", "dfc-validate", "dfc-figures")


def build_wheel(tmp: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of the source (the tree itself stays untouched)."""
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dfc_analog", src / "dfc_analog",
                    ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                           "--no-build-isolation", "-q", "-w", str(tmp / "dist"), str(src)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (tmp / "dist").glob("dfc_analog-*.whl")
    return wheel


def test_wheel_holds_presets_license_and_scripts(tmp_path):
    wheel = build_wheel(tmp_path)
    assert wheel.name == f"dfc_analog-{__version__}-py3-none-any.whl"
    names = zipfile.ZipFile(wheel).namelist()
    presets = sorted(n for n in names if n.startswith("dfc_analog/presets/"))
    assert presets == sorted(f"dfc_analog/presets/{p.name}"
                             for p in (ROOT / "dfc_analog" / "presets").glob("*.toml"))
    assert f"dfc_analog-{__version__}.dist-info/licenses/LICENSE" in names
    meta = zipfile.ZipFile(wheel).read(f"dfc_analog-{__version__}.dist-info/METADATA").decode()
    assert "License-Expression: Apache-2.0" in meta and "Requires-Dist: networkx>=3.4" in meta
    entry = zipfile.ZipFile(wheel).read(
        f"dfc_analog-{__version__}.dist-info/entry_points.txt").decode()
    for script in SCRIPTS:
        assert f"{script} = dfc_analog.cli:{script[4:]}" in entry


@pytest.mark.slow
def test_installed_wheel_lists_presets_and_trains_one(tmp_path):
    from tests.test_data import write_set

    wheel = build_wheel(tmp_path)
    env_dir = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    site = subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    Path(site, "dev-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q",
                           "--no-deps", str(wheel)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*argv):
        return subprocess.run([str(a) for a in argv], capture_output=True, text=True,
                              cwd=work, env=env)

    where = run(py, "-c", "import dfc_analog, dfc_analog.config.presets as p; "
                          "print(dfc_analog.__file__); print(p.PRESET_DIR)")
    assert where.returncode == 0, where.stderr
    assert all(line.startswith(site) for line in where.stdout.split()), where.stdout
    listed = run(env_dir / "bin" / "dfc-train", "--list-presets")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == len(list((ROOT / "dfc_analog" / "presets")
                                                       .glob("*.toml")))
    assert run(env_dir / "bin" / "dfc-figures", "--version").stdout == \
        f"dfc-figures {__version__}\n"
    write_set(work / "data", n_train=40, n_test=10)
    trained = run(env_dir / "bin" / "dfc-train", "--preset", "mnist-dfc-ssa", "--data-dir",
                  work / "data", "--train-samples", "20", "--val-samples", "5", "--epochs", "1",
                  "--no-progress", "--out", work / "run")
    assert trained.returncode == 0, trained.stderr
    assert (work / "run" / "checkpoint.pt").is_file() and "after 1 epochs" in trained.stdout
    import json
    saved = json.loads((work / "run" / "config.json").read_text())
    assert saved["dfc_analog_version"] == __version__ and "git_commit" not in saved
