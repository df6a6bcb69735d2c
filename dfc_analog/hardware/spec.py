"""The hardware description: :class:`HardwareSpec`, its named presets and its TOML form.

A spec says what the analog chip is made of, in SI units:

    [synapse]     signed weight as a differential conductance pair G⁺ − G⁻ in [g_min, g_max]
                  (scale per layer or per crossbar column), finite states (bits), the device's
                  statistics (programming noise, device-to-device variation, drift after
                  drift_time, accumulated 1/f read noise) from :mod:`dfc_analog.hardware.devices`
    [amplifier]   the op-amps of soma and rate stages: DC gain A₀, gain-bandwidth, input offset
                  (σ), output rails
    [activation]  the differential-pair tanh: per-neuron gain and offset mismatch (σ)
    [supply]      rails and quiescent current per amplifier, for energy
    crossbar_size largest crossbar tile (rows and columns)

Presets are TOML files in the package's ``hardware/presets/`` folder (``ideal``, ``pcm``, ``rram``,
``4bit``, ``8bit``); a user's file holds the same tables, at the top level or under
``[hardware]``, and may start from a preset with ``extends = "pcm"``.
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from dfc_analog.errors import ConfigError

PRESET_DIR = Path(str(resources.files("dfc_analog") / "hardware" / "presets"))
DEVICES = ("ideal", "pcm", "rram", "generic")
WEIGHT_SCALES = ("layer", "column")


@dataclass(frozen=True)
class SynapseSpec:
    """Conductance pairs. ``device`` names the statistics of :mod:`~dfc_analog.hardware.devices`;
    ``programming_noise`` and ``read_noise`` scale that device's published σ (for ``generic``
    they are σ as a fraction of g_max); ``variation`` is the relative device-to-device spread σ_d
    (G → G (1 + σ_d ξ)); ``drift_time`` is the time in s from programming to use (0: none);
    ``bits`` gives 2^bits programmable states per device (absent: continuous);
    ``drift_compensation`` trims each layer's R_f by one calibration factor, the programmed
    over the realised total |G⁺ − G⁻| (a global drift compensation, as on IBM's PCM chips);
    ``wire_resistance`` is the column wire's resistance per crossbar cell segment in Ω and
    ``row_wire_resistance`` the row wire's (IR drop, :mod:`dfc_analog.hardware.wires`: with
    both the tile is a 2-D resistive mesh; 0: that wire is ideal).

    ``read_interval`` (s) says what the read noise is. 0: a static offset of each conductance,
    the 1/f noise accumulated by drift_time, drawn once per realisation. > 0: a process during
    every phase, G(t) = G + σ_read ξ(t), ξ unit white samples drawn every read_interval and
    linearly interpolated between them (ngspice's ``trnoise(1 read_interval 0 0)``), with the
    device's per-read σ_read (:func:`~dfc_analog.hardware.devices.read_sigma`: PCM
    read_noise · pcm_read_sigma(G, g_max, drift_time, t_read = read_interval); generic
    read_noise · |G|; RRAM has no read-noise data)."""

    device: str = "ideal"
    g_min: float = 0.0
    g_max: float = 25e-6
    bits: int | None = None
    weight_scale: str = "layer"
    programming_noise: float = 0.0
    variation: float = 0.0
    read_noise: float = 0.0
    drift_time: float = 0.0
    drift_compensation: bool = False
    wire_resistance: float = 0.0
    row_wire_resistance: float = 0.0
    read_interval: float = 0.0

    def check(self) -> None:
        _choice("synapse device", self.device, DEVICES)
        _choice("synapse weight_scale", self.weight_scale, WEIGHT_SCALES)
        if not (math.isfinite(self.g_max) and self.g_max > 0):
            raise ConfigError(f"synapse g_max must be a positive conductance in S, got "
                              f"{self.g_max!r}.")
        if not (math.isfinite(self.g_min) and 0 <= self.g_min < self.g_max):
            raise ConfigError(f"synapse g_min must lie in [0, g_max) = [0, {self.g_max:g}) S, "
                              f"got {self.g_min!r}.")
        if self.bits is not None and (isinstance(self.bits, bool) or
                                      not isinstance(self.bits, int) or self.bits < 1):
            raise ConfigError(f"synapse bits must be a whole number ≥ 1 (leave it out for "
                              f"continuous conductances), got {self.bits!r}.")
        if not isinstance(self.drift_compensation, bool):
            raise ConfigError(f"synapse drift_compensation must be true or false, got "
                              f"{self.drift_compensation!r}.")
        for name in ("programming_noise", "variation", "read_noise", "drift_time",
                     "wire_resistance", "row_wire_resistance", "read_interval"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"synapse {name} must be a non-negative number, got "
                                  f"{value!r}.")

        if self.read_process and self.device == "pcm" and \
                not self.drift_time > self.read_interval:
            raise ConfigError(f"synapse drift_time ({self.drift_time:g} s) must exceed "
                              f"read_interval ({self.read_interval:g} s): the PCM read noise is "
                              f"the 1/f noise between the two.")

    @property
    def read_process(self) -> bool:
        """True when the read noise is a process in time (read_interval > 0), not a static
        draw."""
        return self.read_interval > 0 and self.read_noise > 0

    @property
    def levels(self) -> int | None:
        """Number of conductance states per device (None: continuous)."""
        return None if self.bits is None else 2 ** self.bits


@dataclass(frozen=True)
class AmplifierSpec:
    """One-pole op-amp: A(s) = A₀ / (1 + s/ω_p), ω_p = 2π·gbw / A₀; ``offset`` the σ of the input
    offset voltage (V), ``rail`` the output limit ±rail (V). ``gain = inf`` is an ideal op-amp
    (no pole, no error)."""

    gain: float = math.inf
    gbw: float = math.inf
    offset: float = 0.0
    rail: float = math.inf

    def check(self) -> None:
        if not (self.gain > 1):
            raise ConfigError(f"amplifier gain A₀ must exceed 1 (an op-amp amplifies), got "
                              f"{self.gain!r}.")
        if not (self.gbw > 0):
            raise ConfigError(f"amplifier gbw must be a positive frequency in Hz, got "
                              f"{self.gbw!r}.")
        if math.isinf(self.gain) != math.isinf(self.gbw):
            raise ConfigError("amplifier gain and gbw must both be finite (a one-pole op-amp) "
                              "or both inf (an ideal one).")
        if not (math.isfinite(self.offset) and self.offset >= 0):
            raise ConfigError(f"amplifier offset must be a non-negative voltage σ, got "
                              f"{self.offset!r}.")
        if not (self.rail > 0):
            raise ConfigError(f"amplifier rail must be a positive voltage, got {self.rail!r}.")

    @property
    def ideal(self) -> bool:
        return math.isinf(self.gain) and self.offset == 0 and math.isinf(self.rail)

    @property
    def pole_time(self) -> float:
        """Open-loop time constant τ_p = A₀ / (2π gbw) in s (0 for an ideal op-amp)."""
        return 0.0 if math.isinf(self.gain) else self.gain / (2 * math.pi * self.gbw)


@dataclass(frozen=True)
class ActivationSpec:
    """Differential-pair tanh I_b tanh(κ V_d / 2U_T): σ of the relative gain mismatch and of the
    input offset (V) per neuron."""

    gain_mismatch: float = 0.0
    offset_mismatch: float = 0.0

    def check(self) -> None:
        for name in ("gain_mismatch", "offset_mismatch"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"activation {name} must be a non-negative number, got "
                                  f"{value!r}.")


@dataclass(frozen=True)
class SupplySpec:
    """Supply rails vdd > 0 > vss (V) and each amplifier's quiescent current (A)."""

    vdd: float = 1.0
    vss: float = -1.0
    quiescent_current: float = 0.0

    def check(self) -> None:
        if not (math.isfinite(self.vdd) and math.isfinite(self.vss) and self.vdd > 0 > self.vss):
            raise ConfigError(f"supply needs vdd > 0 > vss, got vdd = {self.vdd!r} and vss = "
                              f"{self.vss!r}.")
        if not (math.isfinite(self.quiescent_current) and self.quiescent_current >= 0):
            raise ConfigError(f"supply quiescent_current must be a non-negative current, got "
                              f"{self.quiescent_current!r}.")


