"""The CLI as a user types it: real repositories, ``python -m reconciler`` in a subprocess."""

from __future__ import annotations

from tests.engine.conftest import GitOpsRepo, gitops

__all__ = ["GitOpsRepo", "gitops"]
