"""Where notifications come from: this process's state-branch events, and reconcile outcomes.

Events are read through the one event log (``reconciler.store.events``) from
the tip this process started at, and only those this process wrote (their
``Reconcile-Holder``) are sent, so two reconcilers sharing a branch never
announce each other's transitions twice. ``converged`` and ``blocked`` are
outcomes, not commits: they come from the caller of ``reconcile``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping

from reconciler.desired.resolved import DesiredSnapshot
from reconciler.domain import utcnow
from reconciler.notify.dispatch import DeliveryStats, Notifier
from reconciler.notify.model import Notification, from_event
from reconciler.notify.sinks import build_sinks
from reconciler.store.events import EventLog
from reconciler.store.lock import holder_label, this_holder

logger = logging.getLogger(__name__)

LabelsOf = Callable[[str], Mapping[str, str]]


class NotificationFeed:
    def __init__(self, log: EventLog, notifier: Notifier, labels_of: LabelsOf) -> None:
        self.log = log
        self.notifier = notifier
        self._labels_of = labels_of
        self._holder = holder_label(this_holder())
        self._mutex = threading.Lock()
        self._cursor = log.tip_id()

    def pump(self) -> int:
        """Publish the notifications of this process's events since the last pump; return how many events."""
        with self._mutex:
            try:
                events, tip = self.log.after(self._cursor)
            except Exception as e:  # never in a reconcile's way: a broken index is retried next time
                logger.warning("cannot read the state branch's events", extra={"error": repr(e)})
                return 0
            self._cursor = tip
            mine = [e for e in events if e.holder == self._holder]
            for event in mine:
                for notification in from_event(event, self._labels_of(event.environment)):
                    self.notifier.publish(notification)
            return len(mine)

    def outcome(
        self,
        name: str,
        outcome: str,
        *,
        state: str | None,
        desired_commit: str | None,
        changed: bool,
        blocked: bool,
        summary: str | None,
    ) -> None:
        """After a reconcile of ``name``: ``converged`` when it moved and got there, ``blocked`` when
        its retries ran out. The branch's events come first, so a sink sees them in order."""
        self.pump()
        kind = None
        if outcome == "converged" and changed:
            kind = "converged"
        elif outcome == "failed" and blocked:
            kind = "blocked"
        if kind is None:
            return
        self.notifier.publish(
            Notification(
                kind=kind,
                environment=name,
                state=state,
                desired_commit=desired_commit,
                at=utcnow(),
                summary=summary,
                labels=self._labels_of(name),
            )
        )


def open_feed(
    snapshot: DesiredSnapshot,
    log: EventLog | None,
    environ: Mapping[str, str],
    *,
    labels_of: LabelsOf | None = None,
    stats: DeliveryStats | None = None,
    on_problem: Callable[[str], None] = logger.warning,
) -> NotificationFeed | None:
    """A feed for ``notify`` in reconciler.yaml (``None`` when it lists no sink that can run).

    Notifications read the state branch's events: with the file store (no branch) there are none.
    """
    if not snapshot.config.notify:
        return None
    if log is None:
        on_problem("notify in reconciler.yaml needs the git store (the state branch): nothing is sent")
        return None
    sinks, problems = build_sinks(list(snapshot.config.notify), environ)
    for problem in problems:
        on_problem(f"{problem}: that sink is left out")
    if not sinks:
        return None

    def from_snapshot(name: str) -> Mapping[str, str]:
        desired = snapshot.environments.get(name)
        return desired.labels if desired is not None else {}

    return NotificationFeed(log, Notifier(sinks, stats=stats), labels_of or from_snapshot)


def blocked(snapshot: DesiredSnapshot, name: str, attempt: int | None) -> bool:
    """Whether a failure at ``attempt`` ran out of retries (the planner's rule: attempt > retry.limit)."""
    desired = snapshot.environments.get(name)
    return attempt is not None and desired is not None and attempt > desired.spec.retry.limit
