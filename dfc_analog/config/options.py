"""Every hyper-parameter of a run, in one validated dataclass.

The fields of :class:`Config` are the single source for the command-line options of
``python -m dfc_analog.train`` (``--tau-v`` for ``tau_v``), for the keys of a TOML or JSON config
file, and for the ``config.json`` written into every run folder. Symbols follow the paper:
eq. (1) network, eq. (3) output target, eq. (4) PI controller, eq. (5) plasticity.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dfc_analog.errors import ConfigError

ACTIVATIONS = ("tanh", "linear", "relu", "sigmoid")
LOSSES = ("mse", "cross_entropy")
METHODS = ("dfc", "dfc-ss", "dfc-ssa", "dfa", "bp")
OPTIMIZERS = ("adam", "sgd")
ADAPTIVE_SOLVERS = ("rosenbrock", "dopri5", "torchdiffeq-dopri5", "dopri8", "bosh3", "fehlberg2",
                    "adaptive_heun")
FIXED_SOLVERS = ("euler", "midpoint", "rk4")
SOLVERS = ADAPTIVE_SOLVERS + FIXED_SOLVERS + ("authors-euler",)
DATASETS = ("student-teacher", "mnist", "fashion-mnist", "mnist-autoencoder")
# (inputs, outputs) the image datasets fix, and the loss each needs.
DATASET_SHAPES = {"mnist": (784, 10), "fashion-mnist": (784, 10), "mnist-autoencoder": (784, 784)}
DATASET_LOSS = {"mnist": "cross_entropy", "fashion-mnist": "cross_entropy",
                "mnist-autoencoder": "mse", "student-teacher": "mse"}
REPORTS = ("test-at-best-val", "final-train-loss")
SIMULATORS = ("ode", "spice")
# Forward synapses of the largest network trained with the wake phase in ngspice (one
# integrator per synapse; the toy scale).
MAX_SPICE_SYNAPSES = 5000
# Keys config.json records beside the settings (who wrote the run); reading a config skips them.
RECORD_KEYS = ("dfc_analog_version", "git_commit")
# Bounds checked before anything is allocated.
MAX_WEIGHTS = 100_000_000       # W_i and Q_i entries together (0.8 GB in float64, x4 with Adam)
MAX_COUNT = 1_000_000           # epochs, samples, batch size, steps of a sleep phase
MAX_STEPS = 100_000_000         # max_steps
MAX_SEED = 2 ** 32 - 1
EPS = {"float32": 1.1920929e-07, "float64": 2.220446049250313e-16}


def _f(default, help: str, symbol: str = "", choices=None, group: str = "run"):
    meta = {"help": help, "symbol": symbol, "choices": choices, "group": group}
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class Config:
    """All settings of a training run; see ``python -m dfc_analog.train --help``."""

    # --- network (paper §2.1) -------------------------------------------------------------
    layer_sizes: list = _f([15, 10, 10, 5], "Widths n_0 (input), n_1, ..., n_L (output).",
                           "n_i", group="network")
    activations: list = _f(["tanh", "tanh", "linear"],
                           "Nonlinearity φ_i of each layer i = 1..L (one per layer). For "
                           "classification keep the output linear: the softmax is part of the "
                           "cross-entropy loss.", "φ_i", ACTIVATIONS, group="network")
    bias: bool = _f(True, "Use biases b_i in the basal compartment v_B = W r + b.", "b_i",
                    group="network")
    feedback_init: str = _f("auto",
                            "Initial feedback weights: 'weight_product' sets Q_i = Π_{k>i} W_kᵀ "
                            "(Q_L = I), which meets Conditions 2-3 at the start of training; "
                            "'xavier' draws Q_i from a Xavier normal law (Q_L = I); 'auto' takes "
                            "xavier when Q is trained or for DFA, weight_product otherwise, as "
                            "the paper's experiments do.", "Q_i",
                            ("auto", "weight_product", "xavier"), group="network")
    # --- task ---------------------------------------------------------------------------------
    dataset: str = _f("student-teacher",
                      "Task. 'student-teacher': built-in nonlinear regression, a random ReLU "
                      "teacher n_0-1000x4-n_L labels inputs x ~ U[-1,1] (the paper's Fig. 3 "
                      "task); 'mnist', 'fashion-mnist': 10-class classification of 28x28 images "
                      "(784 inputs, cross-entropy); 'mnist-autoencoder': reconstruct the "
                      "standardised MNIST input (MSE), Table 1.", "", DATASETS, group="task")
    data_dir: str = _f("data", "Folder with the four standard IDX files of the image datasets "
                       "(train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
                       "t10k-labels-idx1-ubyte; gzip or raw); missing files are downloaded there "
                       "when the network allows.", group="task")
    train_samples: int = _f(0, "Number of training samples; 0: automatic (5000 for "
                            "student-teacher; for image datasets all of the training file that "
                            "the validation split leaves).", group="task")
    val_samples: int = _f(0, "Number of validation samples; 0: automatic (1000 for "
                          "student-teacher; for image datasets carved out of the training file "
                          "with a fixed, seed-independent permutation: 5000 as in the paper for "
                          "files of 50,000 samples or more, a tenth of smaller ones).",
                          group="task")
    test_samples: int = _f(0, "Number of test samples; 0: automatic (1000 for student-teacher, "
                           "the whole test file for image datasets).", group="task")
    report: str = _f("test-at-best-val",
                     "What a run reports (summary line, --seeds table): 'test-at-best-val' is the "
                     "test error (classification) or loss at the epoch of best validation, as in "
                     "Table 1; 'final-train-loss' is the training loss of the last epoch (Table "
                     "1's 'MNIST (train loss)' column).", "", REPORTS, group="task")
    loss: str = _f("mse", "Task loss L(r_L, y).", "L", LOSSES, group="task")
    loss_reduction: str = _f("mean",
                             "How δ_L = -λ ∂L/∂r_L of eq. (3) is taken: 'mean' differentiates the "
                             "minibatch-mean loss as the authors' code does (δ_L scales as λ/B); "
                             "'sample' uses each sample's own loss as eq. (3) writes it.", "",
                             ("mean", "sample"), group="task")
    # --- dynamics (eqs. 1, 3, 4) --------------------------------------------------------------
    tau_v: float = _f(0.2, "Somatic time constant τ_v of eq. (1), in units of τ_u.", "τ_v",
                      group="dynamics")
    tau_u: float = _f(1.0, "Controller time constant τ_u of eq. (4); time is measured in it.",
                      "τ_u", group="dynamics")
    alpha: float = _f(0.0015, "Leak α of the integral controller, eq. (4).", "α", group="dynamics")
    k_p: float = _f(1.5, "Proportional gain k_p of the PI controller, eq. (4).", "k_p",
                    group="dynamics")
    target_stepsize: float = _f(0.05, "Output target step size λ of eq. (3).", "λ",
                                group="dynamics")
    leak: str = _f("integral",
                   "Where the controller's leak acts: 'integral' is eq. (4), τ_u du_int/dt = e - α "
                   "u_int (Lemma 1 holds with α̃ = α/(1+α k_p)); 'total' is the authors' code, "
                   "τ_u du_int/dt = e - α u (Lemma 1 with plain α).", "", ("integral", "total"),
                   group="dynamics")
    t_end: float = _f(5.0, "Simulated time T of each wake phase, in units of τ_u.", "T",
                      group="dynamics")
    plasticity: str = _f("rate",
                         "Forward learning signal: 'rate' is eq. (5), (φ(v) - φ(v_B)) r_{i-1}ᵀ; "
                         "'voltage' is eq. (9), (v - v_B) r_{i-1}ᵀ.", "",
                         ("rate", "voltage"), group="dynamics")
    # --- solver -------------------------------------------------------------------------------
    solver: str = _f("rosenbrock",
                     "ODE solver. 'rosenbrock': the Rosenbrock-W method ROS34PW2 (order 3, "
                     "adaptive), implicit in the somatic leak and the controller loop, so its "
                     "step follows accuracy rather than the stability limit that k_p sets for "
                     "explicit methods (2-3x fewer evaluations than dopri5); "
                     "'dopri5': Dormand-Prince 5(4), a fused implementation of "
                     "torchdiffeq's dopri5 (same steps, about twice as fast on large networks); "
                     "torchdiffeq's own methods: adaptive torchdiffeq-dopri5, dopri8, bosh3, "
                     "fehlberg2, adaptive_heun and fixed-step euler, midpoint, rk4; "
                     "'authors-euler': the authors' forward-Euler scheme (instantaneous "
                     "transmission, proactive controller).", "", SOLVERS, group="solver")
    rtol: float = _f(1e-3, "Relative tolerance of adaptive solvers. The solver state is the "
                     "departure from the feed-forward state in units of max|δ_L|, so tolerances "
                     "bound the error of the feedback response itself.", "", group="solver")
    atol: float = _f(1e-4, "Absolute tolerance of adaptive solvers, in units of max|δ_L|.", "",
                     group="solver")
    step_size: float = _f(0.005, "Step Δt of fixed-step solvers and of 'authors-euler', in τ_u.",
                          "Δt", group="solver")
    simulator: str = _f("ode",
                        "Simulator of the wake phase in training. 'ode': the solver above; "
                        "'spice': every sample's wake phase runs in ngspice, the circuit forming "
                        "its target (eq. 3) from a track-and-hold of its output and the label, "
                        "and integrating eq. (5) on one capacitor per synapse, whose voltages give "
                        "ΔW (method 'dfc', toy-scale networks; persistent ngspice processes, one "
                        "per thread, share each minibatch). With train_feedback and sleep "
                        "'simulated' the sleep passes run in ngspice too: the noise of eq. (12) a "
                        "PWL Wiener path in the apical compartments (the path the ODE run draws "
                        "for the same seed), ΔQ from one integrator of eq. (13) per feedback "
                        "synapse; sleep 'expected' stays the model's closed form. With schedule "
                        "'single-phase' each sample's single phase runs in ngspice instead (its "
                        "own target, the PWL noise path the ODE run draws, eq. (5) and eq. (13) "
                        "integrators on the high-passed u switched on after fb_delay), ΔW and ΔQ "
                        "from its capacitors. With hardware, "
                        "the circuit is that of the chip's effective network, rewritten through "
                        "the devices before every minibatch.", "", SIMULATORS, group="solver")
    max_steps: int = _f(20000, "Most solver steps per wake phase before the dynamics are "
                        "declared too stiff or divergent.", group="solver")
    # --- learning (eq. 5, Adam) ---------------------------------------------------------------
    method: str = _f("dfc",
                     "Forward learning rule: 'dfc' integrates eq. (5) along the simulated "
                     "trajectory; 'dfc-ss' applies eq. (5) at the simulated steady state; "
                     "'dfc-ssa' uses the steady state of Lemma 1 in closed form (no simulation); "
                     "baselines: 'dfa' (direct feedback alignment through fixed random Q_i) and "
                     "'bp' (backpropagation).", "", METHODS, group="learning")
    optimizer: str = _f("adam", "Optimizer of the forward weights.", "", OPTIMIZERS,
                        group="learning")
    epochs: int = _f(40, "Training epochs.", group="learning")
    batch_size: int = _f(128, "Minibatch size B.", "B", group="learning")
    lr: float = _f(1e-2, "Adam learning rate for the forward weights W_i, b_i.", "η",
                   group="learning")
    normalize_lr: bool = _f(False, "Divide the learning rate by λ (the paper's presets do), so "
                            "that the step does not shrink with the target step size.",
                            group="learning")
    adam_betas: list = _f([0.99, 0.99], "Adam (β1, β2); the paper uses 0.99 for both.",
                          "β1 β2", group="learning")
    adam_eps: float = _f(1e-8, "Adam ε.", "ε", group="learning")
    clip_grad_norm: float = _f(1.0, "Clip each weight and bias update to this norm (0: off).",
                               group="learning")
    # --- feedback learning (sleep phase, eqs. 12-13) ---------------------------------------
    train_feedback: bool = _f(False, "Learn the feedback weights Q_i in sleep phases (eqs. 12-13); "
                              "without it Q_i keep their initial values (the paper's 'fixed' "
                              "variants). DFC methods only.", group="sleep")
    sleep: str = _f("simulated",
                    "Form of the sleep phase. 'simulated': eqs. (12)-(13) integrated with "
                    "Euler-Maruyama on one noise path (uses τ_v,fb, Δt_fb, T_fb); 'expected': the "
                    "expectation of eq. (13)'s update E[v_A uᵀ]/σ̂² over the noise ε of eq. (12), "
                    "in closed form per sample for the network linearised at its feed-forward "
                    "state (J), the soma following its apical compartment (τ_v,fb ≪ τ_A, τ_u), "
                    "and the stationary statistics of the controller filtered through τ_A "
                    "(docs/expected-sleep.md); uses J, Q, σ, σ_L, τ_A, α_fb, k_p,fb and the leak. "
                    "With simulator 'spice' the simulated sleep runs in ngspice; the expected "
                    "one stays this closed form.",
                    "", ("simulated", "expected"), group="sleep")
    jacobian_cache_mib: int = _f(4096,
                                 "Memory (MiB) the expected sleep phase may take to keep each "
                                 "training sample's J and J Σ² Jᵀ while the forward weights stay "
                                 "fixed (one epoch's X sleep passes, all pre-training passes), so "
                                 "J is computed once per sample and epoch instead of once per "
                                 "pass; the same updates. Needs n_train × n_L × (Σ n_i + n_L) "
                                 "numbers (225 MB for 7,200 MNIST digits in float32); above the "
                                 "limit, or 0, J is recomputed every minibatch.", group="sleep")
    schedule: str = _f("two-phase",
                       "How forward and feedback learning alternate. 'two-phase': wake passes "
                       "(eq. 5) and separate sleep passes (eqs. 12-13), the paper's scheme; "
                       "'single-phase': one phase per minibatch with both plasticities on, "
                       "the noise of eq. (12) in the apical compartments and eq. (13) on the "
                       "high-pass filtered control u (time constant τ_hp), as a chip would run "
                       "(paper §7, App. C.3). Needs method 'dfc' and train_feedback; uses the "
                       "wake phase's dynamics and step_size, σ, σ_L, τ_A and fb_lr; sleep "
                       "pre-training (sleep_epochs_init) still runs first, sleep_epochs is "
                       "unused. With method 'dfc-ssa' and sleep 'expected' each wake minibatch "
                       "also takes one step of Q on the expected feedback update at the same "
                       "feed-forward state, sharing its J with Lemma 1.", "",
                       ("two-phase", "single-phase"), group="sleep")
    tau_hp: float = _f(1.0, "Time constant τ_hp of the high-pass filter on u in the feedback rule "
                       "of the single-phase schedule, in units of τ_u (above τ_A, below T).",
                       "τ_hp", group="sleep")
    fb_delay: float = _f(0.0, "Time from the start of a single phase, in units of τ_u, before eq. "
                         "(13)'s integrators switch on: the task's control has then settled and "
                         "its high-passed part decayed as exp(-t/τ_hp), so the feedback rule sees "
                         "the noise's response alone (a few τ_hp; below T).", "", group="sleep")
    sleep_epochs_init: int = _f(0, "Sleep-only epochs before the first wake epoch (feedback "
                                "pre-training).", group="sleep")
    sleep_epochs: int = _f(3, "Sleep epochs after each wake epoch (the paper's X).", "X",
                           group="sleep")
    fb_optimizer: str = _f("sgd", "Optimizer of the feedback weights.", "", OPTIMIZERS,
                           group="sleep")
    fb_adam_eps: float = _f(1e-8, "Adam ε of the feedback optimizer.", "ε_fb", group="sleep")
    fb_lr: float = _f(0.002, "Learning rate of Q_i during training.", "", group="sleep")
    fb_lr_init: float = _f(0.1, "Learning rate of Q_i during pre-training.", "", group="sleep")
    fb_weight_decay: float = _f(0.025, "Weight decay β of eq. (13).", "β", group="sleep")
    fb_clip_grad_norm: float = _f(1.0, "Clip the update of all Q_i together to this norm (0: "
                                  "off).", group="sleep")
    sigma_fb: float = _f(0.01, "Noise intensity σ of eq. (12) in the hidden layers.", "σ",
                         group="sleep")
    sigma_fb_output: float = _f(0.01, "Noise intensity σ in the output layer.", "σ_L",
                                group="sleep")
    alpha_fb: float = _f(0.25, "Controller leak α during sleep.", "α_fb", group="sleep")
    k_p_fb: float = _f(0.1, "Proportional gain k_p during sleep.", "k_p,fb", group="sleep")
    tau_v_fb: float = _f(0.01, "Somatic time constant τ_v during sleep, in units of τ_u.",
                         "τ_v,fb", group="sleep")
    tau_a_fb: float = _f(0.3, "Time constant τ_A of the apical compartment, which low-pass "
                         "filters the noise during sleep.", "τ_A", group="sleep")
    dt_fb: float = _f(0.002, "Euler-Maruyama step of the sleep phase, in units of τ_u.", "Δt_fb",
                      group="sleep")
    t_end_fb: float = _f(0.1, "Simulated time of each sleep phase, in units of τ_u.", "T_fb",
                         group="sleep")
    # --- hardware-aware training (dfc_analog.model.hardware_aware) ------------------------
    hardware: str = _f("", "Train on analog hardware: a preset (pcm, rram, 4bit, ...) or a TOML "
                       "file with [hardware] tables. The weights are written through the devices "
                       "before every minibatch (quantisation, bounds, programming noise) and the "
                       "phases run on the realised circuit (finite-gain op-amps, offsets, "
                       "activation mismatch); '' trains the ideal network.", group="hardware")
    hardware_seed: int = _f(0, "Seed of the chip trained on (its amplifier offsets and "
                            "activation mismatch: the draws of realisation seed S).",
                            group="hardware")
    hardware_v_scale: float = _f(1.0, "Volts per model unit on the chip (sets the offsets' size "
                                 "in model units), as dfc-export's --v-scale.", group="hardware")
    # --- run ----------------------------------------------------------------------------------
    diagnostics: bool = _f(True, "Log the theory diagnostics after every epoch, on a fixed "
                           "validation minibatch: Conditions 1 and 2, the angles of the update "
                           "to the GN, MN, DFC-SSA and BP updates, and the largest real "
                           "eigenvalues of Condition 3 and of the PI system.", group="run")
    seed: int = _f(42, "Seed of weights, data and minibatch order: equal seeds, equal runs.",
                   group="run")
    device: str = _f("cpu", "Torch device: 'cpu', 'cuda' or 'cuda:N'.", group="run")
    threads: int = _f(0, "Torch threads (torch.set_num_threads); 0: the cores available to "
                      "the process. The run's config.json records the number used.",
                      group="run")
    dtype: str = _f("float32", "Floating-point type of the simulation.", "",
                    ("float32", "float64"), group="run")

    # -----------------------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layer_sizes) - 1

    @property
    def initial_feedback(self) -> str:
        """The Q_i initialisation that ``feedback_init = 'auto'`` stands for."""
        if self.feedback_init != "auto":
            return self.feedback_init
        return "xavier" if self.train_feedback or self.method == "dfa" else "weight_product"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "Config":
        """Build and validate a config; unknown or mistyped keys are named in the error."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source} must hold a table of settings, not {type(data).__name__}.")
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in data.items():
            if key in RECORD_KEYS:
                continue
            name = key.replace("-", "_")
            if name not in names:
                hint = difflib.get_close_matches(name, names, n=1)
                extra = f" (did you mean '{hint[0]}'?)" if hint else ""
                raise ConfigError(f"{source}: unknown setting '{key}'{extra}.")
            kwargs[name] = _coerce(names[name], value, source)
        cfg = cls(**kwargs)
        cfg.validate()
        return cfg

    def replace(self, **changes) -> "Config":
        data = self.to_dict()
        data.update(changes)
        return Config.from_dict(data)

    def validate(self) -> None:
        """Raise :class:`ConfigError` with one sentence for the first impossible setting."""
        L = self.num_layers
        if L < 1 or any(not isinstance(n, int) or n < 1 for n in self.layer_sizes):
            raise ConfigError(f"layer_sizes must list at least two positive integers (input and "
                              f"output width), got {self.layer_sizes}.")
        n = self.layer_sizes
        weights = sum(n[i] * n[i + 1] + n[i + 1] * n[-1] for i in range(L))
        if weights > MAX_WEIGHTS:
            raise ConfigError(f"layer_sizes {n} make {weights:.3g} weights W_i and Q_i, more than "
                              f"the limit of {MAX_WEIGHTS:.0e}.")
        if not 0 <= self.seed <= MAX_SEED:
            raise ConfigError(f"seed must be an integer from 0 to {MAX_SEED}, got {self.seed}.")
        for name in ("epochs", "batch_size", "sleep_epochs_init", "sleep_epochs",
                     "train_samples", "val_samples", "test_samples"):
            if getattr(self, name) > MAX_COUNT:
                raise ConfigError(f"{name} {getattr(self, name)} is more than the limit of "
                                  f"{MAX_COUNT}.")
        if self.max_steps > MAX_STEPS:
            raise ConfigError(f"max_steps {self.max_steps} is more than the limit of "
                              f"{MAX_STEPS:.0e}.")
        if not 0 <= self.hardware_seed <= MAX_SEED:
            raise ConfigError(f"hardware_seed must be an integer from 0 to {MAX_SEED}, got "
                              f"{self.hardware_seed}.")
        if not (math.isfinite(self.hardware_v_scale) and self.hardware_v_scale > 0):
            raise ConfigError(f"hardware_v_scale must be a positive voltage, got "
                              f"{self.hardware_v_scale}.")
        if self.hardware and self.activations and self.activations[-1] != "linear":
            raise ConfigError("hardware-aware training needs a linear output layer (its output "
                              "rows' offsets fold into its bias), got activation "
                              f"'{self.activations[-1]}'.")
        if not 0 <= self.threads <= 4096:
            raise ConfigError(f"threads must be between 0 (all available cores) and 4096, got "
                              f"{self.threads}.")
        if len(self.activations) != L:
            raise ConfigError(f"activations must name one nonlinearity per layer: {L} for "
                              f"layer_sizes {self.layer_sizes}, got {len(self.activations)}.")
        for a in self.activations:
            if a not in ACTIVATIONS:
                raise ConfigError(f"unknown activation '{a}'; choose from {', '.join(ACTIVATIONS)}.")
        if self.loss == "cross_entropy" and self.activations[-1] != "linear":
            raise ConfigError("the cross-entropy loss applies the softmax itself: set the output "
                              "activation to 'linear'.")
        if self.dataset == "student-teacher" and self.loss != "mse":
            raise ConfigError("the student-teacher task is a regression: use loss 'mse'.")
        if self.dataset in DATASET_SHAPES:
            n_in, n_out = DATASET_SHAPES[self.dataset]
            if (self.layer_sizes[0], self.layer_sizes[-1]) != (n_in, n_out):
                raise ConfigError(f"dataset '{self.dataset}' has {n_in} inputs and {n_out} "
                                  f"outputs: layer_sizes must start with {n_in} and end with "
                                  f"{n_out}, got {self.layer_sizes} (see --list-presets).")
            if self.loss != DATASET_LOSS[self.dataset]:
                raise ConfigError(f"dataset '{self.dataset}' needs loss "
                                  f"'{DATASET_LOSS[self.dataset]}', got '{self.loss}'.")
        for name in ("tau_v", "tau_u", "t_end", "step_size", "rtol", "atol"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}.")
        for name in ("tau_v_fb", "tau_a_fb", "dt_fb", "t_end_fb", "fb_lr", "fb_lr_init", "tau_hp"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value}.")
        if self.dt_fb > self.t_end_fb:
            raise ConfigError(f"dt_fb {self.dt_fb} is longer than t_end_fb {self.t_end_fb}.")
        if self.t_end_fb / self.dt_fb > MAX_COUNT:
            raise ConfigError(f"a sleep phase of t_end_fb / dt_fb = {self.t_end_fb / self.dt_fb:.3g} "
                              f"steps is more than the limit of {MAX_COUNT}.")
        eps = EPS.get(self.dtype, EPS["float64"])
        for name in ("rtol", "atol"):
            if getattr(self, name) < eps:
                raise ConfigError(f"{name} {getattr(self, name):g} is below the resolution of "
                                  f"{self.dtype} ({eps:.2g}): no solver step can meet it; use "
                                  f"{name} >= {eps:.2g}.")
        if self.schedule == "single-phase" and not (
                self.train_feedback and (self.method == "dfc" or (
                    self.method == "dfc-ssa" and self.sleep == "expected"))):
            raise ConfigError("the single-phase schedule runs DFC with both plasticities on, or "
                              "DFC-SSA with the expected feedback update: it needs method 'dfc', "
                              "or 'dfc-ssa' with sleep 'expected', and train_feedback.")
        if self.schedule == "single-phase" and self.fb_delay >= self.t_end:
            raise ConfigError(f"fb_delay {self.fb_delay:g} leaves the feedback rule no time in a "
                              f"phase of t_end = {self.t_end:g}: choose fb_delay below t_end.")
        if self.simulator == "spice":
            synapses = sum(n[i] * n[i + 1] for i in range(L))
            if self.method != "dfc":
                raise ConfigError(f"simulator 'spice' integrates eq. (5) along the phase in the "
                                  f"circuit: use method 'dfc', not '{self.method}'.")
            if synapses > MAX_SPICE_SYNAPSES:
                raise ConfigError(f"simulator 'spice' puts one integrator per synapse into the "
                                  f"circuit: {synapses} forward synapses is more than the toy "
                                  f"scale it is made for ({MAX_SPICE_SYNAPSES}); use simulator "
                                  "'ode'.")
        if self.train_feedback and self.method in ("dfa", "bp"):
            raise ConfigError(f"train_feedback applies to the DFC methods; '{self.method}' has no "
                              "feedback weights to learn.")
        for name in ("alpha", "k_p", "target_stepsize", "adam_eps", "fb_adam_eps", "fb_delay",
                     "clip_grad_norm", "fb_weight_decay", "fb_clip_grad_norm", "sigma_fb",
                     "sigma_fb_output", "alpha_fb", "k_p_fb"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"{name} must be zero or positive, got {value}.")
        if self.target_stepsize == 0:
            raise ConfigError("target_stepsize λ must be positive: with λ = 0 the output target "
                              "equals the output and nothing is learned.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr}.")
        if len(self.adam_betas) != 2 or not all(0 <= b < 1 for b in self.adam_betas):
            raise ConfigError(f"adam_betas must be two numbers in [0, 1), got {self.adam_betas}.")
        if self.solver not in ADAPTIVE_SOLVERS and self.step_size > self.t_end:
            raise ConfigError(f"step_size {self.step_size} is longer than t_end {self.t_end}.")
        if self.solver not in ADAPTIVE_SOLVERS and self.t_end / self.step_size > self.max_steps:
            raise ConfigError(f"the fixed-step solver '{self.solver}' would take t_end / "
                              f"step_size = {self.t_end / self.step_size:.3g} steps per wake "
                              f"phase, more than max_steps {self.max_steps}: raise step_size or "
                              "max_steps.")
        for name in ("epochs", "batch_size", "max_steps"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("sleep_epochs_init", "sleep_epochs", "train_samples", "val_samples",
                     "test_samples", "jacobian_cache_mib"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be zero or more, got {getattr(self, name)}.")
        if not (self.device == "cpu" or self.device.startswith("cuda")):
            raise ConfigError(f"device must be 'cpu', 'cuda' or 'cuda:N', got '{self.device}'.")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and not isinstance(value, list) and value not in choices:
                raise ConfigError(f"unknown {f.name} '{value}'; choose from {', '.join(choices)}.")


def _coerce(f: dataclasses.Field, value: Any, source: str):
    """Check one value's type against the field's default and convert int → float."""
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    bad = ConfigError(f"{source}: setting '{f.name}' must be {_kind(default)}, got {value!r}.")
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad
        return value
    if isinstance(default, list):
        if not isinstance(value, (list, tuple)) or any(
                not isinstance(v, type(default[0])) and not (
                    isinstance(default[0], float) and isinstance(v, int)) for v in value):
            raise bad
        return list(value)
    return value


def _kind(default) -> str:
    if isinstance(default, bool):
        return "true or false"
    if isinstance(default, int):
        return "an integer"
    if isinstance(default, float):
        return "a number"
    if isinstance(default, str):
        return "a string"
    return f"a list like {default}"


def load_config_file(path: str | Path) -> dict:
    """Read the settings table of a TOML (``.toml``) or JSON (``.json``) file."""
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"config file '{path}' is a directory: give the TOML or JSON file.")
    if not path.is_file():
        raise ConfigError(f"config file '{path}' does not exist.")
    try:
        text = path.read_text()
        if path.suffix == ".json":
            data = json.loads(text)
        else:
            data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"config file '{path}' cannot be read: {exc.strerror or exc}.") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file '{path}' is not valid "
                          f"{'JSON' if path.suffix == '.json' else 'TOML'}: {exc}.") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file '{path}' must hold a table of settings.")
    return data
