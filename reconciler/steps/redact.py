"""Secrets never leave the process: every captured text goes through ``redact``."""

from __future__ import annotations

from collections.abc import Iterable

REDACTED = "[REDACTED]"


def secret_fragments(secrets: Iterable[str]) -> tuple[str, ...]:
    """The strings to hide, longest first.

    A multi-line secret is also hidden line by line, because output is
    redacted one line at a time as it streams.
    """
    found: set[str] = set()
    for secret in secrets:
        if not secret:
            continue
        found.add(secret)
        found.update(line for line in secret.splitlines() if line.strip())
    return tuple(sorted(found, key=lambda s: (-len(s), s)))


def redact(text: str, secrets: frozenset[str]) -> str:
    """``text`` with every secret (and every line of a multi-line one) replaced by ``[REDACTED]``."""
    for fragment in secret_fragments(secrets):
        if fragment in text:
            text = text.replace(fragment, REDACTED)
    return text
