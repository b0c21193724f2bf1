"""Notifications (SPEC 9): events of the state branch and reconcile outcomes sent to webhooks,
GitHub commit statuses and Slack, at least once, on queues of their own.

``Notification`` is what is sent; ``Notifier`` owns one delivery thread per sink;
``NotificationFeed`` turns this process's state-branch events (read through the
one event log) and reconcile outcomes into notifications.
"""

from reconciler.notify.dispatch import DeliveryStats, Notifier
from reconciler.notify.feed import NotificationFeed
from reconciler.notify.model import Notification
from reconciler.notify.sinks import build_sinks

__all__ = ["DeliveryStats", "Notification", "NotificationFeed", "Notifier", "build_sinks"]
