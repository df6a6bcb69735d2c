"""The model of paper §2: the network (eq. 2), the controlled dynamics (eqs. 1, 4) and the phase
contract :class:`Trajectory` that every simulator of a phase returns."""
from dfc_analog.model.dynamics import ControllerParams, PlasticityIntegral, WakeDynamics
from dfc_analog.model.network import DFCNetwork
from dfc_analog.model.trajectory import Trajectory

__all__ = ["ControllerParams", "DFCNetwork", "PlasticityIntegral", "Trajectory", "WakeDynamics"]
