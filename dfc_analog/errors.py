"""The one exception type users see: each carries one sentence that says what to change."""


class DFCError(Exception):
    """A problem with the user's input or with the simulated dynamics, stated in one sentence.

    Command-line tools print it as ``error: <sentence>`` and exit with status 2; library users
    catch it like any exception.
    """


class ConfigError(DFCError):
    """An option or config file that cannot describe a valid network, task or solver."""


class DivergenceError(DFCError):
    """The network-plus-controller dynamics left every sensible range (NaN, inf, or no progress)."""


class StepLimitError(DivergenceError):
    """An adaptive solver used up its step budget (``max_steps``) before the end of the phase:
    stiff dynamics for an explicit method, or diverging ones."""
