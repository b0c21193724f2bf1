"""GitHub webhook signatures (``X-Hub-Signature-256``), checked in constant time."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

SECRET_ENV = "RECONCILE_WEBHOOK_SECRET"  # noqa: S105 - the name of the variable, not a secret


@dataclass(frozen=True)
class HookVerdict:
    """What to answer a webhook delivery: ``status`` 2xx means act on it."""

    status: int
    message: str
    #: Whether the delivery should start a fetch and a reconcile.
    trigger: bool = False


def signature_for(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_delivery(secret: str | None, signature: str | None, event: str | None, body: bytes) -> HookVerdict:
    """Decide on one delivery before anything acts on it; a refusal says why."""
    if not secret:
        return HookVerdict(
            503, f"webhook refused: {SECRET_ENV} is not set on the reconciler, so no delivery can be verified"
        )
    if not signature:
        return HookVerdict(403, "webhook refused: X-Hub-Signature-256 header missing")
    expected = signature_for(secret, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        return HookVerdict(403, "webhook refused: X-Hub-Signature-256 does not match the payload")
    if event == "ping":
        return HookVerdict(200, "pong")
    if event not in (None, "push"):
        return HookVerdict(202, f"ignored event '{event}': only push events trigger a reconcile")
    return HookVerdict(202, "accepted: fetching and reconciling", trigger=True)
