"""``dfc-validate RUN_DIR`` (also ``python -m dfc_analog.validate``): the circuit against the
model, sample by sample (:mod:`dfc_analog.validation`)."""
from __future__ import annotations

if __name__ == "__main__":
    from dfc_analog.cli import quiet_startup
    quiet_startup()

import argparse
import sys
from pathlib import Path

from dfc_analog import cli
from dfc_analog.circuit.graph import add_scaling_arguments, scaling_from_args
from dfc_analog.circuit.netlist import add_spice_arguments, spice_options
from dfc_analog.errors import ConfigError
from dfc_analog.hardware import preset_names
from dfc_analog.runio import output_dir
from dfc_analog.validation.compare import (CIRCUIT_NOISE, EMULATION_SOLVERS, PHASES, SPLITS,
                                           RunValidation, ValidationSettings, load_samples,
                                           validate_samples)
from dfc_analog.validation.report import write_report

def build_parser() -> argparse.ArgumentParser:
    d = ValidationSettings()
    parser = cli.parser(
        "validate",
        description="Validate a run's circuit against its model: simulate the first N test "
                    "samples (or those --sample-index names, of --split) with SPICE (the netlist dfc-export writes) and with the ODE of eqs. "
                    "(1) and (4) at far tighter tolerances, from the same input and the same "
                    "eq. (3) target, and report per signal group (soma, basal, apical, rate per "
                    "layer; u, u_int, error) the maximum, RMS and steady-state error normalised "
                    "by the signal's range, the angle between the eq. (5) weight updates, and for "
                    "classifiers the predicted class. Writes report.md, report.json, "
                    "trajectories.npz and overlay plots. Exit status 0: all samples pass; "
                    "1: validation failed (report written); 2: bad input.",
        epilog=f"example: {cli.prog('validate')} runs/student-teacher-dfc-seed42 --samples 4 "
               "--reltol 1e-6")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by dfc-train")
    parser.add_argument("--samples", type=int, default=4, metavar="N",
                        help="validate the first N samples of the split (default 4)")
    parser.add_argument("--sample-index", type=int, nargs="+", metavar="I",
                        help="validate these samples of the split instead of the first N")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="dataset split the samples come from (default: test)")
    parser.add_argument("--data-dir", metavar="DIR",
                        help="folder with the IDX files, if not where the run found them "
                             "(default: the run's data_dir)")
    parser.add_argument("--phase", choices=PHASES, default=d.phase,
                        help="'wake': the controlled phase from the feed-forward state with the "
                             "eq. (3) target; 'feedforward': the circuit's operating point "
                             "against eq. (2), controller off (default wake)")
    parser.add_argument("--out", metavar="DIR",
                        help="folder for the report (default RUN_DIR/validation-PHASE)")
    parser.add_argument("--safety", type=float, default=d.safety, metavar="K",
                        help="k of the tolerance rule "
                             "k·(reltol·peak + (vntol + abstol·R)/v_scale)/range (default 10)")
    parser.add_argument("--points", type=int, default=d.points,
                        help="time points of the common grid over the phase (default 401)")
    parser.add_argument("--t-end", type=float, metavar="T",
                        help="simulated time in τ_u (default: the run's t_end)")
    hw = parser.add_argument_group("hardware (circuit and emulation on analog devices)")
    hw.add_argument("--hardware", metavar="NAME|FILE.toml",
                    help="validate the crossbar netlist of a hardware realisation against its "
                         "emulation (the same device draws), and report the hardware's effect "
                         "against the ideal model; a preset (" + ", ".join(preset_names()) +
                         ") or a TOML file with [hardware] tables (default: the ideal circuit)")
    hw.add_argument("--hardware-seed", type=int, default=0, metavar="S",
                    help="seed of the realisation's device draws (default 0)")
    hw.add_argument("--emulation-solver", choices=EMULATION_SOLVERS, default=d.emulation_solver,
                    help="solver of the emulation: 'auto' is dopri5, rosenbrock (with the "
                         "circuit's exact Jacobian) where op-amp poles make it stiff "
                         "(default auto)")
    hw.add_argument("--noise-seeds", type=int, default=d.noise_seeds, metavar="N",
                    help="with a read-noise process (read_interval > 0): noise realisations "
                         "per simulator for the check in distribution (default "
                         f"{d.noise_seeds})")
    hw.add_argument("--noise-samples", type=int, default=d.noise_samples, metavar="M",
                    help="the check in distribution runs on the first M samples (default "
                         f"{d.noise_samples})")
    hw.add_argument("--circuit-noise", choices=CIRCUIT_NOISE, default=d.circuit_noise,
                    help="the circuit's read noise in that check: 'pwl' draws its unit samples "
                         "from a named seed stream (reproducible) and also drives the circuit "
                         "with the emulation's own path, compared sample for sample; "
                         "'trnoise' uses ngspice's TRNOISE (not seedable) (default pwl)")
    add_scaling_arguments(parser.add_argument_group("physical scaling"))
    add_spice_arguments(parser.add_argument_group("simulator options; the pass tolerances scale "
                                                  "with reltol"))
    parser.add_argument("--workers", type=int, metavar="W",
                        help="parallel processes (default: one per CPU core, at most N)")
    parser.add_argument("--no-plots", dest="plots", action="store_false",
                        help="skip the overlay PNGs")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    return parser


