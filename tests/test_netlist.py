"""Netlist text: golden files for tiny nets (a change in the writer shows up here), element counts,
the output-time breakpoints and bad input. Regenerate the golden files after an intended change:
DFC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/test_netlist.py
"""
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from dfc_analog.model.dynamics import ControllerParams
from dfc_analog.errors import ConfigError
from dfc_analog.circuit.graph import Scaling, build_graph
from dfc_analog.model.network import DFCNetwork
from dfc_analog.circuit import SpiceOptions, output_times, write_netlist
from dfc_analog.circuit.netlist import without_version
from dfc_analog.version import __version__

GOLDEN = Path(__file__).parent / "golden"
PARAMS = ControllerParams(tau_v=0.2, alpha=0.0015, k_p=1.5, leak="integral")


def tiny_net():
    """2-3-2 with hand-picked weights (tanh hidden, linear output)."""
    net = DFCNetwork([2, 3, 2], ["tanh", "linear"], dtype=torch.float64)
    with torch.no_grad():
        net.W[0].copy_(torch.tensor(dtype=torch.float64, data=[[0.5, -0.25], [1.0, 0.0], [-0.75, 2.0]]))
        net.b[0].copy_(torch.tensor(dtype=torch.float64, data=[0.1, 0.0, -0.2]))
        net.W[1].copy_(torch.tensor(dtype=torch.float64, data=[[1.5, -1.0, 0.25], [0.0, 0.5, 1.0]]))
        net.b[1].copy_(torch.tensor(dtype=torch.float64, data=[0.0, 0.05]))
        net.Q[0].copy_(net.W[1].T)
    return net


def check_golden(name: str, text: str):
    path = GOLDEN / name
    if os.environ.get("DFC_UPDATE_GOLDEN"):
        path.write_text(text)
    assert path.exists(), f"missing golden file {path}: run with DFC_UPDATE_GOLDEN=1"
    # the header's version line changes with every release; everything else is golden
    assert without_version(text) == without_version(path.read_text()), \
        f"netlist text differs from {path}"
    assert text.splitlines()[1] == f"* dfc_analog {__version__}"


def test_golden_tiny_wake_phase():
    g = build_graph(tiny_net(), PARAMS, Scaling(), x=[0.5, -1.0], r_star=[0.25, -0.5])
    check_golden("tiny_2-3-2_wake.cir",
                 write_netlist(g, "wake", t_end=2.0, times=output_times(2.0, 0.5), settle=0.5))


def test_golden_tiny_operating_point_total_leak():
    params = ControllerParams(tau_v=0.2, alpha=0.001389, k_p=2.0, leak="total")
    g = build_graph(tiny_net(), params, Scaling(time_scale=1e-3, v_scale=0.1, resistance=1e5),
                    x=[0.5, -1.0])
    check_golden("tiny_2-3-2_op_total_leak.cir",
                 write_netlist(g, "op", options=SpiceOptions(reltol=1e-6)))


def test_golden_toy_header(make_net):
    g = build_graph(make_net(), PARAMS)
    text = write_netlist(g, "wake", 5.0)
    check_golden("toy_15-10-10-5_header.cir", text[:text.index("* inputs")])


