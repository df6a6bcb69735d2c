"""``python -m dfc_analog.train``: train a DFC network from a preset, a config file and options.

Every field of :class:`dfc_analog.config.Config` is an option (``tau_v`` → ``--tau-v``) and a
config-file key. Settings stack: a preset (``--preset mnist-dfc-ssa``, the paper's Table 1 and 2
configurations, :mod:`dfc_analog.config.presets`), then a config file, then the command line. ``--seeds N``
trains seeds s, s+1, ... into sub-folders and writes a Table-1-style mean ± std table. Errors are
one sentence and exit status 2.
"""
from __future__ import annotations

if __name__ == "__main__":
    from dfc_analog.cli import quiet_startup
    quiet_startup()

import argparse
import dataclasses
import os
import sys
from contextlib import nullcontext
from pathlib import Path

from dfc_analog import cli, runio
from dfc_analog.config.options import MAX_SEED, Config, load_config_file
from dfc_analog.errors import ConfigError, DFCError
from dfc_analog.config.presets import describe_presets, load_preset
from dfc_analog.training.loop import metric_name, reported, run_training, summary_table

EXTRA_OPTIONS = ("config", "preset", "list_presets", "seeds", "out", "resume", "overwrite",
                 "progress")
TABLE_MD, TABLE_CSV = "table.md", "table.csv"


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "train", threads=False, usage="%(prog)s [options]",
        description="Train a Deep Feedback Control network (Meulemans et al., NeurIPS 2021) with "
                    "its continuous-time dynamics. Every option is also a key of a TOML/JSON "
                    "config file (--config); the command line wins over the file. Time is in "
                    "units of the controller time constant τ_u.",
        epilog=f"example: {cli.prog('train')} --method dfc-ssa --epochs 10 --out runs/ssa",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, argument_default=argparse.SUPPRESS)
    parser.add_argument("--preset", metavar="NAME",
                        help="start from a named configuration of the paper (Table 1: "
                             "mnist-dfc-ssa, fashion-mnist-bp, mnist-autoencoder-dfc, "
                             "mnist-train-loss-dfa, ...; Table 2: mnist-dfc-lambda-0.01, ...); "
                             "a config file and options override it")
    parser.add_argument("--list-presets", action="store_true",
                        help="list the presets with a line each and exit")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML or JSON file whose keys are the option names below "
                             "(underscores, e.g. tau_v = 0.2)")
    parser.add_argument("--seeds", type=int, metavar="N",
                        help="train N seeds (--seed, --seed+1, ...) into OUT/seed<k>/, then write "
                             "OUT/table.md and OUT/table.csv with the mean ± std of the reported "
                             "metric (Table 1's rule); running the same command again continues "
                             "unfinished seeds")
    parser.add_argument("--out", metavar="DIR",
                        help="run folder to write (default runs/<preset or dataset-method>-"
                             "seed<seed>, or runs/<preset or dataset-method>-seeds with --seeds)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue an interrupted or finished run with its own settings; "
                             "only --epochs, --device and --threads may change")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in a run folder that already holds a run (its "
                             "training, evaluation and validation files are removed)")
    parser.add_argument("--no-progress", dest="progress", action="store_false",
                        help="no progress bars (epoch summaries are still printed)")
    groups = {}
    for f in dataclasses.fields(Config):
        meta = f.metadata
        group = groups.setdefault(meta["group"], parser.add_argument_group(meta["group"]))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        symbol = f" [{meta['symbol']}]" if meta["symbol"] else ""
        help_text = f"{meta['help']}{symbol} (default: {_show(default)})"
        flag = "--" + f.name.replace("_", "-")
        if isinstance(default, bool):
            group.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif isinstance(default, list):
            metavar = {"layer_sizes": "N", "activations": "PHI"}.get(f.name, "X")
            group.add_argument(flag, nargs="+", type=type(default[0]), metavar=metavar,
                               help=help_text)
        else:
            group.add_argument(flag, type=type(default), choices=meta["choices"],
                               metavar=None if meta["choices"] else f.name.upper(),
                               help=help_text)
    parser.formatter_class = argparse.HelpFormatter
    return parser


def circuit_phases(cfg: Config):
    """The phases the run's simulator needs, as a context giving run_training's keyword
    arguments: none (the ODE solver and the model's sleep phase, inside run_training) or the
    circuit's persistent ngspice processes (imported only then)."""
    if cfg.simulator != "spice":
        return nullcontext({})
    from dfc_analog.circuit.learning import circuit_phases as phases
    return phases(cfg)


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def config_from_args(args: argparse.Namespace) -> Config:
    """Preset, then config file, then command-line options."""
    given = {k: v for k, v in vars(args).items() if k not in EXTRA_OPTIONS}
    data = load_preset(args.preset) if "preset" in args else {}
    if "config" in args:
        data.update(load_config_file(args.config))
    data.update(given)
    source = getattr(args, "config", None) or (f"preset '{args.preset}'" if "preset" in args
                                               else "options")
    cfg = Config.from_dict(data, source=source)
    return cfg.replace(data_dir=os.path.abspath(cfg.data_dir),
                       threads=cfg.threads or cli.available_cores())


