"""Which environments a new desired commit concerns: ``desired.changes``, shared with the dashboard."""

from reconciler.desired.changes import Wake, changed_environments, concerned, with_dependents

__all__ = ["Wake", "changed_environments", "concerned", "with_dependents"]
