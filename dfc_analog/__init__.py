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
"""
from dfc_analog.config.options import Config
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.data import load_dataset
from dfc_analog.errors import ConfigError, DFCError, DivergenceError
from dfc_analog.circuit.graph import Scaling, build_graph, graph_from_run, load_graph, save_graph
from dfc_analog.learning import (ForwardSettings, ForwardUpdate, forward_update, lemma1_control,
                                 output_target)
from dfc_analog.model.network import DFCNetwork
from dfc_analog.config.presets import preset_config, preset_names
from dfc_analog.runio import load_run
from dfc_analog.learning.sleep import SleepParams, feedback_update
from dfc_analog.learning.sleep_expected import expected_feedback_update
from dfc_analog.theory import diagnostics
from dfc_analog.solvers.wake import SolverSettings, Trajectory, WakeResult, simulate_wake
from dfc_analog.circuit import NgspiceError, SpiceOptions, simulate_circuit, write_netlist
from dfc_analog.training.loop import run_training

__all__ = ["Config", "ConfigError", "ControllerParams", "DFCError", "DFCNetwork",
           "DivergenceError", "ForwardSettings", "ForwardUpdate", "NgspiceError", "Scaling", "SleepParams",
           "SolverSettings", "SpiceOptions", "Trajectory", "WakeResult", "build_graph",
           "diagnostics", "expected_feedback_update", "feedback_update", "forward_update", "graph_from_run", "lemma1_control",
           "load_dataset", "load_graph", "load_run", "output_target", "preset_config",
           "preset_names", "run_training", "save_graph", "simulate_circuit", "simulate_wake",
           "write_netlist"]
