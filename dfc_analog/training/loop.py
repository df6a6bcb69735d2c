"""Training a DFC network into a run folder (the command line is :mod:`dfc_analog.train`).

A run is a schedule of passes over the training set (:func:`schedule`): with trained feedback,
pre-training sleep passes first, then per epoch X sleep passes (eqs. 12-13: simulated,
:mod:`.sleep`, or their expected update in closed form, :mod:`.sleep_expected`, by ``cfg.sleep``)
and one wake pass; with ``schedule = 'single-phase'`` each epoch is one pass whose minibatches
update W and Q together (DFC: :mod:`dfc_analog.learning.single_phase`; DFC-SSA with the
expected sleep: Lemma 1 and the expected feedback update on one J). Each wake minibatch runs
the feed-forward pass (eq. 2), the output target (eq. 3), the controlled dynamics (eqs. 1, 4)
and the forward rule of the chosen method (eq. 5 along the trajectory, at the steady state, or
at the Lemma-1 steady state; or a DFA / BP baseline). After every epoch the run folder (see :mod:`dfc_analog.runio`) is brought up to date; Ctrl-C saves a
checkpoint that ``--resume RUN_DIR`` continues from, batch for batch as if never interrupted.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from dfc_analog import runio
from dfc_analog.config.options import Config
from dfc_analog.config.seeds import generator
from dfc_analog.data import load_dataset
from dfc_analog.errors import ConfigError, DivergenceError
from dfc_analog.learning.forward import ForwardSettings, forward_update
from dfc_analog.learning.targets import task_loss
from dfc_analog.hardware.spec import load_spec
from dfc_analog.model.hardware_aware import HardwareChip
from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.model.network import DFCNetwork, all_finite
from dfc_analog.learning.sleep import SleepParams, feedback_update
from dfc_analog.learning.sleep_expected import (FeedbackJacobians, expected_feedback_update,
                                                single_phase_ssa_update)
from dfc_analog.learning.single_phase import SinglePhaseParams, single_phase_update
from dfc_analog.theory import DIAGNOSTICS, condition2_ratio, diagnostics

def make_optimizer(cfg: Config, net: DFCNetwork) -> torch.optim.Optimizer:
    """Adam or SGD on W_i and b_i; with ``normalize_lr`` the rate is η/λ (the paper's presets)."""
    lr = cfg.lr / cfg.target_stepsize if cfg.normalize_lr else cfg.lr
    params = list(net.W) + (list(net.b) if cfg.bias else [])
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps,
                            foreach=True)


@torch.no_grad()
def evaluate_split(net: DFCNetwork, x: torch.Tensor, y: torch.Tensor, loss: str,
                   batch: int = 4096):
    """(mean task loss, error in % or None, output r_L) of the feed-forward network (eq. 2) over
    a whole split; the error is the share of misclassified samples for class labels ``y``."""
    total, wrong, outputs = 0.0, 0, []
    for s in range(0, x.shape[0], batch):
        _, rs = net.feedforward(x[s:s + batch])
        total += float(task_loss(rs[-1], y[s:s + batch], loss)) * min(batch, x.shape[0] - s)
        if not torch.is_floating_point(y):
            wrong += int((rs[-1].argmax(1) != y[s:s + batch]).sum())
        outputs.append(rs[-1])
    error = None if torch.is_floating_point(y) else 100.0 * wrong / x.shape[0]
    return total / x.shape[0], error, torch.cat(outputs)


def metric_name(cfg: Config) -> str:
    """The quantity a run reports (``cfg.report``): 'test error %', 'test loss' or 'train loss'."""
    if cfg.report == "final-train-loss":
        return "train loss"
    return "test error %" if cfg.loss == "cross_entropy" else "test loss"


def reported(cfg: Config, rows: list) -> tuple:
    """(value, epoch) that a run reports, as Table 1 does: the test error (classification) or
    test loss at the epoch of best validation error / loss, or the last epoch's training loss."""
    trained = rows[1:] or rows
    if cfg.report == "final-train-loss":
        return trained[-1]["train_loss"], trained[-1]["epoch"]
    key = "val_error" if cfg.loss == "cross_entropy" else "val_loss"
    best = min(trained, key=lambda r: (r[key], r["epoch"]))
    return best["test_error" if cfg.loss == "cross_entropy" else "test_loss"], best["epoch"]


