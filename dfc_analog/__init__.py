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
    diagnostics                  Conditions 1-3, GN / MN / SSA / BP angles (module theory)
    run_training                 a whole training run into a run folder
    load_run                     (config, network) of a run folder
    DFCError                     the one exception type of bad input or diverging dynamics
"""
from .config import Config
from .dynamics import ControllerParams
from .errors import ConfigError, DFCError, DivergenceError
from .learning import ForwardUpdate, forward_update, lemma1_control, output_target
from .network import DFCNetwork
from .runio import load_run
from .sleep import SleepParams, feedback_update
from .theory import diagnostics
from .solve import SolverSettings, Trajectory, WakeResult, simulate_wake
from .training import run_training

__all__ = ["Config", "ConfigError", "ControllerParams", "DFCError", "DFCNetwork",
           "DivergenceError", "ForwardUpdate", "SleepParams", "SolverSettings", "Trajectory",
           "WakeResult", "diagnostics", "feedback_update", "forward_update", "lemma1_control",
           "load_run", "output_target", "run_training", "simulate_wake"]
