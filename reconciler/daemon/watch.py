"""The filesystem watch on a repository's refs: a push or a commit is acted on at once.

Only says "a ref may have moved": the daemon then compares the desired
branch's tip with the last one it loaded (level-based), so its own commits
on the state branch, lock files and unrelated refs cost one ref lookup.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

logger = logging.getLogger(__name__)

#: Changes this close together are one trigger.
DEBOUNCE_SECONDS = 0.05


def _is_ref_path(git_dir: Path, raw: str | bytes) -> bool:
    path = Path(os.fsdecode(raw))
    try:
        rel = path.relative_to(git_dir)
    except ValueError:
        return False
    parts = rel.parts
    if not parts:
        return False
    if parts in (("packed-refs",), ("HEAD",)):
        return True
    return parts[0] == "refs" and len(parts) > 1 and parts[1] in ("heads", "remotes")


class _RefEvents(FileSystemEventHandler):
    def __init__(self, git_dir: Path, poke: Callable[[], None]) -> None:
        self._git_dir = git_dir
        self._poke = poke

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type in ("opened", "closed_no_write"):
            return
        paths = [event.src_path, getattr(event, "dest_path", "") or ""]
        if any(p and _is_ref_path(self._git_dir, p) for p in paths):
            self._poke()


class RefWatch:
    """Calls ``on_change`` (debounced) when a branch, a remote-tracking ref or ``packed-refs`` changes."""

    def __init__(
        self, git_dir: Path, on_change: Callable[[], None], debounce: float = DEBOUNCE_SECONDS
    ) -> None:
        self._git_dir = git_dir.resolve()
        self._on_change = on_change
        self._debounce = debounce
        self._pending = threading.Event()
        self._stopped = threading.Event()
        self._observer: Any = Observer()
        self._thread = threading.Thread(target=self._deliver, name="ref-watch", daemon=True)

    def start(self) -> None:
        handler = _RefEvents(self._git_dir, self._pending.set)
        refs = self._git_dir / "refs"
        refs.mkdir(exist_ok=True)
        self._observer.schedule(handler, str(refs), recursive=True)
        self._observer.schedule(handler, str(self._git_dir), recursive=False)
        self._observer.start()
        self._thread.start()
        logger.info("watching refs", extra={"git_dir": str(self._git_dir)})

    def _deliver(self) -> None:
        while not self._stopped.is_set():
            if not self._pending.wait(timeout=0.5):
                continue
            # A push writes a lock file, renames it, maybe packs: let the burst settle briefly.
            self._stopped.wait(self._debounce)
            self._pending.clear()
            if self._stopped.is_set():
                return
            try:
                self._on_change()
            except Exception:  # the watch must outlive one bad callback
                logger.exception("ref change handler failed")

    def stop(self) -> None:
        self._stopped.set()
        self._pending.set()
        self._observer.stop()
        self._observer.join(timeout=5)
        self._thread.join(timeout=5)
