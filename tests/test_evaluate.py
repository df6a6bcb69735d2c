"""`python -m dfc_analog.evaluate RUN_DIR`: numbers equal an independent computation, the PNG is
written, and a bad run folder is one sentence with exit status 2."""
import json

import pytest
import torch
import torch.nn.functional as F

from dfc_analog import Config, load_run, run_training
from dfc_analog.data import load_dataset
from dfc_analog.evaluate import confusion_matrix, main

from tests.test_data import write_set

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def classifier_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    write_set(root / "data", n_train=80, n_test=30)
    cfg = Config(dataset="mnist", data_dir=str(root / "data"), layer_sizes=[784, 12, 10],
                 activations=["tanh", "linear"], loss="cross_entropy", method="bp", epochs=2,
                 diagnostics=False, dtype="float64")
    run_training(cfg, root / "run", progress=False)
    return root / "run"


def test_classification_numbers_and_confusion_matrix(classifier_run, capsys):
    assert main([str(classifier_run)]) == 0
    out = capsys.readouterr().out
    cfg, net = load_run(classifier_run)
    test = load_dataset(cfg).test
    with torch.no_grad():
        logits = net.feedforward(test.x)[1][-1]
    loss = float(F.cross_entropy(logits, test.y))
    error = 100.0 * float((logits.argmax(1) != test.y).double().mean())
    assert f"test loss {loss:.5g}" in out and f"test error {error:.2f}%" in out
    assert "reported by the run: test error %" in out
    result = json.loads((classifier_run / "evaluation.json").read_text())
    assert result["loss"] == pytest.approx(loss, rel=1e-12)
    matrix = torch.tensor(result["confusion_matrix"])
    assert int(matrix.sum()) == len(test) == 30
    assert int(matrix.trace()) == round(len(test) * (100 - error) / 100)
    assert (classifier_run / "confusion_matrix.png").read_bytes()[:8] == PNG


def test_confusion_matrix_counts():
    labels = torch.tensor([0, 1, 1, 2, 2, 2])
    predicted = torch.tensor([0, 1, 2, 2, 2, 0])
    assert confusion_matrix(labels, predicted, 3).tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 2]]


def test_validation_split(classifier_run, capsys):
    assert main([str(classifier_run), "--split", "val"]) == 0
    assert "val loss" in capsys.readouterr().out


def test_autoencoder_reconstruction_png(tmp_path, capsys):
    write_set(tmp_path / "data", n_train=40, n_test=12)
    cfg = Config(dataset="mnist-autoencoder", data_dir=str(tmp_path / "data"),
                 layer_sizes=[784, 8, 784], activations=["tanh", "linear"], loss="mse",
                 method="dfa", epochs=1, diagnostics=False)
    run_training(cfg, tmp_path / "ae", progress=False)
    assert main([str(tmp_path / "ae")]) == 0
    out = capsys.readouterr().out
    assert "test loss" in out and "error" not in out.split("\n")[0]
    assert (tmp_path / "ae" / "reconstruction.png").read_bytes()[:8] == PNG


@pytest.mark.parametrize("setup,words", [
    (lambda p: None, "does not exist"),
    (lambda p: p.mkdir(), "not a dfc_analog run folder"),
    (lambda p: (p.mkdir(), (p / "checkpoint.pt").write_bytes(b"junk")), "cannot be read"),
])
def test_bad_run_folder(tmp_path, capsys, setup, words):
    run = tmp_path / "run"
    setup(run)
    assert main([str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
    assert "Traceback" not in err


def test_moved_data_folder(classifier_run, tmp_path, capsys, monkeypatch):
    from dfc_analog import data

    def offline(*args, **kwargs):
        raise OSError("network disabled in tests")
    monkeypatch.setattr(data.urllib.request, "urlopen", offline)
    assert main([str(classifier_run), "--data-dir", str(tmp_path / "gone")]) == 2
    err = capsys.readouterr().err
    assert "are missing from" in err and "Traceback" not in err
