"""Plots for circuit designers: signals in volts over microseconds, the devices' conductances,
the energy breakdown. Each function returns a matplotlib figure, for runio.save_figure."""
from __future__ import annotations

import numpy as np

STYLES = {"circuit": dict(ls="-", lw=1.4), "emulation": dict(ls="--", lw=1.2),
          "ideal model": dict(ls=":", lw=1.2)}
NEURONS = 3


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def overlay_volts(traces: dict, time_scale: float, v_scale: float, title: str = "",
                  event: str = "switch-on"):
    """Per signal group (somas of each layer, u, e) the neurons that move most, in volts over
    µs after ``event`` (t = 0): ``traces`` maps 'circuit', 'emulation', 'ideal model' to
    Trajectory.numpy() dicts (model units, τ_u); line style says the simulator, colour the
    neuron."""
    from matplotlib.lines import Line2D
    plt = _pyplot()
    first = next(iter(traces.values()))
    names = [k for k in first if k.startswith("soma")] + \
        [k for k in ("rate" + k[4:] for k in first if k.startswith("soma"))][-1:] + \
        [k for k in ("u", "error") if k in first]
    fig, axes = plt.subplots(1, len(names), figsize=(3.4 * len(names), 3.4), squeeze=False)
    for ax, name in zip(axes[0], names):
        ref = first[name][:, 0, :]
        chosen = np.argsort(-np.abs(ref - ref[:1]).max(axis=0))[:NEURONS]
        for source, tr in traces.items():
            t_us = tr["t"] * time_scale * 1e6
            for c, n in enumerate(chosen):
                ax.plot(t_us, tr[name][:, 0, n] * v_scale, color=f"C{c}", **STYLES[source])
        ax.set_title(name)
        ax.set_xlabel(f"t after {event} (µs)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("V")
    handles = [Line2D([], [], color="0.2", **STYLES[s]) for s in traces]
    fig.legend(handles, list(traces), loc="upper right", ncol=len(traces), fontsize=8)
    fig.suptitle(title or "signals in volts (colour: neuron)", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return fig


def conductance_histograms(real):
    """Histogram of every device conductance per layer (W with the bias row, and Q), in µS,
    with the spec's g_min and g_max marked."""
    plt = _pyplot()
    g = real.conductances()
    L = len(real.layers)
    fig, axes = plt.subplots(1, L, figsize=(3.4 * L, 3.0), squeeze=False)
    s = real.spec.synapse
    for i, ax in enumerate(axes[0], start=1):
        for name, colour in ((f"W{i}", "C0"), (f"Q{i}", "C1")):
            values = g[name].numpy() * 1e6
            ax.hist(values, bins=60, range=(0, s.g_max * 1.1e6), color=colour, alpha=0.6,
                    label=f"{name} ({values.size})")
        for edge in (s.g_min, s.g_max):
            ax.axvline(edge * 1e6, color="0.3", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel("G (µS)")
        ax.set_title(f"layer {i}")
        ax.legend(fontsize=7)
    axes[0, 0].set_ylabel("devices")
    fig.suptitle(f"device conductances on '{real.spec.name}' (seed {real.seed}); dotted: "
                 f"g_min, g_max", fontsize=10, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.9))
    return fig


def energy_breakdown(reports: dict):
    """Stacked bars per label (e.g. preset, circuit or model) of the energy over the window,
    split into what it heats: the crossbar devices, the network's amplifiers' quiescent current,
    the controller's op-amps, and the rest (the output stages, the feedback R_f, R_r and the
    charge of C_f)."""
    plt = _pyplot()
    labels = list(reports)
    parts = {"crossbar devices": [r.crossbar for r in reports.values()],
             "amplifiers: quiescent": [r.quiescent for r in reports.values()],
             "controller": [r.controller for r in reports.values()],
             "output stages, feedback networks": [r.total - r.crossbar - r.quiescent -
                                                  r.controller for r in reports.values()]}
    fig, ax = plt.subplots(figsize=(4.5 + 1.2 * len(labels), 3.6))
    bottom = np.zeros(len(labels))
    for c, (name, values) in enumerate(parts.items()):
        values = np.asarray(values) * 1e9
        ax.bar(labels, values, bottom=bottom, color=f"C{c}", label=name)
        bottom += values
    ax.set_ylabel("energy over the window (nJ)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.tick_params(axis="x", labelsize=8, rotation=20)
    fig.tight_layout()
    return fig
