"""Sweeps: many runs (trainings, evaluations over device realisations) as cells of one sweep
folder, run by any executor of :mod:`dfc_analog.parallel` and resumed where they stopped."""
from dfc_analog.sweep.folder import SweepFolder, cell_key
from dfc_analog.sweep.run import SweepOutcome, run_sweep

__all__ = ["SweepFolder", "SweepOutcome", "cell_key", "run_sweep"]
