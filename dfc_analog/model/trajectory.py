"""The phase contract: the signals of one simulated phase, whatever simulated it.

The ODE solvers (:func:`dfc_analog.solvers.simulate_wake`) and the SPICE circuit
(:func:`dfc_analog.circuit.simulate_circuit`) both return a :class:`Trajectory`, so the forward rules
(:func:`dfc_analog.learning.trajectory_update`) and the validation read either the same way.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class Trajectory:
    """Signals of a simulated phase on a time grid; the type both the ODE and SPICE paths return.

    ``t`` is (T,); every per-layer entry is a list over layers i = 1..L of (T, B, n_i) tensors;
    the controller signals are (T, B, n_L).
    """

    t: torch.Tensor
    soma: list
    basal: list
    apical: list
    rate: list
    u: torch.Tensor
    u_int: torch.Tensor
    error: torch.Tensor

    def numpy(self) -> dict:
        """Flat dict of numpy arrays (``soma1``, ``rate2``, ``u``, ...) for ``np.savez``."""
        out = {"t": self.t.cpu().numpy()}
        for name in ("soma", "basal", "apical", "rate"):
            for i, a in enumerate(getattr(self, name), start=1):
                out[f"{name}{i}"] = a.detach().cpu().numpy()
        for name in ("u", "u_int", "error"):
            out[name] = getattr(self, name).detach().cpu().numpy()
        return out

    def at(self, t: torch.Tensor) -> "Trajectory":
        """The rows of this trajectory at the times ``t`` (a subset of ``self.t``)."""
        idx = torch.searchsorted(self.t, t.to(self.t))

        def pick(a):
            return a[idx]

        return Trajectory(t=self.t[idx], soma=[pick(a) for a in self.soma],
                          basal=[pick(a) for a in self.basal],
                          apical=[pick(a) for a in self.apical],
                          rate=[pick(a) for a in self.rate], u=pick(self.u),
                          u_int=pick(self.u_int), error=pick(self.error))
