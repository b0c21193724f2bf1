"""Step runners: run one rendered step of a phase and report how it ended.

``LocalStepRunner`` runs real processes (``/bin/sh``, ``tofu``,
``ansible-playbook``) and HTTP probes; ``FakeStepRunner`` scripts outcomes for
engine tests. Both return failures as ``StepOutcome`` values.
"""

from reconciler.steps.fake import FakeCall, FakeResult, FakeStepRunner, fails
from reconciler.steps.local import LocalStepRunner
from reconciler.steps.outcome import StepContext, StepOutcome, StepRunner
from reconciler.steps.redact import REDACTED, redact

__all__ = [
    "REDACTED",
    "FakeCall",
    "FakeResult",
    "FakeStepRunner",
    "LocalStepRunner",
    "StepContext",
    "StepOutcome",
    "StepRunner",
    "fails",
    "redact",
]
