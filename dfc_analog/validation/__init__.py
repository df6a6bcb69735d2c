"""Validation of the circuit against the model (:mod:`.compare`) and its report (:mod:`.report`)."""
from dfc_analog.validation.compare import (RunValidation, SampleResult, ValidationSettings,
                                           load_samples, validate_samples)
from dfc_analog.validation.report import write_report

__all__ = ["RunValidation", "SampleResult", "ValidationSettings", "load_samples", "validate_samples", "write_report"]
