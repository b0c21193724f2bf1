"""What a notification says, derived from one state-branch event or one reconcile outcome."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from reconciler.store.events import Event

FORMAT_VERSION = 1
IN_PROGRESS = frozenset({"provisioning", "configuring", "releasing", "starting", "destroying"})


@dataclass(frozen=True)
class Notification:
    """One thing a sink may be told: ``kind`` is one of SPEC 9's events."""

    kind: str
    environment: str
    #: The environment's state after it (``None`` when unknown).
    state: str | None
    desired_commit: str | None
    at: datetime
    from_state: str | None = None
    actor: str | None = None
    summary: str | None = None
    #: The state-branch commit it comes from (``None`` for an outcome).
    state_commit: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """Stable across retries, so a receiver can drop the duplicates at-least-once delivery allows."""
        return (
            f"{self.state_commit or self.desired_commit or '-'}:{self.environment}:{self.kind}:{self.state}"
        )

    @property
    def status(self) -> str | None:
        """The GitHub commit status it amounts to: ``pending``, ``success``, ``failure`` or none."""
        if self.kind == "converged":
            return "success"
        if self.kind in ("failed", "blocked"):
            return "failure"
        if self.kind == "transition" and self.state in IN_PROGRESS:
            return "pending"
        return None

    def payload(self) -> dict[str, Any]:
        return {
            "formatVersion": FORMAT_VERSION,
            "id": self.id,
            "event": self.kind,
            "environment": self.environment,
            "from": self.from_state,
            "state": self.state,
            "actor": self.actor,
            "desiredCommit": self.desired_commit,
            "stateCommit": self.state_commit,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "summary": self.summary,
            "labels": dict(self.labels),
        }

    def headline(self) -> str:
        """One line for people (Slack, a status description)."""
        if self.kind == "transition":
            text = f"{self.environment}: {self.from_state} -> {self.state}"
        elif self.kind in ("failed", "blocked"):
            text = f"{self.environment} {self.kind} ({self.state})"
        else:
            text = f"{self.environment}: {self.kind}"
        if self.summary:
            text += f": {self.summary.splitlines()[0]}"
        if self.actor:
            text += f" (by {self.actor})"
        return text


def from_event(event: Event, labels: Mapping[str, str]) -> list[Notification]:
    """What one state-branch event is told as: ``transition`` (and ``failed``), ``drift``, ``in-sync``."""
    base = Notification(
        kind="transition",
        environment=event.environment,
        state=event.to_state,
        desired_commit=event.desired_commit,
        at=event.at,
        from_state=event.from_state,
        actor=event.actor,
        summary=event.detail,
        state_commit=event.commit,
        labels=labels,
    )
    if event.kind in ("transition", "unlock") and event.from_state != event.to_state:
        if event.to_state.endswith("_failed"):
            return [base, replace(base, kind="failed")]
        return [base]
    if event.kind in ("drift", "in-sync"):
        return [replace(base, kind=event.kind)]
    return []
