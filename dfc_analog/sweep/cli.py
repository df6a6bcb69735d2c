"""``dfc-sweep`` (also ``python -m dfc_analog.sweep``): many runs as one sweep, on this machine
or on a Ray cluster, written cell by cell into a sweep folder that resumes where it stopped."""
from __future__ import annotations

import itertools
import sys
from pathlib import Path

from dfc_analog import cli

from dfc_analog.config.options import Config, load_config_file
from dfc_analog.config.presets import load_preset
from dfc_analog.errors import ConfigError
from dfc_analog.parallel import EXECUTORS
from dfc_analog.sweep.folder import SweepFolder
from dfc_analog.sweep.run import run_sweep
from dfc_analog.sweep.tasks import TASKS
from dfc_analog.training.loop import summary_table

TABLE_MD = "table.md"


def parse_values(text: str) -> tuple:
    """``key=v1,v2,...`` -> (key, [values]) with each value read as TOML would read it."""
    import tomllib
    key, sep, values = text.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key or not values.strip():
        raise ConfigError(f"--vary expects KEY=V1,V2,..., got '{text}'.")
    out = []
    for value in values.split(","):
        try:
            out.append(tomllib.loads(f"v = {value.strip()}")["v"])
        except tomllib.TOMLDecodeError:
            out.append(value.strip())
    return key, out


