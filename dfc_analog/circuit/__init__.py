"""SPICE layer: component graph → ngspice netlist text (:mod:`.netlist`), and the netlist run in
ngspice through PySpice, mapped back to a :class:`~dfc_analog.model.Trajectory`
(:mod:`.simulate`)."""
from dfc_analog.circuit.netlist import PHASES, SpiceOptions, output_times, write_netlist
from dfc_analog.circuit.simulate import NgspiceError, operating_point, run_netlist, simulate_circuit

__all__ = ["PHASES", "NgspiceError", "SpiceOptions", "operating_point", "output_times",
           "run_netlist", "simulate_circuit", "write_netlist"]
