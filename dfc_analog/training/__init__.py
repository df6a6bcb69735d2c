"""Training: the schedule of sleep and wake passes, the loop into a run folder, reporting."""
from dfc_analog.training.loop import run_training, schedule

__all__ = ["run_training", "schedule"]