@dataclass(frozen=True)
class HardwareSpec:
    """What the chip is made of (module docstring); ``name`` is the preset or file it came
    from."""

    name: str = "ideal"
    description: str = ""
    synapse: SynapseSpec = field(default_factory=SynapseSpec)
    amplifier: AmplifierSpec = field(default_factory=AmplifierSpec)
    activation: ActivationSpec = field(default_factory=ActivationSpec)
    supply: SupplySpec = field(default_factory=SupplySpec)
    crossbar_size: int = 256

    def __post_init__(self):
        for part in (self.synapse, self.amplifier, self.activation, self.supply):
            part.check()
        if isinstance(self.crossbar_size, bool) or not isinstance(self.crossbar_size, int) or \
                self.crossbar_size < 1:
            raise ConfigError(f"crossbar_size must be a whole number ≥ 1, got "
                              f"{self.crossbar_size!r}.")

    @property
    def is_ideal(self) -> bool:
        """True when the spec describes today's ideal circuit: exact weights, ideal op-amps and
        a matched activation (the model and netlist then take their ideal paths unchanged)."""
        s, a = self.synapse, self.activation
        return s.device == "ideal" and s.bits is None and s.programming_noise == 0 and \
            not s.drift_compensation and \
            s.variation == 0 and s.read_noise == 0 and s.drift_time == 0 and \
            s.wire_resistance == 0 and s.row_wire_resistance == 0 and \
            self.amplifier.ideal and a.gain_mismatch == 0 and a.offset_mismatch == 0

    @classmethod
    def from_dict(cls, data: dict, name: str = "custom") -> "HardwareSpec":
        """A spec from tables ``synapse``, ``amplifier``, ``activation``, ``supply`` and the
        keys ``crossbar_size``, ``description``; unknown keys are refused."""
        parts = {"synapse": SynapseSpec, "amplifier": AmplifierSpec,
                 "activation": ActivationSpec, "supply": SupplySpec}
        known = set(parts) | {"crossbar_size", "description", "name"}
        kwargs = {"name": data.get("name", name)}
        for key, value in data.items():
            if key not in known:
                raise ConfigError(f"unknown hardware field '{key}'{_hint(key, known)}.")
            if key in parts:
                if not isinstance(value, dict):
                    raise ConfigError(f"hardware '{key}' must be a table of settings.")
                fields = {f.name: f for f in dataclasses.fields(parts[key])}
                for sub, sub_value in value.items():
                    if sub not in fields:
                        raise ConfigError(f"unknown hardware field '{key}.{sub}'"
                                          f"{_hint(sub, fields)}.")
                    kind = int if sub == "bits" else type(fields[sub].default)
                    if kind is float and isinstance(sub_value, (int, str)) and \
                            not isinstance(sub_value, bool):
                        try:
                            sub_value = float(sub_value)
                        except ValueError:
                            raise ConfigError(f"hardware field '{key}.{sub}' must be a number, "
                                              f"got {sub_value!r}.") from None
                    if not isinstance(sub_value, kind) or \
                            (kind is not bool and isinstance(sub_value, bool)):
                        what = {int: "a whole number", float: "a number", str: "text",
                                bool: "true or false"}[kind]
                        raise ConfigError(f"hardware field '{key}.{sub}' must be {what}, got "
                                          f"{sub_value!r}.")
                kwargs[key] = dataclasses.replace(parts[key](), **{
                    k: (float(v) if type(fields[k].default) is float and k != "bits" else v)
                    for k, v in value.items()})
            elif key != "name":
                kwargs[key] = value
        return cls(**kwargs)


