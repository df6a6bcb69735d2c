"""Device statistics of the synapse conductances, from their publications (formulas implemented
here, with their sources; every draw takes an explicit ``torch.Generator``).

PCM (phase-change memory), IBM's statistics at g_max = 25 µS (Nandakumar et al., IEDM 2019;
Joshi et al., Nat. Commun. 11, 2473 (2020); Le Gallo et al., APL Mach. Learn. 1, 2023 — the
defaults of aihwkit's ``PCMLikeNoiseModel``), with x = g / g_max:

    programming noise  σ_prog(g) = 0.26348 + 1.9650 x − 1.1731 x²  µS   (× g_max / 25 µS)
    drift              G(t) = G_prog (t / t₀)^−ν,  t₀ = 20 s,  ν ~ |N(μ_ν, σ_ν)|,
                       μ_ν = clamp(−0.0155 ln x + 0.0244, 0.049, 0.1),
                       σ_ν = clamp(−0.0125 ln x − 0.0059, 0.008, 0.045)
    1/f read noise     σ_read = |G(t)| Q_s √ln((t + t_read) / (2 t_read)),  t_read = 250 ns,
                       Q_s = min(0.0088 / max(x^0.65, 1e-3), 0.2)

RRAM (Wan et al., Nature 608, 504 (2022)): σ of the conductance around its target as a 4th-order
polynomial in x, in µS at g_max = 40 µS, fitted to the published figures at 1 s (programming),
1 day and 2 days (relaxation; the same fits as aihwkit's ``ReRamWan2022NoiseModel``). No drift
law and no separate read-noise data.

``generic``: Gaussian programming noise σ = programming_noise · g_max, relative read noise
σ = read_noise · |G|, no drift. Conductances stay ≥ 0 (a device cannot go negative).

Read noise as a process (``read_interval`` > 0 in the spec): instead of the static offset drawn
by :func:`program`, each device fluctuates during a phase as G(t) = G + σ_read ξ(t), ξ unit white
Gaussian samples every t_s = read_interval, linear in between, with the per-read σ of
:func:`read_sigma`:

    PCM        σ_read = read_noise · |G| Q_s √ln((t_d + t_s) / (2 t_s))   (t_d = drift_time:
               the 1/f noise between the read bandwidth 1/(2 t_s) and 1/t_d)
    generic    σ_read = read_noise · |G|
    RRAM       0 (Wan et al. publish no read-noise statistics)

The circuit sums these per column (:mod:`dfc_analog.circuit.crossbar`): Σ_j σ_j ξ_j(t) V_j has,
at every t, the law of σ_col(t) ξ(t), σ_col² = Σ_j σ_j² V_j².
"""
from __future__ import annotations

import math

import torch

from dfc_analog.errors import ConfigError

PCM_G_MAX = 25e-6
PCM_T0 = 20.0
PCM_T_READ = 250e-9
RRAM_G_MAX = 40e-6
# Wan et al. 2022 fits: c_0 .. c_4 of σ(x) = Σ c_k x^k µS, at 1 s, 1 day and 2 days
RRAM_FITS = {1.0: (0.348, 16.030, -43.853, 45.393, -16.815),
             86400.0: (0.701, 22.086, -50.773, 47.095, -16.458),
             172800.0: (0.782, 20.274, -43.507, 37.062, -11.934)}


def pcm_programming_sigma(g: torch.Tensor, g_max: float) -> torch.Tensor:
    """σ_prog of a PCM device programmed to ``g`` (S), in S."""
    x = g / g_max
    return (0.26348 + 1.9650 * x - 1.1731 * x * x) * 1e-6 * (g_max / PCM_G_MAX)


def pcm_drift_statistics(g: torch.Tensor, g_max: float):
    """(μ_ν, σ_ν) of the PCM drift exponent at target ``g``."""
    log_x = torch.log(torch.clamp(g / g_max, min=1e-12))
    mu = torch.clamp(-0.0155 * log_x + 0.0244, 0.049, 0.1)
    sigma = torch.clamp(-0.0125 * log_x - 0.0059, 0.008, 0.045)
    return mu, sigma


