"""The analog hardware a network is realised on: :class:`HardwareSpec` and its presets
(:mod:`.spec`), device statistics (:mod:`.devices`) and one drawn realisation (:mod:`.realise`).
This layer sits after ``config`` and before ``model``: it imports neither model nor circuit."""
from dfc_analog.hardware.realise import Realisation, device_generator, realise, realise_network
from dfc_analog.hardware.spec import (HardwareSpec, describe_presets, load_spec, preset_names)

__all__ = ["HardwareSpec", "Realisation", "describe_presets", "device_generator", "load_spec",
           "preset_names", "realise", "realise_network"]
