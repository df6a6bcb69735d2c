"""Solvers of a phase: Rosenbrock-W, Dormand–Prince, the authors' Euler and torchdiffeq's methods,
behind :func:`simulate_wake`."""
from dfc_analog.solvers.wake import SOLVERS, SolverSettings, WakeResult, simulate_wake

__all__ = ["SOLVERS", "SolverSettings", "WakeResult", "simulate_wake"]
