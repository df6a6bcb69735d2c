"""``python -m dfc_analog.evaluate RUN_DIR``: test metrics and a figure of a trained run.

Prints, for the saved (last) weights of a run folder, the loss and — for classification — the error
of the feed-forward network (eq. 2) on a split, next to the value the run reports under Table 1's
rule (test metric at the epoch of best validation, from ``metrics.csv``). Writes, atomically:

* classification (MNIST, Fashion-MNIST): ``confusion_matrix.png``, true class against predicted;
* autoencoder: ``reconstruction.png``, test digits above their reconstructions;
* regression (student-teacher): ``predictions.png``, each output against its target;
* ``evaluation.json`` with the printed numbers.

The test split writes these names; another split adds its name (``evaluation-val.json``,
``confusion_matrix-val.png``), so it never overwrites the test results.
"""
from __future__ import annotations

if __name__ == "__main__":
    from dfc_analog.cli import quiet_startup
    quiet_startup()

import argparse
import csv
import json
import math
import os
import sys
from pathlib import Path

import torch

from dfc_analog import cli, runio
from dfc_analog.data import MNIST_MEAN, MNIST_STD, load_dataset
from dfc_analog.errors import DFCError
from dfc_analog.training.loop import evaluate_split, metric_name, reported

SPLITS = ("test", "val", "train")
METRIC_COLUMNS = {"epoch", "train_loss", "val_loss", "test_loss"}
N_DIGITS = 10


def read_metrics(run_dir: Path) -> list:
    """The rows of a run's ``metrics.csv`` as floats (empty when the file is absent)."""
    path = run_dir / runio.METRICS
    if not path.is_file():
        return []
    try:
        with open(path, newline="") as f:
            rows = [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]
        for r in rows:
            r["epoch"] = int(r["epoch"])
            if not METRIC_COLUMNS <= r.keys():
                raise KeyError
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, csv.Error):
        raise DFCError(f"'{path}' is damaged: every row must hold the numbers of one epoch "
                       "under the header's columns (epoch, train_loss, ...).") from None
    return rows


def confusion_matrix(labels: torch.Tensor, predicted: torch.Tensor, n: int) -> torch.Tensor:
    """(n, n) counts: row = true class, column = predicted class."""
    flat = labels.to(torch.int64) * n + predicted.to(torch.int64)
    return torch.bincount(flat.cpu(), minlength=n * n).reshape(n, n)


