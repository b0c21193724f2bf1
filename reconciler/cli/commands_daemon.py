"""Commands of SPEC section 5: daemon. Each command registers itself on ``app``."""

from __future__ import annotations

from reconciler.cli.app import app

__all__ = ["app"]
