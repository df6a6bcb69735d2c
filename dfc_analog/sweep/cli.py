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
        description="Run many trainings as one sweep: every combination of the --vary values "
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
    args = build_parser().parse_args(argv)
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
