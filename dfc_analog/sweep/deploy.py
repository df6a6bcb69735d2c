"""Deployment sweeps: trained runs evaluated on many chips of a hardware spec, optionally over
the values of one spec field, as cells of a sweep folder.

A cell is (run, field value, block of chips): it realises chips ``hardware_seed + first`` ..
``+ first + count − 1`` of the spec (the same chips for every run and value, so that runs are
compared on identical draws), evaluates each chip's settled feed-forward state on the run's test
split (:func:`dfc_analog.model.deployment.deploy`) and returns sums that combine exactly over
blocks. :func:`summarise` turns the finished cells into one row per (run, value):

    metric mean ± std over the chips whose rails do not clip, the worst chip, the share of
    clipping chips, and the yield: the share of chips whose metric is within ``yield_within``
    of the run's ideal metric (its own weights on the ideal network; a clipping chip fails).

The metric is the run's (test error % for classification, test loss otherwise).

Circuit Monte Carlo (``circuit_chips`` N > 0): the first N chips of the sweep (seeds
``hardware_seed`` .. + N − 1, each in the cell whose block holds it) are also written as crossbar
netlists (:func:`dfc_analog.circuit.crossbar.write_crossbar_netlist`, phase 'op': the DC
operating point with the controller at rest, the settled feed-forward state of eq. 2 on the
realised circuit) and solved by ngspice on the first M (``circuit_samples``) test samples, one
persistent ngspice process per chip whose inputs are altered sample by sample. The emulation's
output rows r_L⁺ of the same chips and samples (the folded closed form :func:`deploy` evaluates,
in float64) are held against the circuit's (:func:`compare_outputs`): the metric of each on those
samples, the share of (chip, sample) pairs whose predicted class (argmax of r_L⁺) agrees, and
the largest |r_L circuit − r_L emulation| over the range of the emulation's r_L. The sums
combine exactly over blocks, like the cell's.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path

import numpy as np
import torch

from dfc_analog import runio
from dfc_analog.data import load_dataset
from dfc_analog.circuit.crossbar import write_crossbar_netlist
from dfc_analog.circuit.graph import neuron_name
from dfc_analog.circuit.learning import SpiceProcess, ngspice_worker_check
from dfc_analog.circuit.netlist import SpiceOptions
from dfc_analog.errors import ConfigError
from dfc_analog.hardware.batch import realise_network_stack
from dfc_analog.hardware.realise import realise
from dfc_analog.hardware.spec import HardwareSpec, load_spec
from dfc_analog.model.deployment import deploy, fold
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.training.loop import evaluate_split, metric_name

RATIO = "synapse.g_ratio"          # G_max / G_min: sets g_min = g_max / ratio
SUMMARY_CSV = "deployment.csv"
SUMMARY_PNG = "deployment.png"
SUMMARY_COLUMNS = ("run", "label", "field", "value", "metric", "ideal", "mean", "std", "worst",
                   "yield", "clipped", "chips", "circuit_chips", "circuit_samples", "circuit",
                   "emulation", "class_agreement", "output_difference")
# The largest crossbar circuit the circuit Monte Carlo writes: ngspice's sparse factorisation
# fills in the dense row x column blocks (README, 'Analog hardware'), its cost grows ~x6.5 per
# doubling of the width, and a 784-256-256-256-10 chip (685,788 devices) would take tens of
# minutes per solve on this ngspice.
CIRCUIT_DEVICE_LIMIT = 20_000
# ngspice's tolerance for the operating points: Newton's residual well below the 1e-3 of the
# output range the comparison is held to.
CIRCUIT_OPTIONS = SpiceOptions(reltol=1e-6, sum_inputs=False)


def spec_variant(spec: HardwareSpec, field: str | None, value) -> HardwareSpec:
    """``spec`` with ``field`` (``synapse.bits``, ``amplifier.gain``, ...; or ``synapse.g_ratio``,
    G_max / G_min) set to ``value``; checked like a spec file."""
    if field is None:
        return spec
    data = dataclasses.asdict(spec)
    part, dot, key = field.partition(".")
    if not dot or part not in ("synapse", "amplifier", "activation", "supply"):
        raise ConfigError(f"--vary names a hardware field as TABLE.FIELD (synapse.bits, "
                          f"amplifier.gain, {RATIO}, ...), got '{field}'.")
    if field == RATIO:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 1:
            raise ConfigError(f"{RATIO} is G_max / G_min and must exceed 1, got {value!r}.")
        data["synapse"]["g_min"] = data["synapse"]["g_max"] / value
    else:
        data[part][key] = value
    for table in ("synapse", "amplifier", "activation", "supply"):
        data[table] = {k: v for k, v in data[table].items() if v is not None}
    variant = HardwareSpec.from_dict(data, name=spec.name)
    one = torch.ones(1, 1, dtype=torch.float64)     # a one-synapse chip: the device laws accept it
    realise([one], [one[0]], [one], ["linear"], variant, 0)
    return variant


def crossbar_devices(sizes) -> int:
    """The devices of a network's crossbar circuit: a conductance pair per weight of W_i, of its
    bias row and of Q_i (n_L rows)."""
    n_L = sizes[-1]
    return sum(2 * (n_in + 1 + n_L) * n for n_in, n in zip(sizes[:-1], sizes[1:]))


def check_circuit(runs: list, specs: list) -> None:
    """The circuit Monte Carlo can run: every run's crossbar circuit is small enough
    (:data:`CIRCUIT_DEVICE_LIMIT`), every spec has finite op-amps, ngspice is installed."""
    for run in runs:
        sizes = runio.load_run(run, device="cpu")[1].layer_sizes
        devices = crossbar_devices(sizes)
        if devices > CIRCUIT_DEVICE_LIMIT:
            raise ConfigError(
                f"--circuit-chips: the {'-'.join(map(str, sizes))} network of '{run}' has "
                f"{devices:,} crossbar devices, more than the {CIRCUIT_DEVICE_LIMIT:,} ngspice "
                f"solves here in reasonable time (its factorisation fills in the dense crossbar "
                f"blocks, ~x6.5 per doubling of the width); use --circuit-chips 0.")
    for spec in specs:
        if math.isinf(spec.amplifier.gain):
            raise ConfigError(f"--circuit-chips: a crossbar netlist needs op-amps of finite gain; "
                              f"hardware '{spec.name}' has ideal ones (set [amplifier] gain and "
                              f"gbw).")
    ngspice_worker_check()


def circuit_outputs(stack, params: ControllerParams, x: torch.Tensor, workers: int = 1
                    ) -> torch.Tensor:
    """The output rows r_L⁺ (model units, float64, (R, M, n_L)) of every chip of the
    :class:`~dfc_analog.hardware.batch.RealisationStack` ``stack`` on the inputs ``x`` (M, n_0):
    each chip's crossbar netlist at its DC operating point (controller at rest) in its own
    persistent ngspice process, the inputs altered sample by sample; ``workers`` processes at a
    time."""
    x = x.detach().cpu().double().numpy()
    vs, L, n_L = stack.v_scale, len(stack.layer_sizes) - 1, stack.layer_sizes[-1]
    vectors = [neuron_name(L, "rate", m) for m in range(n_L)]
    per_sample = [([f"alter V{node}_{j} dc = {float(sign * v) * vs!r}"
                    for j, v in enumerate(xb) for node, sign in (("in", 1), ("inn", -1))], {})
                  for xb in x]
    out = []
    for start in range(0, len(stack), max(1, workers)):
        procs = []
        try:
            for r in range(start, min(start + max(1, workers), len(stack))):
                procs.append(SpiceProcess(write_crossbar_netlist(
                    stack.realisation(r), params, x[0], phase="op", options=CIRCUIT_OPTIONS)))
                procs[-1].send(("run", [], per_sample, vectors))
            out += [proc.receive() for proc in procs]
        finally:
            for proc in procs:
                proc.close()
    return torch.from_numpy(np.stack(out)) / vs


def compare_outputs(circuit: torch.Tensor, emulation: torch.Tensor, y: torch.Tensor) -> dict:
    """The sums (over chips and samples) that hold the circuit's output rows against the
    emulation's, both (R, M, n_L) for the targets ``y`` (M,): the metric of each summed over the
    pairs (100 per wrong class for class labels, the squared error averaged over outputs
    otherwise, as :func:`deploy`),
    the (chip, sample) pairs whose argmax agrees, the largest |Δr_L| and the emulation's
    extremes (for the range it is normalised by)."""
    circuit, emulation = circuit.double(), emulation.double()
    if torch.is_floating_point(y):
        def metric(out):
            return float(((out - y.double()) ** 2).mean(2).sum())
    else:
        def metric(out):
            return 100.0 * float((out.argmax(2) != y).sum())
    return {"circuit_pairs": circuit.shape[0] * circuit.shape[1],
            "circuit_sum": metric(circuit), "emulation_sum": metric(emulation),
            "circuit_agree": int((circuit.argmax(2) == emulation.argmax(2)).sum()),
            "circuit_diff": float((circuit - emulation).abs().max()),
            "emulation_min": float(emulation.min()), "emulation_max": float(emulation.max())}


def deploy_cell(params: dict, hardware: str, field: str | None, yield_within: float,
                hardware_seed: int = 0, v_scale: float = 1.0, data_dir: str | None = None,
                dtype: str = "float32", circuit_chips: int = 0,
                circuit_samples: int = 20) -> dict:
    """One cell (module docstring): ``params`` holds ``run``, ``value`` (absent without a swept
    field), ``first`` and ``count`` (the block of chips). Returns the block's sums, and those of
    the circuit Monte Carlo for its chips among the first ``circuit_chips``. The chips are
    drawn by as many threads as the task has torch threads, and as many ngspice processes run
    at a time."""
    cfg, net = runio.load_run(params["run"], device="cpu")
    if data_dir is not None:
        cfg = cfg.replace(data_dir=data_dir)
    test = load_dataset(cfg).test
    ideal_loss, ideal_error, _ = evaluate_split(net, test.x, test.y, cfg.loss)
    ideal = ideal_error if ideal_error is not None else ideal_loss
    spec = spec_variant(load_spec(hardware), field, params.get("value"))
    seeds = range(hardware_seed + params["first"], hardware_seed + params["first"] +
                  params["count"])
    result = deploy(net, spec, seeds, test.x, test.y, cfg.loss,
                    dtype={"float32": torch.float32, "float64": torch.float64}[dtype],
                    workers=torch.get_num_threads(), v_scale=v_scale,
                    params=ControllerParams.from_config(cfg))
    metric = (result.error if result.error is not None else result.loss).double()
    ok = metric[~result.clipped]
    within = (~result.clipped) & (metric <= ideal + yield_within)
    out = {"metric": metric_name(cfg), "ideal": float(ideal), "chips": len(metric),
           "clipped": int(result.clipped.sum()), "within": int(within.sum()),
           "sum": float(ok.sum()), "sum_sq": float((ok * ok).sum()),
           "worst": float(ok.max()) if len(ok) else math.nan,
           "label": f"{cfg.method.upper()} ({Path(params['run']).name})"}
    circuit_seeds = [s for s in seeds if s < hardware_seed + circuit_chips]
    if circuit_seeds:
        stack = realise_network_stack(net, spec, circuit_seeds, v_scale,
                                      workers=torch.get_num_threads())
        controller = ControllerParams.from_config(cfg)
        x, y = test.x[:circuit_samples], test.y[:circuit_samples]
        emulation, _ = fold(stack, torch.float64, controller).feedforward(x)
        circuit = circuit_outputs(stack, controller, x, torch.get_num_threads())
        out.update(compare_outputs(circuit, emulation, y), circuit_samples=len(x))
    return out


def deploy_cells(runs: list, values: list | None, realisations: int, block: int) -> list:
    """Every (run, value, block of chips) cell, runs outermost."""
    cells = []
    for run in runs:
        for value in (values if values is not None else [None]):
            for first in range(0, realisations, block):
                cell = {"run": str(Path(run).resolve())}
                if value is not None:
                    cell["value"] = value
                cells.append({**cell, "first": first,
                              "count": min(block, realisations - first)})
    return cells


def check_runs(runs: list) -> None:
    """Every run folder loads (before any cell starts)."""
    for run in runs:
        runio.load_run(run, device="cpu")


def summarise(rows: list, field: str | None) -> list:
    """One row per (run, value) from the finished cells' rows (module docstring)."""
    groups = {}
    for row in rows:
        groups.setdefault((row["run"], row.get("value")), []).append(row)
    out = []
    for (run, value), parts in groups.items():
        chips = sum(p["chips"] for p in parts)
        clipped = sum(p["clipped"] for p in parts)
        n = chips - clipped
        total, total_sq = sum(p["sum"] for p in parts), sum(p["sum_sq"] for p in parts)
        mean = total / n if n else math.nan
        var = (total_sq - n * mean * mean) / (n - 1) if n > 1 else 0.0
        worst = max((p["worst"] for p in parts if not math.isnan(p["worst"])), default=math.nan)
        out.append({"run": run, "label": parts[0]["label"], "field": field or "",
                    "value": value if value is not None else "", "metric": parts[0]["metric"],
                    "ideal": parts[0]["ideal"], "mean": mean, "std": math.sqrt(max(var, 0.0)),
                    "worst": worst, "yield": sum(p["within"] for p in parts) / chips,
                    "clipped": clipped / chips, "chips": chips,
                    **summarise_circuit([p for p in parts if "circuit_pairs" in p])})
    return out


