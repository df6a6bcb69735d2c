"""dfc_analog: Deep Feedback Control (Meulemans et al., NeurIPS 2021) as continuous-time dynamics.

The public API, in the order data flows through it:

    Config                       every hyper-parameter of a run (``python -m dfc_analog.train``)
    DFCNetwork                   W_i, b_i, Q_i and the feed-forward pass of eq. (2)
    ControllerParams             τ_v, τ_u, α, k_p of eqs. (1) and (4)
    SolverSettings               solver and tolerances of a simulated phase
    simulate_wake                the controlled dynamics, eqs. (1) and (4)  -> WakeResult, Trajectory
    output_target                r_L* of eq. (3)
    lemma1_control               u_ss of Lemma 1 (eq. 6) in closed form
    forward_update               one minibatch of DFC / DFC-SS / DFC-SSA (eqs. 5, 9), DFA or BP
    SleepParams, feedback_update the sleep phase: noisy dynamics (eq. 12), feedback rule (eq. 13)
    expected_feedback_update     its update's expectation over the noise, in closed form
    diagnostics                  Conditions 1-3, GN / MN / SSA / BP angles (module theory)
    run_training                 a whole training run into a run folder
    load_run                     (config, network) of a run folder
    load_dataset                 the task data: student-teacher, MNIST, Fashion-MNIST, autoencoder
    preset_config, preset_names  the Table-1/2 presets of presets/*.toml
    Scaling, build_graph         the component graph of a network (module graph)
    SpiceOptions, write_netlist, simulate_circuit
                                 ngspice netlist text and its simulation -> Trajectory (spice)
    DFCError                     the one exception type of bad input or diverging dynamics

Names load on first use (PEP 562), so that the command lines start, and answer ``--version`` or
Ctrl-C, before torch is imported.
"""
import importlib

from dfc_analog.version import __version__

_HOME = {
    "Config": "config.options", "ControllerParams": "model.dynamics", "load_dataset": "data",
    "ConfigError": "errors", "DFCError": "errors", "DivergenceError": "errors",
    "Scaling": "circuit.graph", "build_graph": "circuit.graph",
    "graph_from_run": "circuit.graph", "load_graph": "circuit.graph",
    "save_graph": "circuit.graph", "ForwardSettings": "learning", "ForwardUpdate": "learning",
    "forward_update": "learning", "lemma1_control": "learning", "output_target": "learning",
    "DFCNetwork": "model.network", "preset_config": "config.presets",
    "preset_names": "config.presets", "load_run": "runio", "SleepParams": "learning.sleep",
    "feedback_update": "learning.sleep", "diagnostics": "theory",
    "expected_feedback_update": "learning.sleep_expected",
    "SolverSettings": "solvers.wake", "Trajectory": "model.trajectory", "WakeResult": "solvers.wake",
    "simulate_wake": "solvers.wake", "NgspiceError": "circuit", "SpiceOptions": "circuit",
    "simulate_circuit": "circuit", "write_netlist": "circuit", "run_training": "training.loop",
}

__all__ = sorted(_HOME) + ["__version__"]


def __getattr__(name):
    if name in _HOME:
        value = getattr(importlib.import_module(f"dfc_analog.{_HOME[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'dfc_analog' has no attribute '{name}'")


def __dir__():
    return __all__