def plot_confusion(path: Path, matrix: torch.Tensor, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = matrix.shape[0]
    fig, ax = plt.subplots(figsize=(5.5, 5), dpi=120)
    ax.imshow(matrix.numpy(), cmap="Blues")
    limit = float(matrix.max()) / 2
    for i in range(n):
        for j in range(n):
            count = int(matrix[i, j])
            ax.text(j, i, str(count), ha="center", va="center", fontsize=7,
                    color="white" if count > limit else "black")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    runio.save_figure(path, fig)


def plot_reconstructions(path: Path, x: torch.Tensor, r: torch.Tensor, title: str) -> None:
    """The first test digits (top) and their reconstructions (bottom), in pixel units 0..1."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(N_DIGITS, x.shape[0])
    fig, axes = plt.subplots(2, n, figsize=(1.2 * n, 2.8), dpi=120, squeeze=False)
    for k in range(n):
        for row, img in enumerate((x[k], r[k])):
            pixels = (img.double().cpu() * MNIST_STD + MNIST_MEAN).clamp(0, 1).reshape(28, 28)
            axes[row][k].imshow(pixels.numpy(), cmap="gray", vmin=0, vmax=1)
            axes[row][k].axis("off")
    axes[0][0].set_title("input", fontsize=8, loc="left")
    axes[1][0].set_title("reconstruction", fontsize=8, loc="left")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    runio.save_figure(path, fig)


def plot_predictions(path: Path, y: torch.Tensor, r: torch.Tensor, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5), dpi=120)
    for k in range(y.shape[1]):
        ax.scatter(y[:, k].cpu(), r[:, k].cpu(), s=4, alpha=0.5, label=f"output {k + 1}")
    lo, hi = float(y.min()), float(y.max())
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    ax.set_xlabel("target")
    ax.set_ylabel("network output r_L")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7, markerscale=3)
    fig.tight_layout()
    runio.save_figure(path, fig)


def evaluate_run(run_dir: Path, split: str = "test", data_dir: str | None = None) -> dict:
    """Numbers and figure of a run folder; see the module docstring."""
    cfg, net = runio.load_run(run_dir)
    if data_dir is not None:
        cfg = cfg.replace(data_dir=os.path.abspath(data_dir))
    data = getattr(load_dataset(cfg), split)
    loss, error, outputs = evaluate_split(net, data.x, data.y, cfg.loss)
    if not math.isfinite(loss):
        raise DFCError(f"the network of '{run_dir}' gives a non-finite {split} loss.")
    rows = read_metrics(run_dir)
    result = {"run": str(run_dir), "split": split, "samples": len(data), "loss": loss,
              "error_percent": error, "epochs": rows[-1]["epoch"] if rows else None}
    if len(rows) > 1:
        try:
            value, epoch = reported(cfg, rows)
        except KeyError as exc:
            raise DFCError(f"'{run_dir / runio.METRICS}' is damaged: it lacks the column "
                           f"{exc}.") from None
        result.update(reported_metric=metric_name(cfg), reported_value=value,
                      reported_epoch=epoch)
    title = f"{cfg.method.upper()} on {cfg.dataset}, {split} split ({len(data)} samples)"
    suffix = "" if split == "test" else f"-{split}"
    if error is not None:
        n = cfg.layer_sizes[-1]
        matrix = confusion_matrix(data.y, outputs.argmax(1), n)
        result["confusion_matrix"] = matrix.tolist()
        figure = run_dir / f"confusion_matrix{suffix}.png"
        plot_confusion(figure, matrix, f"{title}: error {error:.2f}%")
    elif cfg.dataset == "mnist-autoencoder":
        figure = run_dir / f"reconstruction{suffix}.png"
        plot_reconstructions(figure, data.x, outputs, f"{title}: loss {loss:.4f}")
    else:
        figure = run_dir / f"predictions{suffix}.png"
        plot_predictions(figure, data.y, outputs, f"{title}: loss {loss:.4g}")
    result["figure"] = str(figure)
    runio.atomic_write(run_dir / f"evaluation{suffix}.json",
                       (json.dumps(result, indent=2) + "\n").encode())
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = cli.parser(
        "evaluate",
        description="Evaluate a trained run folder: print the loss (and the error for "
                    "classification) of its saved weights on a split, next to the run's "
                    "Table-1 figure (test metric at the epoch of best validation), and write a "
                    "confusion-matrix (classification), reconstruction (autoencoder) or "
                    "prediction (regression) PNG plus evaluation.json into the run folder "
                    "(evaluation-SPLIT.json and FIGURE-SPLIT.png for the train and val splits).")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run folder written by dfc-train")
    parser.add_argument("--split", choices=SPLITS, default="test",
                        help="which split to evaluate (default: test)")
    parser.add_argument("--data-dir", metavar="DIR", default=None,
                        help="folder with the IDX files, if not where the run found them, e.g. "
                             "after moving the run to another machine (default: the run's "
                             "data_dir)")
    return parser


@cli.command
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    cli.set_threads(args.threads)
    result = evaluate_run(Path(args.run_dir), args.split, args.data_dir)
    line = f"{result['split']} loss {result['loss']:.5g}"
    if result["error_percent"] is not None:
        line += f", {result['split']} error {result['error_percent']:.2f}%"
    print(f"{line} ({result['samples']} samples, saved weights after {result['epochs']} epochs)")
    if "reported_value" in result:
        print(f"reported by the run: {result['reported_metric']} "
              f"{result['reported_value']:.5g} (epoch {result['reported_epoch']})")
    print(f"figure: {result['figure']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
