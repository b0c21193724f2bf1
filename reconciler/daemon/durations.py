"""Durations on the command line: ``30s``, ``5m``, ``1h``, ``250ms`` or plain seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ``ValueError`` naming what would be accepted."""
    match = _PATTERN.match(text)
    if match is None:
        raise ValueError(
            f"invalid duration '{text}': expected a number of seconds or e.g. 250ms, 30s, 5m, 1h"
        )
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]