def pcm_read_sigma(g_t: torch.Tensor, g_max: float, t: float,
                   t_read: float = PCM_T_READ) -> torch.Tensor:
    """σ of the 1/f read noise accumulated by time ``t`` (s) on a PCM device at ``g_t`` (S)."""
    q_s = torch.clamp(0.0088 / torch.clamp((g_t.abs() / g_max) ** 0.65, min=1e-3), max=0.2)
    return g_t.abs() * q_s * math.sqrt(math.log((t + t_read) / (2 * t_read)))


def rram_sigma(g: torch.Tensor, g_max: float, t: float) -> torch.Tensor:
    """σ of an RRAM device around its target ``g`` (S) at time ``t`` (1 s, 1 day or 2 days)."""
    if t not in RRAM_FITS:
        raise ConfigError(f"the RRAM statistics (Wan et al. 2022) are fitted at "
                          f"{', '.join(f'{k:g}' for k in RRAM_FITS)} s only, got drift_time "
                          f"{t:g} s.")
    x = g / g_max
    coeffs = RRAM_FITS[t]
    sigma = torch.zeros_like(g)
    for c in reversed(coeffs):
        sigma = sigma * x + c
    return sigma.clamp_(min=0.0) * 1e-6 * (g_max / RRAM_G_MAX)


def program(target: torch.Tensor, synapse, generator: torch.Generator) -> torch.Tensor:
    """The conductances (S) of devices programmed to ``target`` (S) and read ``drift_time``
    after programming, under ``synapse`` (a :class:`~dfc_analog.hardware.spec.SynapseSpec`):
    programming noise, device-to-device variation, drift and the 1/f read noise accumulated by
    then, each drawn once from ``generator`` in that order. With read noise as a process
    (``synapse.read_process``) no read noise is drawn here (:func:`read_sigma` gives its σ)."""
    s = synapse
    g = target.clone()

    def normal():
        return torch.randn(g.shape, generator=generator, dtype=g.dtype, device=g.device)

    if s.device == "pcm":
        if s.programming_noise > 0:
            g = g + s.programming_noise * pcm_programming_sigma(target, s.g_max) * normal()
        g = g.clamp(min=0.0)
    elif s.device == "rram":
        if s.programming_noise > 0:
            t = s.drift_time if s.drift_time > 0 else 1.0
            g = (g + s.programming_noise * rram_sigma(target, s.g_max, t) * normal()).clamp(0.0)
    elif s.device == "generic" and s.programming_noise > 0:
        g = (g + s.programming_noise * s.g_max * normal()).clamp(min=0.0)
    if s.variation > 0:
        g = (g * (1.0 + s.variation * normal())).clamp(min=0.0)
    if s.device == "pcm" and s.drift_time > 0:
        mu, sigma = pcm_drift_statistics(target, s.g_max)
        nu = (mu + sigma * normal()).abs()
        g = g * (max(s.drift_time, PCM_T0) / PCM_T0) ** (-nu)
    if s.read_noise > 0 and not s.read_process:
        if s.device == "pcm" and s.drift_time > 0:
            g = g + s.read_noise * pcm_read_sigma(g, s.g_max, s.drift_time) * normal()
        elif s.device == "generic":
            g = g + s.read_noise * g.abs() * normal()
        g = g.clamp(min=0.0)
    return g


def read_sigma(g: torch.Tensor, synapse) -> torch.Tensor:
    """σ_read (S) of the read-noise process of devices at conductance ``g`` (S) under
    ``synapse`` (module docstring); zeros when the spec has no read-noise process."""
    s = synapse
    if not s.read_process or s.device not in ("pcm", "generic"):
        return torch.zeros_like(g)
    if s.device == "pcm":
        return s.read_noise * pcm_read_sigma(g, s.g_max, s.drift_time, s.read_interval)
    return s.read_noise * g.abs()
