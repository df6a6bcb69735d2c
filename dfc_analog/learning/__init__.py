"""Learning: the output target (eq. 3), the forward rules (eqs. 5, 9, Lemma 1, DFA, BP), the
eq. (5) update of any simulated phase, and the sleep phase's feedback rule (eqs. 12, 13)."""
from dfc_analog.learning.forward import (ForwardSettings, ForwardUpdate, forward_update,
                                         lemma1_control)
from dfc_analog.learning.sleep import SleepParams, feedback_update
from dfc_analog.learning.sleep_expected import expected_feedback_update, lyapunov
from dfc_analog.learning.targets import loss_gradient, output_target, task_loss
from dfc_analog.learning.updates import angle_deg, trajectory_update, update_angle

__all__ = ["ForwardSettings", "ForwardUpdate", "SleepParams", "angle_deg", "expected_feedback_update", "feedback_update", "forward_update", "lemma1_control", "lyapunov", "loss_gradient", "output_target", "task_loss", "trajectory_update", "update_angle"]