def summarise_circuit(parts: list) -> dict:
    """The circuit Monte Carlo's columns from the cells that ran it (module docstring; blank
    without any): chips, samples, the metric of circuit and emulation over those (chip,
    sample) pairs (error in %, or the mean loss), the share of pairs whose class agrees, and
    max |Δr_L| / (max r_L − min r_L) of the emulation."""
    if not parts:
        return dict.fromkeys(SUMMARY_COLUMNS[-6:], "")
    pairs = sum(p["circuit_pairs"] for p in parts)
    spread = max(p["emulation_max"] for p in parts) - min(p["emulation_min"] for p in parts)
    diff = max(p["circuit_diff"] for p in parts)
    return {"circuit_chips": pairs // parts[0]["circuit_samples"],
            "circuit_samples": parts[0]["circuit_samples"],
            "circuit": sum(p["circuit_sum"] for p in parts) / pairs,
            "emulation": sum(p["emulation_sum"] for p in parts) / pairs,
            "class_agreement": sum(p["circuit_agree"] for p in parts) / pairs,
            "output_difference": diff / spread if spread > 0 else diff}


def summary_csv(summary: list) -> bytes:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(summary)
    return buf.getvalue().encode()


def summary_markdown(summary: list, yield_within: float) -> str:
    lines = [f"| run | {summary[0]['field'] or 'spec'} | {summary[0]['metric']} ideal | "
             f"on chips mean ± std | worst | yield (≤ ideal + {yield_within:g}) | clipped | "
             f"chips |", "| --- | --- | --- | --- | --- | --- | --- | --- |"] if summary else []
    for s in summary:
        lines.append(f"| {s['label']} | {s['value'] if s['field'] else 'as given'} | "
                     f"{s['ideal']:.4g} | {s['mean']:.4g} ± {s['std']:.2g} | {s['worst']:.4g} | "
                     f"{100 * s['yield']:.0f} % | {100 * s['clipped']:.0f} % | {s['chips']} |")
    for s in summary:
        if s["circuit_chips"] != "":
            lines.append(
                f"\ncircuit vs emulation, {s['label']}"
                f"{', ' + s['field'] + ' = ' + str(s['value']) if s['field'] else ''}: "
                f"{s['circuit_chips']} chips x {s['circuit_samples']} samples in ngspice, "
                f"{s['metric']} {s['circuit']:.4g} (circuit) vs {s['emulation']:.4g} "
                f"(emulation), classes agree {100 * s['class_agreement']:.1f} %, max |r_L circuit "
                f"- r_L emulation| / range {s['output_difference']:.2g}")
    return "\n".join(lines) + "\n" if lines else "(no finished cell)\n"