def mean_std(values) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value): Table 1's mean ± std over
    seeds."""
    import statistics

    values = list(values)
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summary_table(results: dict) -> tuple:
    """Table-1-style mean ± std over seeds. ``results`` maps a row label to (metric name,
    [values per seed]); returns (markdown text, csv text)."""
    import io
    import csv

    md = ["| run | metric | mean ± std | seeds | values |", "| --- | --- | --- | --- | --- |"]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["run", "metric", "mean", "std", "seeds", "values"])
    for label, (metric, values) in results.items():
        mean, std = mean_std(values)
        shown = " ".join(f"{v:.4g}" for v in values)
        md.append(f"| {label} | {metric} | {mean:.4g} ± {std:.2g} | {len(values)} | {shown} |")
        writer.writerow([label, metric, repr(mean), repr(std), len(values), shown])
    return "\n".join(md) + "\n", buf.getvalue()


def epoch_order(seed: int, epoch: int, n: int) -> torch.Tensor:
    """Minibatch order of an epoch, a function of (seed, epoch) only, so resuming repeats it."""
    return torch.randperm(n, generator=generator("epoch_order", seed, epoch))


def apply_update(cfg: Config, net: DFCNetwork, opt: torch.optim.Optimizer, upd) -> None:
    """Load the rule's gradient-like update into ``.grad``, clip each tensor, take an Adam step."""
    pairs = list(zip(net.W, upd.gW)) + (list(zip(net.b, upd.gb)) if cfg.bias else [])
    if not all_finite(g for _, g in pairs):
        raise DivergenceError("the weight update is not finite: the dynamics diverged; lower "
                              "k_p or target_stepsize, or raise alpha.")
    for p, g in pairs:
        p.grad = g.to(p.dtype)
    if cfg.clip_grad_norm > 0:
        clip_each_([p.grad for p, _ in pairs], cfg.clip_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    _check_step(net, "optimizer", "Wb")


def clip_each_(grads: list, max_norm: float) -> None:
    """Clip each tensor to the norm ``max_norm`` (the authors' per-tensor clipping): the numbers
    of ``torch.nn.utils.clip_grad_norm_`` applied to one tensor at a time, in two batched calls."""
    norms = torch._foreach_norm(grads)
    torch._foreach_mul_(grads, [torch.clamp(max_norm / (n + 1e-6), max=1.0) for n in norms])


def clip_together_(grads: list, max_norm: float) -> None:
    """Clip the tensors together to the norm ``max_norm`` (their concatenation's): the numbers
    of ``torch.nn.utils.clip_grad_norm_``, in three batched calls."""
    total = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    torch._foreach_mul_(grads, torch.clamp(max_norm / (total + 1e-6), max=1.0))


def _check_step(net: DFCNetwork, which: str, kinds: str) -> None:
    """The weights the step changed (``kinds``: 'Wb' or 'Q') must be finite after it: a NaN or
    inf there is the optimizer's doing (a finite update times a huge rate), not the dynamics'.
    A feedback step leaves W and b as they are, so they are not checked after it."""
    bad = net.nonfinite_weights(kinds)
    if bad:
        raise DivergenceError(f"the {which} step made the weights {', '.join(bad)} NaN or "
                              "infinite; lower the learning rate.")


@dataclass(frozen=True)
class Pass:
    """One pass over the training set: feedback pre-training, a sleep epoch, or a wake epoch."""

    kind: str   # 'pretrain', 'sleep' or 'wake'
    epoch: int  # the wake epoch it belongs to (1-based), or the pre-training epoch
    rep: int    # which sleep epoch of its wake epoch (1..X); 0 otherwise

    def label(self, cfg: Config) -> str:
        if self.kind == "pretrain":
            return f"pre-training {self.epoch}/{cfg.sleep_epochs_init}"
        suffix = f", sleep {self.rep}/{cfg.sleep_epochs}" if self.kind == "sleep" else ""
        return f"epoch {self.epoch}/{cfg.epochs}{suffix}"


def schedule(cfg: Config) -> list:
    """The passes of a run: feedback pre-training, then per epoch X sleep passes and one wake
    pass (sleep passes only when the feedback weights are trained, and not in the single-phase
    schedule, whose wake pass trains Q too)."""
    passes = []
    if cfg.train_feedback:
        passes += [Pass("pretrain", k, 0) for k in range(1, cfg.sleep_epochs_init + 1)]
    for e in range(1, cfg.epochs + 1):
        if cfg.train_feedback and cfg.schedule == "two-phase":
            passes += [Pass("sleep", e, r) for r in range(1, cfg.sleep_epochs + 1)]
        passes.append(Pass("wake", e, 0))
    return passes


def simulated_sleep(cfg: Config) -> bool:
    """Whether the run has sleep passes (pre-training, or the two-phase schedule's) that
    simulate eqs. (12)-(13)."""
    return cfg.sleep == "simulated" and any(p.kind != "wake" for p in schedule(cfg))


def finished_metrics(run: Path, cfg: Config) -> list | None:
    """The metrics of a finished run in ``run`` with exactly the settings ``cfg``, else None
    (benches take a finished run's numbers instead of training it again)."""
    if not (Path(run) / runio.CHECKPOINT).exists():
        return None
    state = runio.load_checkpoint(run)
    stored = Config.from_dict(state["config"])   # fields added since take their defaults
    cfg = cfg.replace(data_dir=os.path.abspath(cfg.data_dir))     # as a run records it
    if stored != cfg or state["pass"] < len(schedule(cfg)):
        return None
    return state["metrics"]


def make_feedback_optimizer(cfg: Config, net: DFCNetwork, lr: float) -> torch.optim.Optimizer:
    """Optimizer of the Q_i; the decay β of eq. (13) enters as its weight decay."""
    if cfg.fb_optimizer == "sgd":
        return torch.optim.SGD(list(net.Q), lr=lr, weight_decay=cfg.fb_weight_decay)
    return torch.optim.Adam(list(net.Q), lr=lr, betas=tuple(cfg.adam_betas),
                            eps=cfg.fb_adam_eps, weight_decay=cfg.fb_weight_decay, foreach=True)


def apply_feedback_update(cfg: Config, net: DFCNetwork, opt, g_Q) -> None:
    if not all_finite(g_Q):
        raise DivergenceError("the feedback update is not finite: the sleep-phase dynamics "
                              "diverged; use a smaller dt_fb or raise alpha_fb.")
    for q, g in zip(net.Q, g_Q):
        q.grad = g.to(q.dtype)
    if cfg.fb_clip_grad_norm > 0:
        clip_together_([q.grad for q in net.Q], cfg.fb_clip_grad_norm)
    opt.step()
    opt.zero_grad(set_to_none=True)
    _check_step(net, "feedback optimizer", "Q")


def run_training(cfg: Config, out: Path, resume: bool = False, progress: bool = True,
                 wake=None, sleep=None, single=None) -> list:
    """Train into run folder ``out`` (continuing its checkpoint if ``resume``); returns the
    per-epoch metrics. The folder's lock (:func:`dfc_analog.runio.run_lock`) is held
    throughout; ``data_dir`` is recorded as an absolute path; ``cfg.threads`` > 0 sets torch's
    threads. ``wake``, a callable ``(net, x, y) -> ForwardUpdate``, simulates the wake
    minibatches instead of :func:`forward_update` with the ODE solver; ``sleep``, a
    callable ``(net, x, generator) -> g_Q`` drawing its noise from ``generator`` as
    :func:`feedback_update` does, the simulated sleep minibatches instead of
    :func:`feedback_update`; and ``single``, a callable ``(net, x, y, generator) ->
    (ForwardUpdate, g_Q)`` drawing its noise as :func:`single_phase_update` does, the single
    phases of the single-phase schedule (method 'dfc') instead of :func:`single_phase_update`:
    for ``cfg.simulator = 'spice'`` the circuit's
    (:func:`dfc_analog.circuit.learning.circuit_phases`)."""
    cfg.validate()
    needs = "single" if cfg.schedule == "single-phase" else "wake"
    if cfg.simulator == "spice" and ({"wake": wake, "single": single}[needs] is None or (
            sleep is None and simulated_sleep(cfg))):
        raise ConfigError("simulator 'spice' needs the circuit's phases: train with "
                          "python -m dfc_analog.train (or pass the phases of "
                          "dfc_analog.circuit.learning.circuit_phases(cfg)).")
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device '{cfg.device}' was asked for, but torch sees no CUDA device; "
                          "use --device cpu (also with --resume).")
    cfg = cfg.replace(data_dir=os.path.abspath(cfg.data_dir))
    if cfg.hardware:
        if cfg.hardware.endswith(".toml") or "/" in cfg.hardware:
            cfg = cfg.replace(hardware=os.path.abspath(cfg.hardware))
        load_spec(cfg.hardware)                 # an unknown preset fails before the folder
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    with runio.run_lock(out):
        return _train(cfg, Path(out), resume, progress, wake, sleep, single)


