"""Many realisations of one network at once: a :class:`RealisationStack` holds R chips as tensors
with a leading realisation dimension, for deployment studies over the device spread.

Realisation r of a stack is :func:`~dfc_analog.hardware.realise.realise` of seed ``seeds[r]``,
exactly: each chip's devices are drawn by ``realise`` itself from its own generator of the named
stream ``realisation`` (one generator per seed is what makes chip r reproducible on its own, so
the circuit Monte Carlo can hold the netlist of chip r against the emulation of the same draws).
The draws of different seeds are independent, so they run in parallel threads (torch releases
the interpreter lock in its kernels); everything after the draws is batched over R.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields

import torch

from dfc_analog.errors import ConfigError
from dfc_analog.hardware.realise import LayerRealisation, Realisation, realise
from dfc_analog.hardware.spec import HardwareSpec

# The static devices a stack holds: its chips are :meth:`Realisation.without_read_process` of
# realise's (read_sigma, None without a process, would not stack); a read-noise process makes
# the settled state a random process in time, which deployment refuses (model.deployment).
LAYER_FIELDS = tuple(f.name for f in fields(LayerRealisation) if f.name != "read_sigma")


@dataclass
class RealisationStack:
    """R realisations of one network on one spec: ``layers[i]`` maps every
    :class:`LayerRealisation` field to its tensor stacked over the realisations, (R, ...)."""

    spec: HardwareSpec
    seeds: list
    v_scale: float
    resistance: float
    activations: list
    layers: list
    controller_offset: torch.Tensor | None = None   # (R, 4, n_L) V, as Realisation's

    def __len__(self) -> int:
        return len(self.seeds)

    @property
    def layer_sizes(self) -> list:
        return [self.layers[0]["G_pos"].shape[2]] + [l["G_pos"].shape[1] for l in self.layers]

    def realisation(self, r: int) -> Realisation:
        """Realisation r of the stack (views of its tensors)."""
        return Realisation(self.spec, int(self.seeds[r]), self.v_scale, self.resistance,
                           list(self.activations),
                           [LayerRealisation(**{k: l[k][r] for k in LAYER_FIELDS})
                            for l in self.layers],
                           None if self.controller_offset is None else self.controller_offset[r])


def stack_of(real: Realisation) -> RealisationStack:
    """A stack of the one realisation ``real`` (views of its tensors)."""
    return RealisationStack(real.spec, [real.seed], real.v_scale, real.resistance,
                            list(real.activations),
                            [{k: getattr(l, k)[None] for k in LAYER_FIELDS} for l in real.layers],
                            None if real.controller_offset is None else
                            real.controller_offset[None])


def realise_stack(W: list, b: list, Q: list, activations: list, spec: HardwareSpec, seeds,
                  v_scale: float = 1.0, resistance: float = 1e4,
                  workers: int = 1) -> RealisationStack:
    """The realisations of seeds ``seeds`` (module docstring), drawn by ``workers`` threads."""
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise ConfigError("a realisation stack needs at least one seed.")
    if workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}.")
    W, b, Q = ([t.detach().to("cpu", torch.float64) for t in ts] for ts in (W, b, Q))

    def one(seed):
        return realise(W, b, Q, activations, spec, seed, v_scale, resistance)

    if workers == 1 or len(seeds) == 1:
        chips = [one(s) for s in seeds]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(seeds))) as pool:
            chips = list(pool.map(one, seeds))
    layers = [{k: torch.stack([getattr(c.layers[i], k) for c in chips]) for k in LAYER_FIELDS}
              for i in range(len(W))]
    first = chips[0]
    control = None if first.controller_offset is None else \
        torch.stack([c.controller_offset for c in chips])
    return RealisationStack(spec, seeds, first.v_scale, first.resistance, list(activations),
                            layers, control)


def realise_network_stack(net, spec: HardwareSpec, seeds, v_scale: float = 1.0,
                          resistance: float = 1e4, workers: int = 1) -> RealisationStack:
    """:func:`realise_stack` of a :class:`~dfc_analog.model.network.DFCNetwork`."""
    return realise_stack(list(net.W), list(net.b), list(net.Q), list(net.activations), spec,
                         seeds, v_scale, resistance, workers)
