"""Why a step could not run at all, before or around its command.

``StepRefused`` never leaves this package: the runner turns it into a failed
``StepOutcome`` with its error kind, so callers only ever see values.
"""

from __future__ import annotations

from reconciler.domain.values import ErrorKind


class StepRefused(Exception):
    """A step that cannot be carried out as declared (bad path, missing tool, unresolved secret)."""

    def __init__(self, kind: ErrorKind, summary: str, *causes: str) -> None:
        super().__init__(summary)
        self.kind = kind
        self.summary = summary
        self.causes = causes