def test_elements_and_breakpoints(make_net):
    net = make_net()
    x = np.linspace(-1, 1, 15)                   # x_7 = 0: its synapses carry no current
    g = build_graph(net, PARAMS, x=x, r_star=np.zeros(5))
    times = output_times(5.0, 0.25)
    text = write_netlist(g, "wake", 5.0, times, settle=1.0)
    nonzero = sum(int((w != 0).sum()) for w in list(net.W[1:]) + list(net.Q))
    assert len(re.findall(r"^G[wq]\d", text, flags=re.M)) == nonzero
    # the constant-input synapses: one summed source per layer-1 neuron, or one per synapse
    sums = dict(re.findall(r"^Iw1_(\d+) 0 l1_basal_\d+ DC (\S+)$", text, flags=re.M))
    assert len(sums) == 10
    each = write_netlist(g, "wake", 5.0, times, settle=1.0, options=SpiceOptions(sum_inputs=False))
    currents = re.findall(r"^Iw1_(\d+)_\d+ 0 l1_basal_\d+ DC (\S+)$", each, flags=re.M)
    assert len(currents) == 10 * 14
    for k, total in sums.items():
        assert float(total) == pytest.approx(sum(float(i) for n, i in currents if n == k),
                                             rel=1e-12)
    g_vccs = build_graph(net, PARAMS, x=x, constant_input=False)
    text_vccs = write_netlist(g_vccs, "wake", 5.0, times, settle=1.0)
    assert len(re.findall(r"^Gw1_\d+_\d+ 0 l1_basal_\d+ in_\d+ 0 ", text_vccs, flags=re.M)) == 150
    assert len(re.findall(r"^X\d+_\d+ ", text, flags=re.M)) == 25
    assert len(re.findall(r"^Xctl_\d ", text, flags=re.M)) == 5
    pwl = re.search(r"^Vctl_enable ctl_enable 0 PWL\((.*?)\)", text, flags=re.M | re.S).group(1)
    corners = np.array(pwl.replace("+", " ").split(), dtype=float).reshape(-1, 2)
    # off until the switch at t_on = 1 tau_u = 1e-6 s, then on, with a corner at every output time
    assert corners[0].tolist() == [0.0, 0.0] and corners[2].tolist() == [1e-6, 1.0]
    assert corners[1, 0] == pytest.approx(1e-6 - 1e-15, abs=1e-22) and corners[1, 1] == 0
    np.testing.assert_allclose(corners[3:, 0], 1e-6 + times[1:] * 1e-6, rtol=1e-15)
    tran = re.search(r"^\.tran (\S+) (\S+) 0 (\S+)$", text, flags=re.M).groups()
    assert float(tran[0]) == 2.5e-7 and float(tran[1]) == pytest.approx(6e-6, rel=1e-15)
    assert float(tran[2]) == pytest.approx(100 * 0.001 ** 0.5 * 0.2e-6)   # max step from reltol
    capped = write_netlist(g, "wake", 5.0, times, settle=1.0, options=SpiceOptions(max_step=0.05))
    assert re.search(r"^\.tran \S+ \S+ 0 5e-08$", capped, flags=re.M)
    assert text.endswith(".end\n")


def test_bad_input(make_net):
    g = build_graph(make_net(), PARAMS)
    with pytest.raises(ConfigError, match="unknown phase 'dream'"):
        write_netlist(g, "dream")
    with pytest.raises(ConfigError, match="needs the sleep phase's circuit"):
        write_netlist(g, "sleep")
    with pytest.raises(ConfigError, match="output times must increase"):
        write_netlist(g, "wake", 1.0, times=[0.0, 0.5, 0.5])
    with pytest.raises(ConfigError, match="output times must increase"):
        write_netlist(g, "wake", 1.0, times=[0.0, 2.0])
    with pytest.raises(ConfigError, match="settling time must be positive"):
        write_netlist(g, "wake", 1.0, settle=0.0)
    with pytest.raises(ConfigError, match="reltol must be a positive number"):
        SpiceOptions(reltol=0.0)


# --- the dfc-export command line -------------------------------------------------------------
from dfc_analog import runio                      # noqa: E402
from dfc_analog.config.options import Config              # noqa: E402
from dfc_analog.export import main as export_main  # noqa: E402


def make_run_dir(path: Path, sizes=(15, 10, 10, 5), **settings) -> Path:
    """A freshly initialised run folder (config, checkpoint, weights) on a small dataset."""
    cfg = Config.from_dict({"layer_sizes": list(sizes), "train_samples": 20, "val_samples": 5,
                            "test_samples": 5, "dtype": "float64", **settings})
    net = DFCNetwork.from_config(cfg, torch.Generator().manual_seed(cfg.seed))
    path.mkdir(parents=True, exist_ok=True)
    runio.save_config(path / runio.CONFIG, cfg)
    runio.save_weights(path / runio.WEIGHTS, net)
    runio.save_checkpoint(path / runio.CHECKPOINT, {"config": cfg.to_dict(),
                                                    "network": net.state_dict()})
    return path


