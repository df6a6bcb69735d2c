"""What ``dfc-validate`` writes: report.md, report.json, trajectories.npz and overlay plots.

    OUT/
      report.md          verdict, tolerance rule, per-signal and per-sample tables, failures
      report.json        the same numbers, machine-readable
      trajectories.npz   sample<k>_reference_<signal>, sample<k>_circuit_<signal> (signal as in
                         Trajectory.numpy(): t, soma1, basal1, apical1, rate1, ..., u, u_int, error;
                         arrays (T, 1, n_i) or (T, 1, n_L)), and sample_index
      plots/sample<k>.png  chosen neurons of every layer and the controller u, e: circuit over
                         model, with the normalised error underneath
      plots/sample<k>_volts.png  on hardware: circuit, emulation and ideal model in volts over
                         µs (line style: simulator; colour: neuron); trajectories.npz then also
                         holds sample<k>_ideal_<signal>

Every file is written atomically (:func:`dfc_analog.runio.atomic_write`).
"""
from __future__ import annotations

import io
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from dfc_analog.hardware import load_spec
from dfc_analog.runio import atomic_write, make_dir, save_figure
from dfc_analog.validation.compare import RunValidation, SampleResult
from dfc_analog.validation.hardware_plots import overlay_volts
from dfc_analog.version import provenance

NEURONS_PER_PLOT = 3


def report_dict(outcome: RunValidation) -> dict:
    """report.json: settings, rule, verdict, and every number per sample and signal group."""
    def groups(errors):
        return {name: {**asdict(e), "pass": e.passed} for name, e in errors.items()}

    samples = []
    for r in outcome.results:
        diverged = r.diverged
        samples.append({
            "index": r.index, "pass": r.passed, "max_error": r.max_error,
            "worst_signal": r.worst_signal,
            "first_diverged": None if diverged is None else {
                "signal": diverged[0], "neuron": diverged[1].neuron,
                "t": diverged[1].t_exceed},
            "failures": r.failures, "signals": groups(r.signals),
            "departures": groups(r.departures), "update_angle_deg": r.angle_deg,
            "update_angle_tol_deg": r.angle_tol_deg, "update_rel_error": r.update_rel_error,
            "class_reference": r.class_reference, "class_circuit": r.class_circuit,
            "seconds_circuit": r.seconds_circuit, "seconds_reference": r.seconds_reference,
            "reference_solver": r.reference_solver})
        if r.hardware_effect is not None:
            samples[-1]["hardware_effect"] = r.hardware_effect
    summary = _summary(outcome)
    settings = asdict(outcome.settings)
    if settings["hardware"] is None:       # the ideal circuit's report stays as it was
        del settings["hardware"], settings["hardware_seed"], settings["emulation_solver"]
    if not outcome.noise:                   # no read-noise process: no distribution check
        for key in ("noise_seeds", "noise_samples", "noise_confidence", "circuit_noise"):
            del settings[key]
    out = {**provenance(), "run_dir": outcome.run_dir, "layer_sizes": outcome.layer_sizes,
           "split": outcome.split, "phase": outcome.settings.phase, "t_end": outcome.t_end,
           "settings": settings, "tolerance_rule": outcome.settings.rule(),
           "pass": outcome.passed, "summary": summary, "seconds": outcome.seconds,
           "samples": samples}
    if outcome.noise:
        out["read_noise"] = [{"sample": c.index, "seeds": c.seeds, "confidence": c.confidence,
                              "variance_circuit": c.circuit, "variance_emulation": c.emulation,
                              "ratio": {n: c.ratio(n) for n in c.circuit},
                              "ratio_bounds": list(c.bounds),
                              "variance_pass": c.variance_passed, "pass": c.passed,
                              "same_path": None if c.same_path is None else {
                                  "max_error": c.same_path.max_error,
                                  "worst_signal": c.same_path.worst_signal,
                                  "update_angle_deg": c.same_path.angle_deg,
                                  "update_angle_tol_deg": c.same_path.angle_tol_deg,
                                  "signals": groups(c.same_path.signals),
                                  "failures": c.same_path.failures,
                                  "pass": c.same_path.passed}}
                             for c in outcome.noise]
    return out


def _summary(outcome: RunValidation) -> dict:
    results = outcome.results
    worst = max(results, key=lambda r: r.max_error)
    angles = [r.angle_deg for r in results if r.angle_deg is not None]
    deps = [e.max for r in results for e in r.departures.values()]
    out = {"samples": len(results), "passed": sum(r.passed for r in results),
           "max_error": worst.max_error, "worst_signal": worst.worst_signal,
           "worst_sample": worst.index, "max_departure_error": max(deps) if deps else None,
           "max_update_angle_deg": max(angles) if angles else None, "class_agreement": None}
    if outcome.classify:
        out["class_agreement"] = sum(r.class_reference == r.class_circuit for r in results)
    return out