def _resume_state(cfg: Config, out: Path, net: DFCNetwork, opts: dict) -> dict:
    """The checkpoint of ``out``, loaded into ``net`` and ``opts`` after every check (a failed
    resume changes nothing in the folder)."""
    state = runio.load_checkpoint(out, runio.CHECKPOINT_KEYS)
    where = f"{out}/{runio.CHECKPOINT}"
    try:
        net.load_state_dict(state["network"])
        for name, opt in opts.items():
            opt.load_state_dict(state["optimizers"][name])
    except (RuntimeError, KeyError, ValueError, TypeError) as exc:
        raise ConfigError(f"the checkpoint '{where}' does not fit the run's settings "
                          f"({type(exc).__name__}: {str(exc).splitlines()[0]}).") from None
    runio.check_weights(net, where)
    done = max((int(r.get("epoch", 0)) for r in state["metrics"]), default=0)
    if cfg.epochs < done:
        raise ConfigError(f"the run in '{out}' has trained {done} epochs already: --epochs must "
                          f"be at least {done}, got {cfg.epochs}.")
    return state


def _train(cfg: Config, out: Path, resume: bool, progress: bool, wake, sleep, single) -> list:
    from tqdm import tqdm

    net = DFCNetwork.from_config(cfg, generator("network", cfg.seed))
    opts = {"forward": make_optimizer(cfg, net),
            "pretrain": make_feedback_optimizer(cfg, net, cfg.fb_lr_init),
            "sleep": make_feedback_optimizer(cfg, net, cfg.fb_lr)}
    state = _resume_state(cfg, out, net, opts) if resume else None
    data = load_dataset(cfg)
    wake_settings = ForwardSettings.from_config(cfg)
    if wake is None:
        def wake(net_, x_, y_):
            return forward_update(net_, x_, y_, wake_settings)
    sleep_params = SleepParams.from_config(cfg)
    if sleep is None:
        def sleep(net_, x_, generator_):
            return feedback_update(net_, x_, sleep_params, generator_)
    single_phase = cfg.schedule == "single-phase" and cfg.method == "dfc"
    if single is None and single_phase:
        single_params = SinglePhaseParams.from_config(cfg)

        def single(net_, x_, y_, generator_):
            return single_phase_update(net_, x_, y_, single_params, generator_)
    single_ssa = cfg.schedule == "single-phase" and cfg.method == "dfc-ssa"
    n_train = len(data.train)
    if single_ssa:   # J and J Σ² Jᵀ of a minibatch, written in place: no fresh pages per batch
        n_L, N = net.layer_sizes[-1], sum(net.layer_sizes[1:])
        J_buf = torch.empty(cfg.batch_size, n_L, N, dtype=net.dtype, device=net.device)
        JSJ_buf = torch.empty(cfg.batch_size, n_L, n_L, dtype=net.dtype, device=net.device)

    chip = None
    if cfg.hardware:
        chip = HardwareChip(net, load_spec(cfg.hardware), cfg.hardware_seed,
                            cfg.hardware_v_scale, ControllerParams.from_config(cfg))

    def phase_network(index, b):
        """The network the phases of minibatch b of pass ``index`` run on: ``net`` itself, or
        on hardware the chip's effective network after writing ``net`` (a function of the
        weights, pass and batch, so resuming repeats it)."""
        return net if chip is None else chip.effective(net, index, b)

    # The expected sleep phase's J per training sample, kept while the forward weights stay
    # fixed (dropped at every wake pass); not on hardware, whose effective network changes
    # with every minibatch.
    jacobians = None
    keep_jacobians = (cfg.sleep == "expected" and chip is None and FeedbackJacobians.nbytes(
        net, n_train) <= cfg.jacobian_cache_mib * 2 ** 20)

    def sleep_update(x, idx, index, b):
        """g_Q of one sleep minibatch (training samples ``idx``): simulated, by the model or
        the circuit (its noise a function of seed, pass and batch, so resuming repeats it and
        the model and the circuit run the same path), or expected."""
        nonlocal jacobians
        phase_net = phase_network(index, b)
        if cfg.sleep == "expected" and keep_jacobians:
            if jacobians is None:
                jacobians = FeedbackJacobians(net, data.train.x, sleep_params)
            return jacobians.update(net, idx, sleep_params)
        if cfg.sleep == "expected":
            return expected_feedback_update(phase_net, x, sleep_params)
        return sleep(phase_net, x, generator("sleep_noise", cfg.seed, index, b, device=x.device))

    n_batches = math.ceil(n_train / cfg.batch_size)
    passes = schedule(cfg)

    if resume:
        rows, index, start_batch = state["metrics"], state["pass"], state["batch"]
        loss_sum, nfe_sum = state["loss_sum"], state["nfe_sum"]
        sleep_seconds = state.get("sleep_seconds", 0.0)
    else:
        rows = [_metrics_row(0, float("nan"), net, data, cfg, 0.0, 0)]
        index, start_batch, loss_sum, nfe_sum, sleep_seconds = 0, 0, 0.0, 0, 0.0
    runio.save_config(out / runio.CONFIG, cfg)

    def save(next_pass, next_batch, loss_sum_, nfe_sum_, everything=True):
        runio.save_checkpoint(out / runio.CHECKPOINT, {
            "config": cfg.to_dict(), "network": net.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in opts.items()},
            "metrics": rows, "pass": next_pass, "batch": next_batch, "loss_sum": loss_sum_,
            "nfe_sum": nfe_sum_, "sleep_seconds": sleep_seconds})
        if everything:
            runio.save_weights(out / runio.WEIGHTS, net)
            runio.save_metrics(out / runio.METRICS, rows)
            plot_losses(out / runio.LOSS_CURVE, rows, cfg)

    if not resume:
        save(0, 0, 0.0, 0)
    say = tqdm.write if progress else print
    if resume and index < len(passes):
        say(f"resuming {out} at {passes[index].label(cfg)}, batch {start_batch + 1} of "
            f"{n_batches}")
    while index < len(passes):
        phase = passes[index]
        if phase.kind == "wake":
            jacobians = None                    # the forward weights change from here on
        order = epoch_order(cfg.seed, index, n_train).to(data.train.x.device)
        t0 = time.perf_counter()
        bar = tqdm(total=n_batches, initial=start_batch, desc=phase.label(cfg), unit="batch",
                   leave=False, disable=not progress, dynamic_ncols=True)
        b = start_batch  # the next batch to apply
        seen = 0         # samples of this pass processed since (re)starting it
        try:
            while b < n_batches:
                idx = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
                x = data.train.x[idx]
                if phase.kind == "wake" and single_phase:
                    # the noise a function of seed, pass and batch, as the sleep passes'
                    upd, g_Q = single(phase_network(index, b), x, data.train.y[idx],
                                      generator("sleep_noise", cfg.seed, index, b,
                                                device=x.device))
                    apply_update(cfg, net, opts["forward"], upd)
                    apply_feedback_update(cfg, net, opts["sleep"], g_Q)
                    loss_sum += upd.loss * len(idx)
                elif phase.kind == "wake" and single_ssa:
                    # one J for Lemma 1 and the expected feedback update, at the same state
                    upd, g_Q = single_phase_ssa_update(
                        phase_network(index, b), x, data.train.y[idx], wake_settings,
                        sleep_params, (J_buf[:len(idx)], JSJ_buf[:len(idx)]))
                    apply_update(cfg, net, opts["forward"], upd)
                    apply_feedback_update(cfg, net, opts["sleep"], g_Q)
                    loss_sum += upd.loss * len(idx)
                elif phase.kind == "wake":
                    upd = wake(phase_network(index, b), x, data.train.y[idx])
                    apply_update(cfg, net, opts["forward"], upd)
                    loss_sum += upd.loss * len(idx)
                    nfe_sum += upd.wake.nfe if upd.wake is not None else 0
                else:
                    g_Q = sleep_update(x, idx, index, b)
                    apply_feedback_update(cfg, net, opts[phase.kind], g_Q)
                b += 1
                seen += len(idx)
                if progress:  # running loss of the pass and throughput
                    postfix = {"samples": f"{seen / (time.perf_counter() - t0):.0f}/s"}
                    if phase.kind == "wake":
                        postfix["loss"] = f"{loss_sum / min(b * cfg.batch_size, n_train):.4g}"
                    bar.set_postfix(postfix)
                bar.update(1)
        except KeyboardInterrupt:
            bar.close()
            save(index, b, loss_sum, nfe_sum, everything=False)
            say(f"interrupted: checkpoint saved at {phase.label(cfg)}, batch {b}; continue "
                f"with: python -m dfc_analog.train --resume {out}")
            raise
        except DivergenceError as exc:
            bar.close()
            raise DivergenceError(f"{phase.label(cfg)}, batch {b + 1}: {exc} The run folder "
                                  f"keeps the last good epoch.") from None
        bar.close()
        index, start_batch = index + 1, 0
        if phase.kind == "sleep":
            sleep_seconds += time.perf_counter() - t0
        if phase.kind != "wake":
            if phase.kind == "pretrain" and phase.epoch == cfg.sleep_epochs_init:
                ratio = float(condition2_ratio(net, data.val.x[:256]).mean())
                say(f"feedback pre-training done ({cfg.sleep_epochs_init} epochs): "
                    f"Condition-2 ratio {ratio:.3f}")
            save(index, 0, loss_sum, nfe_sum, everything=False)
            continue
        rows.append(_metrics_row(phase.epoch, loss_sum / n_train, net, data, cfg,
                                 time.perf_counter() - t0, nfe_sum / n_batches, sleep_seconds))
        if not all(math.isfinite(rows[-1][k]) for k in ("val_loss", "test_loss")):
            raise DivergenceError(f"epoch {phase.epoch}: the network's loss is not finite; "
                                  "lower lr.")
        loss_sum, nfe_sum, sleep_seconds = 0.0, 0, 0.0
        save(index, 0, 0.0, 0)
        r = rows[-1]
        cost = f", {r['nfe_per_batch']:.0f} solver evaluations per batch" \
            if cfg.method in ("dfc", "dfc-ss") and cfg.simulator == "ode" else ""
        theory = f"  Condition 2 {r['condition2']:.3f}, angle to MN {r['angle_mn']:.1f}°" \
            if cfg.diagnostics and cfg.method != "bp" else ""
        errors = f"  val error {r['val_error']:.2f}%  test error {r['test_error']:.2f}%" \
            if "val_error" in r else ""
        slept = f" + {r['sleep_seconds']:.1f} s sleep" if cfg.train_feedback else ""
        say(f"epoch {phase.epoch:3d}/{cfg.epochs}  train {r['train_loss']:.5g}  val "
            f"{r['val_loss']:.5g}  test {r['test_loss']:.5g}{errors}{theory}  "
            f"({r['seconds']:.1f} s{slept}{cost})")
    return rows