def build_parser():
    parser = cli.parser(
        "sweep",
        description="Run many trainings as one sweep ('dfc-sweep [train] ...'; for "
                    "deployment studies of trained runs on many chips see 'dfc-sweep deploy "
                    "--help'): every combination of the --vary values "
                    "times --seeds seeds, each a cell whose run folder and result are written "
                    "as soon as it finishes. Running the same command again computes only the "
                    "missing cells (also after Ctrl-C, a killed process or a lost Ray worker); "
                    "a cell that fails is reported with its parameters and the others go on. "
                    "Writes OUT/results.csv (a row per cell), OUT/table.md (mean ± std over "
                    "seeds, Table-1 style) and OUT/runs/<cell>/ (ordinary run folders).",
        epilog=f"examples: {cli.prog('sweep')} --preset mnist-dfc --vary target_stepsize=0.001,0.01,0.1 "
               "--seeds 3 --out runs/table2-lambda   |   {cli.prog('sweep')} --preset mnist-bp --seeds 5 "
               "--executor ray --address 10.0.0.1:6379")
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--preset", help="start from a preset (dfc-train --list-presets)")
    src.add_argument("--config", metavar="FILE", help="start from a TOML/JSON config file")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="one setting for every cell (repeatable), e.g. --set epochs=5")
    parser.add_argument("--vary", action="append", default=[], metavar="KEY=V1,V2,...",
                        help="a setting to sweep (repeatable; the cells are all combinations)")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="seeds seed .. seed+N-1 per combination (default 1)")
    parser.add_argument("--out", required=True, metavar="DIR", help="the sweep folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard the finished cells of a different sweep in OUT")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="'local': worker processes on this machine; 'ray': Ray tasks on a "
                             "local Ray (started on demand) or on the cluster at --address "
                             "(default local)")
    parser.add_argument("--address", metavar="HOST:PORT",
                        help="a Ray cluster's address (what 'ray start --head' prints)")
    parser.add_argument("--workers", type=int, metavar="W",
                        help="parallel cells (default: one per core; 1 runs them in this "
                             "process, in order, with each run's epoch lines)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    return parser


def sweep_cells(base: dict, vary: list, seeds: int) -> list:
    """Every combination of the varied settings, times the seeds."""
    keys = [k for k, _ in vary]
    first_seed = int(base.get("seed", Config().seed))
    cells = []
    for combo in itertools.product(*[values for _, values in vary]):
        for seed in range(first_seed, first_seed + seeds):
            cells.append({**dict(zip(keys, combo)), "seed": seed})
    return cells


def base_settings(args) -> dict:
    base = {}
    if args.preset:
        base = load_preset(args.preset)
    elif args.config:
        base = load_config_file(args.config)
    for item in args.set:
        key, values = parse_values(item)
        if len(values) != 1:
            raise ConfigError(f"--set takes one value, got '{item}' (use --vary to sweep).")
        base[key] = values[0]
    return base


@cli.command
def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["deploy"]:
        return deploy_main(argv[1:])
    args = build_parser().parse_args(argv[1:] if argv[:1] == ["train"] else argv)
    threads = cli.set_threads(args.threads)
    try:
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {args.seeds}.")
        base = base_settings(args)
        vary = [parse_values(item) for item in args.vary]
        cells = sweep_cells(base, vary, args.seeds)
        for cell in cells:                                     # every cell valid, before any run
            Config.from_dict({**base, **cell}, source=f"sweep cell {cell}")
        folder = SweepFolder(args.out, "train",
                             {"config": base, "root": str(Path(args.out).resolve()),
                              "verbose": args.workers == 1}, cells, args.overwrite)
        outcome = run_sweep(folder, TASKS["train"], args.executor, args.workers, args.address,
                            progress=args.progress and sys.stderr.isatty(), threads=threads)
        md = seeds_table(folder, [k for k, _ in vary])
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue the sweep.", file=sys.stderr)
        return 130
    print(md + f"{outcome.computed} cells computed, {outcome.reused} already finished, "
               f"{len(outcome.failed)} failed; written: {folder.path / 'results.csv'}, "
               f"{folder.path / TABLE_MD}")
    return 1 if outcome.failed else 0


def seeds_table(folder: SweepFolder, varied: list) -> str:
    """Mean ± std over seeds per combination of the varied settings (Table-1 style)."""
    from dfc_analog.runio import atomic_write
    groups = {}
    for row in folder.rows():
        label = ", ".join(f"{k} = {row[k]}" for k in varied) or "all"
        groups.setdefault(label, (row["metric"], []))[1].append(row["value"])
    md, _ = summary_table(groups) if groups else ("(no finished cell)\n", "")
    atomic_write(folder.path / TABLE_MD, md.encode())
    return md


def build_deploy_parser():
    from dfc_analog.circuit.graph import Scaling
    from dfc_analog.hardware import preset_names
    from dfc_analog.sweep.deploy import CIRCUIT_DEVICE_LIMIT, RATIO, SUMMARY_CSV, SUMMARY_PNG

    parser = cli.parser(
        "sweep",
        description="Deploy trained runs on many chips of a hardware spec: each chip's devices "
                    "are drawn (seeds --hardware-seed .. + R - 1, the same chips for every run "
                    "and value) and its settled feed-forward state, with the amplifiers' "
                    "effects, is evaluated on the run's test split; optionally over the values "
                    "of one spec field. Reports the test metric mean ± std over the chips, the "
                    "worst chip, the yield (chips within --yield-within of the run's ideal "
                    "metric; a chip whose rails clip fails) and the share of clipping chips. "
                    "Cells (run × value × block of chips) are written as they finish and "
                    "resume like training sweeps. With --circuit-chips N the first N chips also "
                    "run in ngspice against the emulation. Writes OUT/deployment.csv, "
                    f"OUT/{SUMMARY_PNG} (metric vs the field, a line per run, shaded ± std), "
                    "OUT/table.md and OUT/results.csv (a row per cell).",
        epilog=f"examples: {cli.prog('sweep')} deploy runs/dfc runs/bp --hardware pcm "
               "--realisations 100 --vary synapse.bits=2,4,6,8 --out runs/bits   |   "
               f"{cli.prog('sweep')} deploy runs/dfc --hardware pcm --vary "
               "synapse.drift_time=1,3600,86400,31536000 --yield-within 0.5 --out runs/drift")
    parser.prog = f"{cli.prog('sweep')} deploy"
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR", help="trained run folders")
    parser.add_argument("--hardware", required=True, metavar="NAME|FILE.toml",
                        help=f"the chips' spec: a preset ({', '.join(preset_names())}) or a "
                             "TOML file with [hardware] tables")
    parser.add_argument("--realisations", type=int, default=100, metavar="R",
                        help="chips per run and value (default 100)")
    parser.add_argument("--hardware-seed", type=int, default=0, metavar="S",
                        help="the first chip's seed (default 0)")
    parser.add_argument("--vary", metavar="FIELD=V1,V2,...",
                        help="one spec field to sweep: synapse.bits, synapse.programming_noise, "
                             "synapse.read_noise (scales of the device's noise), "
                             "synapse.drift_time (s), amplifier.gain (A0), "
                             f"{RATIO} (G_max / G_min), or any other TABLE.FIELD of a spec")
    parser.add_argument("--yield-within", type=float, default=1.0, metavar="M",
                        help="a chip counts toward the yield when its metric is at most the "
                             "run's ideal metric + M (percentage points of test error, or "
                             "test-loss units; default 1)")
    parser.add_argument("--block", type=int, default=50, metavar="B",
                        help="chips per cell, the unit of work and of resume (default 50)")
    parser.add_argument("--v-scale", type=float, default=Scaling.v_scale, metavar="VOLTS",
                        help="volts per model unit, as in dfc-export (default "
                             f"{Scaling.v_scale:g}): sets the offsets' and rails' size")
    parser.add_argument("--float64", action="store_true",
                        help="evaluate in float64 (default float32, 1e-5 of the output scale)")
    parser.add_argument("--circuit-chips", type=int, default=0, metavar="N",
                        help="circuit Monte Carlo: the first N chips also run as crossbar "
                             "netlists in ngspice (DC operating point, controller at rest), "
                             "one ngspice process per chip, and are held against the emulation "
                             "on the same draws: the metric of each, the share of samples whose "
                             "class agrees, max |r_L circuit - r_L emulation| / range "
                             "(default 0: off; networks of at most "
                             f"{CIRCUIT_DEVICE_LIMIT:,} crossbar devices)")
    parser.add_argument("--circuit-samples", type=int, default=20, metavar="M",
                        help="test samples per circuit chip: the first M (default 20)")
    parser.add_argument("--data-dir", metavar="DIR", help="where the runs' datasets are")
    parser.add_argument("--out", required=True, metavar="DIR", help="the sweep folder")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard the finished cells of a different sweep in OUT")
    parser.add_argument("--executor", choices=EXECUTORS, default="local",
                        help="'local' worker processes or 'ray' tasks (default local)")
    parser.add_argument("--address", metavar="HOST:PORT", help="a Ray cluster's address")
    parser.add_argument("--workers", type=int, metavar="W",
                        help="parallel cells (default: one per core)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bar")
    return parser


def deploy_main(argv) -> int:
    """``dfc-sweep deploy``: :func:`build_deploy_parser`."""
    import os

    from dfc_analog.hardware import load_spec
    from dfc_analog.runio import atomic_write
    from dfc_analog.sweep.deploy import (SUMMARY_CSV, SUMMARY_PNG, check_circuit, check_runs,
                                         deploy_cells, plot_summary, spec_variant, summarise,
                                         summary_csv, summary_markdown)

    args = build_deploy_parser().parse_args(argv)
    threads = cli.set_threads(args.threads)
    try:
        for name, value in (("--realisations", args.realisations), ("--block", args.block),
                            ("--circuit-samples", args.circuit_samples)):
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}.")
        if args.circuit_chips < 0:
            raise ConfigError(f"--circuit-chips must be 0 (off) or more, got "
                              f"{args.circuit_chips}.")
        if not (args.yield_within >= 0):
            raise ConfigError(f"--yield-within must be a non-negative margin, got "
                              f"{args.yield_within}.")
        if not (args.v_scale > 0):
            raise ConfigError(f"--v-scale must be positive, got {args.v_scale}.")
        hardware = args.hardware
        if hardware.endswith(".toml") or "/" in hardware:
            hardware = os.path.abspath(hardware)
        spec = load_spec(hardware)
        field, values = parse_values(args.vary) if args.vary else (None, None)
        variants = [spec_variant(spec, field, value) for value in values or [None]]
        check_runs(args.runs)
        settings = {"hardware": hardware, "field": field, "yield_within": args.yield_within,
                    "hardware_seed": args.hardware_seed, "v_scale": args.v_scale,
                    "data_dir": os.path.abspath(args.data_dir) if args.data_dir else None,
                    "dtype": "float64" if args.float64 else "float32"}
        if args.circuit_chips:          # (absent when off: earlier sweep folders still resume)
            check_circuit(args.runs, variants)
            settings.update(circuit_chips=args.circuit_chips,
                            circuit_samples=args.circuit_samples)
        folder = SweepFolder(args.out, "deploy", settings,
                             deploy_cells(args.runs, values, args.realisations, args.block),
                             args.overwrite)
        outcome = run_sweep(folder, TASKS["deploy"], args.executor, args.workers, args.address,
                            progress=args.progress and sys.stderr.isatty(), threads=threads)
    except KeyboardInterrupt:
        print("interrupted: run the same command again to continue the sweep.", file=sys.stderr)
        return 130
    summary = summarise(folder.rows(), field)
    md = summary_markdown(summary, args.yield_within)
    atomic_write(folder.path / TABLE_MD, md.encode())
    atomic_write(folder.path / SUMMARY_CSV, summary_csv(summary))
    if summary:
        plot_summary(folder.path / SUMMARY_PNG, summary, spec.name)
    print(md + f"{outcome.computed} cells computed, {outcome.reused} already finished, "
               f"{len(outcome.failed)} failed; written: {folder.path / SUMMARY_CSV}, "
               f"{folder.path / SUMMARY_PNG}, {folder.path / TABLE_MD}")
    return 1 if outcome.failed else 0