def run_name(args: argparse.Namespace, cfg: Config) -> str:
    """The default run folder's name: the preset's, or <dataset>-<method>."""
    return getattr(args, "preset", None) or f"{cfg.dataset}-{cfg.method}"


def list_presets() -> None:
    names = describe_presets()
    width = max(len(n) for n, _ in names)
    for name, description in names:
        print(f"{name:{width}s}  {description}")


def run_seeds(cfg: Config, out: Path, n: int, overwrite: bool, progress: bool) -> str:
    """Train seeds cfg.seed .. cfg.seed+n-1 into ``out/seed<k>`` as one sweep
    (:mod:`dfc_analog.sweep`), continuing any unfinished one, and write the mean ± std table;
    returns its Markdown text."""
    from dfc_analog.sweep import SweepFolder, run_sweep
    from dfc_analog.sweep.tasks import train_cell
    cells = [{"seed": seed} for seed in range(cfg.seed, cfg.seed + n)]
    base = {k: v for k, v in cfg.to_dict().items() if k != "seed"}
    for cell in cells:                      # a folder of other settings: one sentence, up front
        run = out / f"seed{cell['seed']}"
        if (run / runio.CHECKPOINT).exists() and not overwrite:
            runio.check_same_run(run, cfg.replace(**cell))
        elif overwrite:
            runio.clear_run(run)
    folder = SweepFolder(out, "train", {"config": base, "root": str(out.resolve()),
                                        "verbose": True, "runs": "."},
                         cells, overwrite=overwrite, redefine=True)
    finished = folder.done()
    for key, cell in folder.cells.items():
        if key in finished:
            print(f"seed {cell['seed']}: finished run in {out / ('seed' + str(cell['seed']))}")
    outcome = run_sweep(folder, train_cell, workers=1, progress=False)
    if outcome.failed:
        raise DFCError(outcome.failed[0]["error"])
    values = [row["value"] for row in folder.rows()]
    for cell, value in zip(cells, values):
        print(f"seed {cell['seed']}: {metric_name(cfg)} {value:.5g}")
    label = f"{cfg.dataset} {cfg.method}" + (" (trained feedback)" if cfg.train_feedback else "")
    md, csv_text = summary_table({label: (metric_name(cfg), values)})
    runio.atomic_write(out / TABLE_MD, md.encode())
    runio.atomic_write(out / TABLE_CSV, csv_text.encode())
    return md


@cli.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    progress = getattr(args, "progress", True) and sys.stderr.isatty()
    if getattr(args, "list_presets", False):
        list_presets()
        return 0
    if "seeds" in args:
        if "resume" in args:
            raise ConfigError("--seeds continues its unfinished seeds by itself: run the same "
                              "command again instead of --resume.")
        if args.seeds < 1:
            raise ConfigError(f"--seeds must be at least 1, got {args.seeds}.")
        cfg = config_from_args(args)
        if cfg.seed + args.seeds - 1 > MAX_SEED:
            raise ConfigError(f"--seeds {args.seeds} from seed {cfg.seed} runs past the largest "
                              f"seed {MAX_SEED}.")
        out = Path(getattr(args, "out", f"runs/{run_name(args, cfg)}-seeds"))
        with runio.run_lock(out):
            md = run_seeds(cfg, out, args.seeds, getattr(args, "overwrite", False), progress)
        print(md + f"written: {out / TABLE_MD}, {out / TABLE_CSV}")
        return 0
    if "resume" in args:
        out = Path(args.resume)
        changes = {k: v for k, v in vars(args).items() if k not in EXTRA_OPTIONS}
        if "config" in args or "preset" in args or set(changes) - set(runio.RESUME_CHANGES):
            raise ConfigError("--resume continues a run with its own settings; only "
                              "--epochs, --device and --threads may change.")
        with runio.run_lock(out) if out.is_dir() else nullcontext():
            state = runio.load_checkpoint(out)
            stored = {**state["config"], "threads": 0, **changes}
            cfg = Config.from_dict(stored, source=f"{out}/{runio.CHECKPOINT}")
            cfg = cfg.replace(threads=cfg.threads or cli.available_cores())
            with circuit_phases(cfg) as phases:
                rows = run_training(cfg, out, resume=True, progress=progress, **phases)
    else:
        cfg = config_from_args(args)
        out = Path(getattr(args, "out", f"runs/{run_name(args, cfg)}-seed{cfg.seed}"))
        with runio.run_lock(out):
            if (out / runio.CHECKPOINT).exists():
                if not getattr(args, "overwrite", False):
                    raise ConfigError(f"'{out}' already holds a run; continue it with --resume "
                                      f"{out} or start afresh with --overwrite.")
                runio.clear_run(out)
            with circuit_phases(cfg) as phases:
                rows = run_training(cfg, out, progress=progress, **phases)
    first, last = rows[0], rows[-1]
    value, epoch = reported(cfg, rows)
    rule = "last epoch" if cfg.report == "final-train-loss" else "best validation"
    print(f"test loss {first['test_loss']:.5g} before training -> {last['test_loss']:.5g} after "
          f"{last['epoch']} epochs ({rule} at epoch {epoch}: {metric_name(cfg)} {value:.5g}); "
          f"run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