def _metrics_row(epoch, train_loss, net, data, cfg, seconds, nfe, sleep_seconds=0.0):
    """One row of metrics.csv: losses (and errors in % for classification) on the feed-forward
    network, the wake pass's seconds, its sleep passes' seconds, and the diagnostics."""
    val_loss, val_error, _ = evaluate_split(net, data.val.x, data.val.y, cfg.loss)
    test_loss, test_error, _ = evaluate_split(net, data.test.x, data.test.y, cfg.loss)
    row = {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "test_loss": test_loss}
    if data.is_classification:
        row.update(val_error=val_error, test_error=test_error)
    row.update(seconds=round(seconds, 3), sleep_seconds=round(sleep_seconds, 3),
               nfe_per_batch=nfe)
    if cfg.diagnostics:
        x, y = data.val.x[:cfg.batch_size], data.val.y[:cfg.batch_size]
        try:
            upd = forward_update(net, x, y, ForwardSettings.from_config(cfg))
            row.update(diagnostics(net, x, y, upd, cfg))
        except DivergenceError:  # the training loop reports it, with its own context
            row.update(dict.fromkeys(DIAGNOSTICS, float("nan")))
    return row


def plot_losses(path: Path, rows: list, cfg: Config) -> None:
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
    runio.save_figure(path, fig)
