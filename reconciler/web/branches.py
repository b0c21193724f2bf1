"""``reconcile serve``'s view: the desired branch and the state branch as they are, nothing reconciled.

The desired state is reloaded only when the desired branch's tip moves (one
ref read per request otherwise). It reads this repository's refs and fetches
nothing: beside a CI that runs ``apply`` with ``remote`` set, serve the
repository the CI pushes to (docs/user-guide.md).
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pygit2

from reconciler.desired.loader import resolve_revision
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.desired.trust import desired_revision
from reconciler.engine.reconcile import Engine
from reconciler.engine.workspace import Workspace, WorkspaceError

logger = logging.getLogger(__name__)


class StateBranchFleet:
    """A ``FleetSource`` read from the repository's refs."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self.data_dir: Path = workspace.data_dir
        self._lock = threading.Lock()
        self._tip: str | None = None
        self._current: tuple[DesiredSnapshot, Engine] | None = None
        self.problem: str | None = None

    def _desired_tip(self) -> str | None:
        ws = self.workspace
        try:
            return resolve_revision(ws.repo, desired_revision(ws.repo, ws.signers))
        except (LookupError, ValueError, pygit2.GitError):
            return None

    def current(self) -> tuple[DesiredSnapshot, Engine] | None:
        with self._lock:
            tip = self._desired_tip()
            if tip is not None and tip != self._tip:
                try:
                    snapshot = self.workspace.snapshot()
                except WorkspaceError as e:
                    if self.problem != str(e):
                        logger.warning("cannot read desired state", extra={"error": str(e)})
                    self.problem = str(e)
                else:
                    self.problem = None
                    self._current = (snapshot, self.workspace.engine(snapshot))
                self._tip = tip
            return self._current
