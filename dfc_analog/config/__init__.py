"""Settings of a run: :class:`Config` (every hyper-parameter, TOML/JSON loading), the paper's
presets, and the named seed streams."""
from dfc_analog.config.options import Config, load_config_file
from dfc_analog.config.presets import describe_presets, load_preset, preset_config, preset_names

__all__ = ["Config", "describe_presets", "load_config_file", "load_preset", "preset_config", "preset_names"]
