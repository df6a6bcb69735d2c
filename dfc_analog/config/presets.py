"""The paper's experiment configurations (Table 1, Table 2) as named presets.

Each preset is a readable TOML file in the package's ``presets/`` folder (shipped in the wheel,
read through :mod:`importlib.resources`) whose keys are
:class:`dfc_analog.config.Config` fields, with comments that cite the authors' config and say
where a broken one was fixed. Two keys are the preset's own: ``description`` (one line for
``--list-presets``) and ``extends`` (the name of a preset whose settings this one starts from; the
Table-2 sweeps extend the Table-1 presets and change λ or α only).

Names are ``<task>-<variant>``: tasks ``mnist``, ``fashion-mnist``, ``mnist-autoencoder`` and
``mnist-train-loss`` (Table 1's four columns), variants ``bp``, ``dfa``, ``dfc``, ``dfc-ss``,
``dfc-ssa`` and the fixed-feedback ``dfc-fixed``, ``dfc-ss-fixed``, ``dfc-ssa-fixed`` (its rows);
Table 2 adds ``mnist-dfc-lambda-0.01``, ``mnist-dfc-ss-alpha-0.0001``, ...
"""
from __future__ import annotations

import difflib
from importlib import resources
from pathlib import Path

from dfc_analog.config.options import Config, load_config_file
from dfc_analog.errors import ConfigError

PRESET_DIR = Path(str(resources.files("dfc_analog") / "presets"))


def preset_names() -> list:
    """Every preset name, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        hint = difflib.get_close_matches(name, preset_names(), n=1)
        extra = f" (did you mean '{hint[0]}'?)" if hint else ""
        raise ConfigError(f"unknown preset '{name}'{extra}; --list-presets shows them all.")
    return path


def _read(name: str, chain: tuple = ()) -> tuple:
    """(settings, description) of a preset, with its ``extends`` chain resolved."""
    if name in chain:
        raise ConfigError(f"preset '{name}' extends itself through {' -> '.join(chain)}.")
    data = load_config_file(preset_path(name))
    description = data.pop("description", "")
    parent = data.pop("extends", None)
    if parent is None:
        return data, description
    if not isinstance(parent, str):
        raise ConfigError(f"preset '{name}': 'extends' must name another preset.")
    base, _ = _read(parent, chain + (name,))
    return {**base, **data}, description


def load_preset(name: str) -> dict:
    """The settings of preset ``name`` (a dict of Config fields), ``extends`` resolved."""
    return _read(name)[0]


def preset_config(name: str, **overrides) -> Config:
    """The validated :class:`Config` of a preset, with ``overrides`` on top."""
    return Config.from_dict({**load_preset(name), **overrides}, source=f"preset '{name}'")


def describe_presets() -> list:
    """(name, description) of every preset, sorted by name."""
    return [(name, _read(name)[1]) for name in preset_names()]
