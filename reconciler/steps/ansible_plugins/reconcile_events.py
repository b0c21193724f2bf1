"""An ansible callback plugin: each task result as one JSON line, for the step's events.

Loaded by ``ansible-playbook`` from this directory (``ANSIBLE_CALLBACK_PLUGINS``)
next to the default stdout callback, so output still streams line by line.
It keeps a few fields of each result, never the whole result, and writes
nothing when ``RECONCILE_ANSIBLE_EVENTS`` is unset. Results arrive censored
(``no_log``) from ansible itself.
"""

from __future__ import annotations

import json
import os
from typing import Any

from ansible.plugins.callback import CallbackBase  # type: ignore[import-untyped,import-not-found,unused-ignore]

DOCUMENTATION = """
    name: reconcile_events
    type: notification
    short_description: task results as JSON lines for reconciler traces
    description: Appends one JSON object per task result to the file named by RECONCILE_ANSIBLE_EVENTS.
"""

_MAX_MESSAGE = 2000


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "notification"
    CALLBACK_NAME = "reconcile_events"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._path = os.environ.get("RECONCILE_ANSIBLE_EVENTS")
        self._play = ""

    def _write(self, event: dict[str, Any]) -> None:
        if not self._path:
            return
        with open(self._path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(event, default=str, sort_keys=True) + "\n")

    def _result_event(self, kind: str, result: Any, **extra: Any) -> None:
        data = getattr(result, "_result", {}) or {}
        task = getattr(result, "_task", None)
        host = getattr(result, "_host", None)
        message = data.get("msg") or data.get("stderr") or ""
        event: dict[str, Any] = {
            "event": kind,
            "play": self._play,
            "task": task.get_name() if task is not None else "",
            "action": getattr(task, "action", ""),
            "host": host.get_name() if host is not None else "",
            "changed": bool(data.get("changed", False)),
            "msg": str(message)[:_MAX_MESSAGE],
        }
        if "rc" in data:
            event["rc"] = data["rc"]
        event.update(extra)
        self._write(event)

    def v2_playbook_on_play_start(self, play: Any) -> None:
        self._play = play.get_name()

    def v2_runner_on_ok(self, result: Any) -> None:
        self._result_event("ok", result)

    def v2_runner_on_failed(self, result: Any, ignore_errors: bool = False) -> None:
        self._result_event("failed", result, ignore_errors=ignore_errors)

    def v2_runner_on_skipped(self, result: Any) -> None:
        self._result_event("skipped", result)

    def v2_runner_on_unreachable(self, result: Any) -> None:
        self._result_event("unreachable", result)

    def v2_playbook_on_stats(self, stats: Any) -> None:
        hosts = sorted(stats.processed.keys())
        self._write({"event": "stats", "hosts": {h: stats.summarize(h) for h in hosts}})