def _choice(what: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(f"unknown {what} '{value}'{_hint(str(value), choices)}; choose one of "
                          f"{', '.join(choices)}.")


def _hint(name: str, names) -> str:
    close = difflib.get_close_matches(name, list(names), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _merge(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) and \
            isinstance(out.get(key), dict) else value
    return out


def preset_names() -> list:
    """Every hardware preset name, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.toml"))


def _read_tables(path: Path, chain: tuple = ()) -> dict:
    """The tables of a preset or spec file, its ``extends`` chain resolved."""
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read hardware file '{path}': {exc}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"hardware file '{path}' is not valid TOML: {exc}.") from None
    if isinstance(data.get("hardware"), dict):
        data = data["hardware"]
    parent = data.pop("extends", None)
    if parent is None:
        return data
    if not isinstance(parent, str):
        raise ConfigError(f"hardware file '{path}': 'extends' must name a preset.")
    if parent in chain:
        raise ConfigError(f"hardware preset '{parent}' extends itself.")
    return _merge(_read_tables(_preset_path(parent), chain + (parent,)), data)


def _preset_path(name: str) -> Path:
    path = PRESET_DIR / f"{name}.toml"
    if not path.is_file():
        raise ConfigError(f"unknown hardware preset '{name}'{_hint(name, preset_names())}; "
                          f"the presets are {', '.join(preset_names())}.")
    return path


def load_spec(name_or_file: str | Path) -> HardwareSpec:
    """The spec of a preset name (``pcm``) or of a TOML file (a path ending in ``.toml``)."""
    text = str(name_or_file)
    if text.endswith(".toml") or "/" in text:
        path = Path(text)
        if not path.is_file():
            raise ConfigError(f"hardware file '{path}' does not exist.")
        return HardwareSpec.from_dict(_read_tables(path), name=path.stem)
    return HardwareSpec.from_dict(_read_tables(_preset_path(text), (text,)), name=text)


def describe_presets() -> list:
    """(name, description) of every hardware preset."""
    return [(name, load_spec(name).description) for name in preset_names()]