@cli.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    settings = ValidationSettings(
        phase=args.phase, points=args.points, t_end=args.t_end, safety=args.safety,
        spice=spice_options(args), scaling=scaling_from_args(args),
        hardware=args.hardware, hardware_seed=args.hardware_seed,
        emulation_solver=args.emulation_solver, noise_seeds=args.noise_seeds,
        noise_samples=args.noise_samples, circuit_noise=args.circuit_noise)
    settings.check()
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"workers must be at least 1, got {args.workers}.")
    threads = cli.set_threads(args.threads)
    run_dir = Path(args.run_dir)
    out = Path(args.out) if args.out else run_dir / f"validation-{args.phase}"
    samples = load_samples(run_dir, args.sample_index or args.samples, settings, args.split,
                           args.data_dir)
    with output_dir(out):
        outcome = validate_samples(samples, settings, args.workers,
                                   progress=args.progress and sys.stderr.isatty(),
                                   threads=threads)
        write_report(outcome, out, plots=args.plots)
    print(summary_line(outcome, out))
    return 0 if outcome.passed else 1


def summary_line(outcome: RunValidation, out: Path) -> str:
    results = outcome.results
    worst = max(results, key=lambda r: r.max_error)
    parts = [f"{sum(r.passed for r in results)}/{len(results)} samples pass",
             f"max normalised error {worst.max_error:.3g} ({worst.worst_signal}, sample "
             f"{worst.index})"]
    angles = [r.angle_deg for r in results if r.angle_deg is not None]
    if angles:
        parts.append(f"largest update angle {max(angles):.3g}°")
    if outcome.classify:
        agree = sum(r.class_reference == r.class_circuit for r in results)
        parts.append(f"class agreement {agree}/{len(results)}")
    if outcome.noise:
        ratios = [c.ratio(n) for c in outcome.noise for n in c.circuit]
        c0 = outcome.noise[0]
        parts.append(f"read noise in distribution {sum(c.variance_passed for c in outcome.noise)}"
                     f"/{len(outcome.noise)} pass (variance ratios circuit/emulation "
                     f"{min(ratios):.3g}..{max(ratios):.3g}, bounds {c0.bounds[0]:.3g}.."
                     f"{c0.bounds[1]:.3g})")
        same = [c.same_path for c in outcome.noise if c.same_path is not None]
        if same:
            parts.append(f"on the emulation's noise path {sum(r.passed for r in same)}/"
                         f"{len(same)} pass (max normalised error "
                         f"{max(r.max_error for r in same):.3g})")
    return "; ".join(parts) + f"; report: {out / 'report.md'}"


if __name__ == "__main__":
    sys.exit(main())
