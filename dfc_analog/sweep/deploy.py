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
"""
from __future__ import annotations

import csv
import dataclasses
import io
import math
from pathlib import Path

import torch

from dfc_analog import runio
from dfc_analog.data import load_dataset
from dfc_analog.errors import ConfigError
from dfc_analog.hardware.realise import realise
from dfc_analog.hardware.spec import HardwareSpec, load_spec
from dfc_analog.model.deployment import deploy
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.training.loop import evaluate_split, metric_name

RATIO = "synapse.g_ratio"          # G_max / G_min: sets g_min = g_max / ratio
SUMMARY_CSV = "deployment.csv"
SUMMARY_PNG = "deployment.png"
SUMMARY_COLUMNS = ("run", "label", "field", "value", "metric", "ideal", "mean", "std", "worst",
                   "yield", "clipped", "chips")


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


def deploy_cell(params: dict, hardware: str, field: str | None, yield_within: float,
                hardware_seed: int = 0, v_scale: float = 1.0, data_dir: str | None = None,
                dtype: str = "float32") -> dict:
    """One cell (module docstring): ``params`` holds ``run``, ``value`` (absent without a swept
    field), ``first`` and ``count`` (the block of chips). Returns the block's sums. The chips
    are drawn by as many threads as the task has torch threads."""
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
    return {"metric": metric_name(cfg), "ideal": float(ideal), "chips": len(metric),
            "clipped": int(result.clipped.sum()), "within": int(within.sum()),
            "sum": float(ok.sum()), "sum_sq": float((ok * ok).sum()),
            "worst": float(ok.max()) if len(ok) else math.nan,
            "label": f"{cfg.method.upper()} ({Path(params['run']).name})"}


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
                    "clipped": clipped / chips, "chips": chips})
    return out


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