def _worst_over_samples(outcome: RunValidation, kind: str) -> dict:
    """Per group, the sample whose max error is largest relative to its tolerance."""
    table = {}
    for r in outcome.results:
        for name, e in getattr(r, kind).items():
            if name not in table or e.max / e.tol > table[name].max / table[name].tol:
                table[name] = e
    return table


def report_markdown(outcome: RunValidation) -> str:
    s, summ, st = outcome, _summary(outcome), outcome.settings
    verdict = "PASS" if s.passed else "FAIL"
    record = provenance()
    written = f"dfc_analog {record['dfc_analog_version']}" + (
        f" (git commit {record['git_commit']})" if "git_commit" in record else "")
    head = [f"# Circuit validation of `{s.run_dir}`", "", f"Written by {written}.", "",
            f"**{verdict}**: {summ['passed']}/{summ['samples']} {s.split} samples pass. Phase "
            f"`{st.phase}`, T = {s.t_end:g} τ_u, {st.points} time points, network "
            f"{'-'.join(map(str, s.layer_sizes))}; ngspice reltol {st.spice.reltol:g}, abstol "
            f"{st.spice.abstol:g} A, vntol {st.spice.vntol:g} V, {st.spice.method}; "
            f"{st.scaling.time_scale:g} s per τ_u, {st.scaling.v_scale:g} V per unit; "
            f"{s.seconds:.1f} s.", "",
            f"- maximum normalised error {summ['max_error']:.3g} ({summ['worst_signal']}, sample "
            f"{summ['worst_sample']}; over the signals that vary beyond F)"]
    if summ["max_departure_error"] is not None:
        head.append(f"- maximum normalised error of a soma's departure from the feed-forward "
                    f"state {summ['max_departure_error']:.3g}")
    if summ["max_update_angle_deg"] is not None:
        head.append(f"- largest angle between the eq. (5) updates of circuit and model "
                    f"{summ['max_update_angle_deg']:.3g}°")
    if summ["class_agreement"] is not None:
        head.append(f"- predicted class agrees on {summ['class_agreement']}/{summ['samples']} "
                    "samples")
    lines = head + _hardware_section(outcome) + _noise_section(outcome) + [
                    "", "## Tolerance rule", "", st.rule(), "",
                    "Errors are |circuit − model| / R over time and neurons: *max* is the "
                    "largest, *RMS* the root mean square, *steady* the largest at t = T.", ""]
    lines += ["## Signal groups (the sample closest to failing)", ""]
    lines += _group_table(_worst_over_samples(outcome, "signals"))
    deps = _worst_over_samples(outcome, "departures")
    if deps:
        lines += ["", "## Departures from the feed-forward state, v_i(t) − v_i(0)", ""]
        lines += _group_table(deps)
    stiff = [r.index for r in s.results if r.reference_solver != "dopri5"]
    if stiff:
        model = "emulation" if st.hardware_spec() is not None else "ODE reference"
        lines += ["", f"The {model} of sample(s) {', '.join(map(str, stiff))} is solved "
                  "with rosenbrock: the dynamics are stiff for dopri5.", ""]
    lines += ["", "## Samples", "",
              "| sample | max error | worst signal | update angle (tol) | class model / circuit "
              "| circuit s | ODE s | result |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in s.results:
        angle = "–" if r.angle_deg is None else f"{r.angle_deg:.3g}° ({r.angle_tol_deg:.3g}°)"
        cls = "–" if r.class_reference is None else f"{r.class_reference} / {r.class_circuit}"
        lines.append(f"| {r.index} | {r.max_error:.3g} | {r.worst_signal} | {angle} | {cls} | "
                     f"{r.seconds_circuit:.1f} | {r.seconds_reference:.1f} | "
                     f"{'pass' if r.passed else 'FAIL'} |")
    failed = [r for r in s.results if not r.passed]
    if failed:
        lines += ["", "## Failures", ""]
        for r in failed:
            d = r.diverged
            first = "" if d is None else \
                f" — first diverged: **{d[0]}** neuron {d[1].neuron} at t = {d[1].t_exceed:.4g} τ_u"
            lines.append(f"- sample {r.index}{first}")
            lines += [f"  - {text}" for text in r.failures]
    lines += ["", "## Files", "", "`report.json` (these numbers), `trajectories.npz` (both "
              "trajectories of every sample), `plots/sample<k>.png` (overlays and errors).", ""]
    return "\n".join(lines)


def _hardware_section(outcome: RunValidation) -> list:
    """On hardware: what is compared, and the hardware's effect against the ideal model."""
    effects = [r.hardware_effect for r in outcome.results if r.hardware_effect is not None]
    if not effects:
        return []
    st = outcome.settings
    lines = ["", f"On hardware **{st.hardware}** (realisation seed {st.hardware_seed}): the "
             "*circuit* is the crossbar netlist of the realisation, the *model* its emulation "
             "(the same device draws); the table below is the hardware's effect, the emulation "
             "against the ideal model (each from its own feed-forward state and eq. (3) target).",
             "", "| signal | largest \\|hardware − ideal\\| / R (over samples) |", "| --- | --- |"]
    for name in effects[0]["signals"]:
        lines.append(f"| {name} | {max(e['signals'][name] for e in effects):.3g} |")
    angles = [e["update_angle_deg"] for e in effects if e["update_angle_deg"] is not None]
    if angles:
        lines.append(f"\nAngle between the eq. (5) updates of hardware and ideal model: largest "
                     f"{max(angles):.3g}°, mean {sum(angles) / len(angles):.3g}°.")
    if effects[0]["class_ideal"] is not None:
        same = sum(e["class_ideal"] == e["class_hardware"] for e in effects)
        lines.append(f"Predicted class of hardware and ideal model agrees on {same}/"
                     f"{len(effects)} samples.")
    return lines


def _noise_section(outcome: RunValidation) -> list:
    """On a read-noise process: the distribution check (variance over noise seeds)."""
    if not outcome.noise:
        return []
    c0 = outcome.noise[0]
    circuit_noise = "ngspice TRNOISE, not seedable" \
        if outcome.settings.circuit_noise == "trnoise" else \
        "PWL sources, unit samples from the stream `circuit_read_noise`"
    lines = ["", "## Read noise in distribution", "",
             f"The read noise is a process (sampled every "
             f"{load_spec(outcome.settings.hardware).synapse.read_interval:g} s): the samples "
             f"above are compared with it off (the same devices); here {c0.seeds} noise seeds of "
             f"the circuit ({circuit_noise}) and {c0.seeds} of the emulation (stream "
             f"`read_noise`) give the total variance over seeds of the settled output rates "
             f"r_L(T) and of the eq. (5) update. Their ratio passes within the two-sided "
             f"{100 * c0.confidence:g} % bounds of F({c0.seeds - 1}, {c0.seeds - 1}), "
             f"[{c0.bounds[0]:.3g}, {c0.bounds[1]:.3g}] (conservative for a sum of directions).",
             "", "| sample | statistic | variance circuit | variance emulation | ratio | result |",
             "| --- | --- | --- | --- | --- | --- |"]
    for c in outcome.noise:
        for name in c.circuit:
            ok = c.bounds[0] <= c.ratio(name) <= c.bounds[1]
            lines.append(f"| {c.index} | {name} | {c.circuit[name]:.4g} | "
                         f"{c.emulation[name]:.4g} | {c.ratio(name):.3g} | "
                         f"{'pass' if ok else 'FAIL'} |")
    same = [c.same_path for c in outcome.noise if c.same_path is not None]
    if same:
        lines += ["", "Sample for sample on one noise path: the circuit's PWL sources carry the "
                  "emulation's own unit samples (noise seed 0), judged by the tolerance rule "
                  "below.", "", "| sample | max error | worst signal | update angle (tol) | "
                  "result |", "| --- | --- | --- | --- | --- |"]
        for r in same:
            angle = "–" if r.angle_deg is None else \
                f"{r.angle_deg:.3g}° ({r.angle_tol_deg:.3g}°)"
            lines.append(f"| {r.index} | {r.max_error:.3g} | {r.worst_signal} | {angle} | "
                         f"{'pass' if r.passed else 'FAIL'} |")
        for r in same:
            if r.failures:
                lines += ["", f"- sample {r.index} on the noise path"] + \
                    [f"  - {text}" for text in r.failures]
    return lines


def _group_table(errors: dict) -> list:
    rows = ["| signal | max error | RMS error | steady error | range R | tolerance | pass |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, e in errors.items():
        floored = " (= F)" if e.floored else ""
        rows.append(f"| {name} | {e.max:.3g} | {e.rms:.3g} | {e.steady:.3g} | {e.range:.3g}"
                    f"{floored} | {e.tol:.3g} | {'yes' if e.passed else '**no**'} |")
    return rows


def trajectories_npz(outcome: RunValidation) -> bytes:
    arrays = {"sample_index": np.array([r.index for r in outcome.results])}
    for r in outcome.results:
        for kind, traj in (("reference", r.reference), ("circuit", r.circuit),
                           ("ideal", r.ideal or {})):
            for name, a in traj.items():
                arrays[f"sample{r.index}_{kind}_{name}"] = a
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def plot_sample(result: SampleResult, phase: str):
    """Figure: per layer the somata of the neurons that move most (wake: departure from the
    model's feed-forward state; feed-forward: every neuron's operating point), then u and e;
    model solid, circuit dashed, and underneath the normalised error |circuit - model| / R on a
    log scale with the tolerance dotted."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ref, circ = result.reference, result.circuit
    layers = sorted(int(k[4:]) for k in ref if k.startswith("soma"))
    names = [f"soma{i}" for i in layers] + (["u", "error"] if phase == "wake" else [])
    fig, axes = plt.subplots(2, len(names), figsize=(3.3 * len(names), 5.6), sharex="col",
                             gridspec_kw={"height_ratios": [2, 1]}, squeeze=False)
    for col, name in enumerate(names):
        top, bottom = axes[0, col], axes[1, col]
        a_ref, a_circ = ref[name][:, 0, :], circ[name][:, 0, :]
        err = result.signals[name]
        if phase == "wake":
            x_axis, x_label = ref["t"], "t (τ_u)"
            soma = name.startswith("soma")
            base = a_ref[:1] if soma else 0.0
            chosen = np.argsort(-np.abs(a_ref - a_ref[:1]).max(axis=0))[:NEURONS_PER_PLOT]
            for k, n in enumerate(chosen):
                top.plot(x_axis, (a_ref - base)[:, n], color=f"C{k}", lw=1.4, label=f"#{n}")
                top.plot(x_axis, (a_circ - base)[:, n], color=f"C{k}", lw=1.0, ls="--")
                bottom.semilogy(x_axis, _floored(a_circ[:, n] - a_ref[:, n], err.range),
                                color=f"C{k}", lw=1.0)
            top.set_title(f"{name} − {name}(0) (model)" if soma else name)
        else:
            x_axis, x_label = np.arange(a_ref.shape[1]), "neuron"
            top.plot(x_axis, a_ref[0], "o", ms=3, color="C0", label="model (eq. 2)")
            top.plot(x_axis, a_circ[0], "x", ms=3, color="C1", label="circuit (.op)")
            bottom.semilogy(x_axis, _floored(a_circ[0] - a_ref[0], err.range), ".", ms=3,
                            color="C1")
            top.set_title(f"{name} operating point")
        bottom.axhline(err.tol, color="0.3", lw=0.8, ls=":")
        bottom.set_xlabel(x_label)
        top.legend(fontsize=6, loc="best")
    axes[1, 0].set_ylabel("|circuit − model| / R")
    verdict = "pass" if result.passed else "FAIL"
    legend = "model solid, circuit dashed" if phase == "wake" else "model o, circuit x"
    fig.suptitle(f"sample {result.index}: max normalised error {result.max_error:.2g} "
                 f"({result.worst_signal}), {verdict}.  {legend}; dotted: tolerance",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _floored(diff: np.ndarray, signal_range: float) -> np.ndarray:
    """|diff| / R, floored at 1e-12 so that exact agreement still shows on a log axis."""
    return np.maximum(np.abs(diff) / signal_range, 1e-12)


def write_report(outcome: RunValidation, out: Path, plots: bool = True) -> None:
    """Write every output file into ``out`` (which must exist and be writable)."""
    out = Path(out)
    atomic_write(out / "report.json",
                 (json.dumps(_finite(report_dict(outcome)), indent=1) + "\n").encode())
    atomic_write(out / "report.md", report_markdown(outcome).encode())
    atomic_write(out / "trajectories.npz", trajectories_npz(outcome))
    if plots:
        make_dir(out / "plots")
        for r in outcome.results:
            save_figure(out / "plots" / f"sample{r.index}.png",
                        plot_sample(r, outcome.settings.phase), dpi=110)
            if r.ideal is not None:
                sc = outcome.settings.scaling
                save_figure(out / "plots" / f"sample{r.index}_volts.png", overlay_volts(
                    {"circuit": r.circuit, "emulation": r.reference, "ideal model": r.ideal},
                    sc.time_scale, sc.v_scale,
                    f"sample {r.index} on {outcome.settings.hardware}: circuit, emulation and "
                    f"ideal model in volts (colour: neuron)"), dpi=110)


def _finite(value):
    """Strict JSON: non-finite numbers (a diverged circuit) become null."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
