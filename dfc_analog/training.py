"""Training a DFC network into a run folder (the command line is :mod:`dfc_analog.train`).

Each minibatch runs one wake phase: the feed-forward pass (eq. 2), the output target (eq. 3), the
controlled dynamics (eqs. 1, 4) and the forward rule of the chosen method (eq. 5 along the
trajectory, at the steady state, or at the Lemma-1 steady state), applied with Adam. After every
epoch the run folder (see :mod:`dfc_analog.runio`) is brought up to date; Ctrl-C saves a
checkpoint that ``--resume RUN_DIR`` continues from, batch for batch as if never interrupted.
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from . import runio
from .config import Config
from .data import load_dataset
from .dynamics import ControllerParams
from .errors import ConfigError, DivergenceError
from .learning import forward_update, task_loss
from .network import DFCNetwork
from .solve import SolverSettings

def make_optimizer(cfg: Config, net: DFCNetwork) -> torch.optim.Adam:
    """Adam on W_i and b_i; with ``normalize_lr`` the rate is η/λ (as the paper's presets)."""
    lr = cfg.lr / cfg.target_stepsize if cfg.normalize_lr else cfg.lr
    params = list(net.W) + (list(net.b) if cfg.bias else [])
    return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps)


@torch.no_grad()
def evaluate(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor, loss: str,
             batch: int = 4096) -> float:
    """Minibatch-mean task loss of the feed-forward network over a whole split."""
    total = 0.0
    for s in range(0, x.shape[0], batch):
        _, rs = net.feedforward(x[s:s + batch])
        total += float(task_loss(rs[-1], y[s:s + batch], loss)) * min(batch, x.shape[0] - s)
    return total / x.shape[0]


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Minibatch order of an epoch, a function of (seed, epoch) only, so resuming repeats it."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100003 + epoch))


def apply_update(cfg: Config, net: DFCNetwork, opt: torch.optim.Optimizer, upd) -> None:
    """Load the rule's gradient-like update into ``.grad``, clip each tensor, take an Adam step."""
    pairs = list(zip(net.W, upd.gW)) + (list(zip(net.b, upd.gb)) if cfg.bias else [])
    for p, g in pairs:
        if not torch.isfinite(g).all():
            raise DivergenceError("the weight update is not finite: the dynamics diverged; lower "
                                  "k_p or target_stepsize, or raise alpha.")
        p.grad = g.to(p.dtype)
        if cfg.clip_grad_norm > 0:
            torch.nn.utils.clip_grad_norm_(p, cfg.clip_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)