def plot_summary(path: Path, summary: list, hardware: str) -> None:
    """The metric against the swept field, one line per run, shaded ± std over the chips, the
    ideal metric dotted; without a swept field, one bar per run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    runs = list(dict.fromkeys(s["run"] for s in summary))
    field = summary[0]["field"]
    for k, run in enumerate(runs):
        rows = [s for s in summary if s["run"] == run]
        label, color = rows[0]["label"], f"C{k}"
        if field:
            rows.sort(key=lambda s: s["value"])
            x = [s["value"] for s in rows]
            mean = torch.tensor([s["mean"] for s in rows])
            std = torch.tensor([s["std"] for s in rows])
            ax.plot(x, mean, marker="o", color=color, label=label)
            ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.2)
            ax.axhline(rows[0]["ideal"], color=color, ls=":", lw=1)
        else:
            ax.bar(k, rows[0]["mean"], yerr=rows[0]["std"], color=color, label=label, capsize=4)
            ax.plot([k - 0.4, k + 0.4], [rows[0]["ideal"]] * 2, color="black", ls=":")
    if field:
        values = [s["value"] for s in summary]
        if min(values) > 0 and max(values) / min(values) >= 100:
            ax.set_xscale("log")
        ax.set_xlabel(field)
    else:
        ax.set_xticks(range(len(runs)), [s["label"] for s in summary], fontsize=7)
    ax.set_ylabel(f"{summary[0]['metric']} on '{hardware}' chips (mean ± std)")
    ax.set_title(f"deployment on {summary[0]['chips']} chips per point; dotted: ideal",
                 fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    runio.save_figure(path, fig)
