"""`python -m dfc_analog.figures`: Fig. 1D in the default suite, Fig. 3 (minutes) as a slow test."""
import json

import pytest

from dfc_analog.figures import main


def test_fig1d_outputs_settle_on_their_targets(tmp_path, capsys):
    assert main(["fig1d", "--out", str(tmp_path), "--quick"]) == 0
    assert (tmp_path / "fig1d.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "fig1d.json").read_text())
    assert len(data["series"]["samples"]) == 3
    for sample in data["final"].values():
        # what is left of the nudge r* - r_L^- is the α term of Lemma 1: about α̃ u / δ
        assert abs(sample["remaining_error_fraction"]) < 0.01


def test_figures_bad_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["fig1d", "--out", str(blocker / "x")]) == 2
    assert "cannot write to output folder" in capsys.readouterr().err


@pytest.mark.slow
def test_fig3_quick_shows_the_papers_ordering(tmp_path, capsys):
    """Trained feedback keeps Condition 2 and the alignment with the MN and GN updates better than
    fixed feedback does (Fig. 3A, B, D); every variant stays stable (Fig. 3E)."""
    assert main(["fig3", "--out", str(tmp_path), "--quick"]) == 0
    final = json.loads((tmp_path / "fig3.json").read_text())["final"]
    for method in ("DFC", "DFC-SS", "DFC-SSA"):
        trained, fixed = final[method], final[f"{method} (fixed)"]
        assert trained["condition2"] > fixed["condition2"]
        assert trained["angle_mn"] < fixed["angle_mn"]
        assert trained["angle_gn"] < fixed["angle_gn"]
        assert trained["max_eig_pi"] < 0 and fixed["max_eig_pi"] < 0
    assert final["DFA"]["angle_mn"] > max(final[m]["angle_mn"] for m in ("DFC", "DFC-SS"))