def run_cli(args, capsys):
    code = export_main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_writes_netlist_and_graph(tmp_path, capsys):
    run = make_run_dir(tmp_path / "run")
    code, out, err = run_cli(["--netlist", tmp_path / "w.cir", "--graph", tmp_path / "g.json",
                              "--sample", 2, "--t-end", 3, "--step", 0.5, run], capsys)
    assert code == 0, err
    assert "component graph: 15-10-10-5 network" in out and "wrote netlist" in out
    text = (tmp_path / "w.cir").read_text()
    assert "* analysis: wake phase: 1 tau_u settling" in text and text.endswith(".end\n")
    from dfc_analog.circuit.graph import load_graph
    g = load_graph(tmp_path / "g.json")
    # the target is eq. (3) for this one sample under the run's loss and lambda
    from dfc_analog.data import load_dataset
    from dfc_analog.learning import output_target
    cfg, net = runio.load_run(run)
    split = load_dataset(cfg).test
    _, r_ff = net.feedforward(split.x[2:3])
    r_star, _ = output_target(r_ff[-1], split.y[2:3], cfg.loss, cfg.loss_reduction,
                              cfg.target_stepsize)
    got = [g.nodes[f"ctl_target_{m}"]["value"] for m in range(5)]
    np.testing.assert_allclose(got, r_star[0].detach().numpy(), rtol=1e-12)
    np.save(tmp_path / "x.npy", np.linspace(-1, 1, 15))
    code, out, err = run_cli(["--netlist", tmp_path / "ff.cir", "--phase", "feedforward",
                              "--sample", tmp_path / "x.npy", run], capsys)
    assert code == 0, err


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist"),
    ("corrupt", "cannot be read"),
    ("shapes", "do not fit layer_sizes"),
    ("index", "sample index 5 is out of range: the test split holds 5 samples"),
    ("npy-no-target", "an .npy input carries no label"),
    ("npy-length", "must hold 15 values"),
    ("unwritable", "cannot write"),
    ("nothing", "nothing to write"),
])
def test_cli_bad_input(tmp_path, capsys, case, message):
    run = make_run_dir(tmp_path / "run")
    out = tmp_path / "o.cir"
    args = ["--netlist", out, run]
    if case == "missing":
        args = ["--netlist", out, tmp_path / "nope"]
    elif case == "corrupt":
        (run / runio.CHECKPOINT).write_bytes(b"not a checkpoint")
    elif case == "shapes":
        state = torch.load(run / runio.CHECKPOINT, weights_only=True)
        state["network"]["W.1"] = torch.zeros(7, 10, dtype=torch.float64)
        torch.save(state, run / runio.CHECKPOINT)
    elif case == "index":
        args = ["--sample", 5] + args
    elif case in ("npy-no-target", "npy-length"):
        np.save(tmp_path / "x.npy", np.zeros(15 if case == "npy-no-target" else 14))
        args = ["--sample", tmp_path / "x.npy"] + args
    elif case == "unwritable":
        (tmp_path / "file").write_text("")
        args = ["--netlist", tmp_path / "file" / "o.cir", run]
    elif case == "nothing":
        args = [run]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and err.startswith("error: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_cli_unknown_phase(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        export_main(["--netlist", str(tmp_path / "o.cir"), "--phase", "dream",
                     str(tmp_path)])
    assert exc.value.code == 2 and "invalid choice: 'dream'" in capsys.readouterr().err


def test_example_netlists_are_current():
    """The example netlists of netlists/ are what the writer produces today
    (``netlists/regenerate.py --check``)."""
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "netlists" / "regenerate.py"
    spec = importlib.util.spec_from_file_location("regenerate", path)
    regenerate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(regenerate)
    assert regenerate.main(["--check"]) == 0
