"""The long-running reconciler of SPEC section 6: triggers, a keyed work queue, HTTP endpoints."""

from reconciler.daemon.daemon import Daemon, DaemonSettings
from reconciler.daemon.durations import parse_duration

__all__ = ["Daemon", "DaemonSettings", "parse_duration"]