def run_training(cfg: Config, out: Path, resume: bool = False, progress: bool = True) -> list:
    """Train into run folder ``out`` (continuing its checkpoint if ``resume``); returns metrics."""
    from tqdm import tqdm

    cfg.validate()
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{cfg.device}' was asked for, but torch sees no CUDA device.")
    out = runio.prepare_run_dir(out)
    net = DFCNetwork.from_config(cfg, torch.Generator().manual_seed(cfg.seed))
    opt = make_optimizer(cfg, net)
    data = load_dataset(cfg)
    params = ControllerParams.from_config(cfg)
    solver = SolverSettings.from_config(cfg)
    n_train = len(data.train)
    n_batches = math.ceil(n_train / cfg.batch_size)

    if resume:
        state = runio.load_checkpoint(out)
        net.load_state_dict(state["network"])
        opt.load_state_dict(state["optimizer"])
        rows, epoch, start_batch = state["metrics"], state["epoch"], state["batch"]
        loss_sum, nfe_sum = state["loss_sum"], state["nfe_sum"]
    else:
        rows = [_metrics_row(0, float("nan"), net, data, cfg, 0.0, 0)]
        epoch, start_batch, loss_sum, nfe_sum = 0, 0, 0.0, 0
        runio.save_config(out / runio.CONFIG, cfg)
        _save_all(out, cfg, net, opt, rows, epoch, 0, 0.0, 0)

    say = tqdm.write if progress else print
    if resume:
        say(f"resuming {out} at epoch {epoch + 1}, batch {start_batch + 1} of {n_batches}")
    while epoch < cfg.epochs:
        order = epoch_order(cfg.seed, epoch, n_train).to(data.train.x.device)
        t0 = time.perf_counter()
        bar = tqdm(total=n_batches, initial=start_batch, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                   unit="batch", leave=False, disable=not progress, dynamic_ncols=True)
        b = start_batch  # the next batch to apply
        try:
            while b < n_batches:
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                upd = forward_update(net, data.train.x[idx], data.train.y[idx], cfg.method,
                                     params, solver, cfg.t_end, cfg.loss, cfg.loss_reduction,
                                     cfg.target_stepsize)
                apply_update(cfg, net, opt, upd)
                loss_sum += upd.loss * len(idx)
                nfe_sum += upd.wake.nfe if upd.wake is not None else 0
                b += 1
                bar.update(1)
                bar.set_postfix(loss=f"{upd.loss:.4g}")
        except KeyboardInterrupt:
            bar.close()
            _save_checkpoint(out, cfg, net, opt, rows, epoch, b, loss_sum, nfe_sum)
            say(f"interrupted: checkpoint saved at epoch {epoch + 1}, batch {b}; continue "
                f"with: python -m dfc_analog.train --resume {out}")
            raise
        except DivergenceError as exc:
            bar.close()
            raise DivergenceError(f"epoch {epoch + 1}, batch {b + 1}: {exc} The run folder "
                                  f"keeps the last good epoch.") from None
        bar.close()
        epoch += 1
        rows.append(_metrics_row(epoch, loss_sum / n_train, net, data, cfg,
                                 time.perf_counter() - t0, nfe_sum / n_batches))
        if not all(math.isfinite(rows[-1][k]) for k in ("val_loss", "test_loss")):
            raise DivergenceError(f"epoch {epoch}: the network's loss is not finite; lower lr.")
        start_batch, loss_sum, nfe_sum = 0, 0.0, 0
        _save_all(out, cfg, net, opt, rows, epoch, 0, 0.0, 0)
        r = rows[-1]
        cost = "" if cfg.method == "dfc-ssa" else \
            f", {r['nfe_per_batch']:.0f} solver evaluations per batch"
        say(f"epoch {epoch:3d}/{cfg.epochs}  train {r['train_loss']:.5g}  val {r['val_loss']:.5g}"
            f"  test {r['test_loss']:.5g}  ({r['seconds']:.1f} s{cost})")
    return rows


def _metrics_row(epoch, train_loss, net, data, cfg, seconds, nfe):
    return {"epoch": epoch, "train_loss": train_loss,
            "val_loss": evaluate(net, data.val.x, data.val.y, cfg.loss),
            "test_loss": evaluate(net, data.test.x, data.test.y, cfg.loss),
            "seconds": round(seconds, 3), "nfe_per_batch": nfe}


def _save_checkpoint(out, cfg, net, opt, rows, epoch, batch, loss_sum, nfe_sum):
    runio.save_checkpoint(out / runio.CHECKPOINT, {
        "config": cfg.to_dict(), "network": net.state_dict(), "optimizer": opt.state_dict(),
        "metrics": rows, "epoch": epoch, "batch": batch, "loss_sum": loss_sum,
        "nfe_sum": nfe_sum})


def _save_all(out, cfg, net, opt, rows, epoch, batch, loss_sum, nfe_sum):
    _save_checkpoint(out, cfg, net, opt, rows, epoch, batch, loss_sum, nfe_sum)
    runio.save_weights(out / runio.WEIGHTS, net)
    runio.save_metrics(out / runio.METRICS, rows)
    plot_losses(out / runio.LOSS_CURVE, rows, cfg)


def plot_losses(path: Path, rows: list, cfg: Config) -> None:
    import io

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    epochs = [r["epoch"] for r in rows]
    for key, label in (("train_loss", "train"), ("val_loss", "validation"), ("test_loss", "test")):
        pts = [(e, r[key]) for e, r in zip(epochs, rows) if math.isfinite(r[key])]
        if pts:
            ax.plot(*zip(*pts), marker="o", ms=3, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{cfg.loss} loss")
    ax.set_title(f"{cfg.method.upper()} on {cfg.dataset} "
                 f"({'-'.join(map(str, cfg.layer_sizes))})")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    runio.atomic_write(path, buf.getvalue())
