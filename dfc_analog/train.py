"""``python -m dfc_analog.train``: train a DFC network from options and/or a config file.

Every field of :class:`dfc_analog.config.Config` is an option (``tau_v`` → ``--tau-v``) and a
config-file key; the command line wins over the file. Errors are one sentence and exit status 2.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from . import runio
from .config import Config, load_config_file
from .errors import ConfigError, DFCError
from .training import run_training

EXTRA_OPTIONS = ("config", "out", "resume", "overwrite", "progress")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m dfc_analog.train", usage="%(prog)s [options]",
        description="Train a Deep Feedback Control network (Meulemans et al., NeurIPS 2021) with "
                    "its continuous-time dynamics. Every option is also a key of a TOML/JSON "
                    "config file (--config); the command line wins over the file. Time is in "
                    "units of the controller time constant τ_u.",
        epilog="example: python -m dfc_analog.train --method dfc-ssa --epochs 10 --out runs/ssa",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter, argument_default=argparse.SUPPRESS)
    parser.add_argument("--config", metavar="FILE",
                        help="TOML or JSON file whose keys are the option names below "
                             "(underscores, e.g. tau_v = 0.2)")
    parser.add_argument("--out", metavar="DIR",
                        help="run folder to write (default runs/<dataset>-<method>-seed<seed>)")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue an interrupted or finished run with its own settings; "
                             "only --epochs and --device may change")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh in a run folder that already holds a run")
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


def _show(value) -> str:
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def config_from_args(args: argparse.Namespace) -> Config:
    given = {k: v for k, v in vars(args).items() if k not in EXTRA_OPTIONS}
    data = load_config_file(args.config) if "config" in args else {}
    data.update(given)
    return Config.from_dict(data, source=getattr(args, "config", "options"))


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    progress = getattr(args, "progress", True) and sys.stderr.isatty()
    try:
        if "resume" in args:
            out = Path(args.resume)
            state = runio.load_checkpoint(out)
            changes = {k: v for k, v in vars(args).items() if k not in EXTRA_OPTIONS}
            if "config" in args or set(changes) - {"epochs", "device"}:
                raise ConfigError("--resume continues a run with its own settings; only "
                                  "--epochs and --device may change.")
            cfg = Config.from_dict({**state["config"], **changes}, source=f"{out}/config.json")
            if cfg.epochs != state["config"]["epochs"]:
                runio.save_config(out / runio.CONFIG, cfg)
        else:
            cfg = config_from_args(args)
            out = Path(getattr(args, "out", f"runs/{cfg.dataset}-{cfg.method}-seed{cfg.seed}"))
            if (out / runio.CHECKPOINT).exists() and not getattr(args, "overwrite", False):
                raise ConfigError(f"'{out}' already holds a run; continue it with --resume {out} "
                                  "or start afresh with --overwrite.")
        rows = run_training(cfg, out, resume="resume" in args, progress=progress)
    except DFCError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    first, last = rows[0], rows[-1]
    best = min(rows[1:] or rows, key=lambda r: r["val_loss"])
    print(f"test loss {first['test_loss']:.5g} before training -> {last['test_loss']:.5g} after "
          f"{last['epoch']} epochs (best validation at epoch {best['epoch']}: test "
          f"{best['test_loss']:.5g}); run folder: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
