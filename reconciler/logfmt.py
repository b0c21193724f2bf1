"""Log formatting for the command line; the library itself configures no handlers."""

from __future__ import annotations

import json
import logging
from typing import Final

from reconciler.domain.values import format_timestamp

#: Attributes every ``LogRecord`` has; anything else was passed through ``extra``.
_STANDARD: Final[frozenset[str]] = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def record_fields(record: logging.LogRecord) -> dict[str, object]:
    """The structured fields a caller attached with ``extra=``."""
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        from datetime import UTC, datetime

        payload: dict[str, object] = {
            "time": format_timestamp(datetime.fromtimestamp(record.created, UTC)),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(record_fields(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return json.dumps(payload, default=str)


class TextFormatter(logging.Formatter):
    """``time level message key=value ...`` for people."""

    def format(self, record: logging.LogRecord) -> str:
        base = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.getMessage()}"
        fields = " ".join(f"{k}={v}" for k, v in record_fields(record).items())
        text = f"{base} {fields}" if fields else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


#: What ``configure`` accepts, for the CLI to offer as choices.
LEVELS: Final[tuple[str, ...]] = ("debug", "info", "warning", "error")
FORMATS: Final[tuple[str, ...]] = ("text", "json")


def configure(level: str = "WARNING", fmt: str = "text") -> None:
    """Install one stderr handler on the ``reconciler`` logger (CLI use only).

    An unknown level or format is a ``ValueError`` naming the choices, never a
    silent fallback.
    """
    if level.lower() not in LEVELS:
        raise ValueError(f"unknown log level '{level}' (expected one of: {', '.join(LEVELS)})")
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format '{fmt}' (expected one of: {', '.join(FORMATS)})")
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("reconciler")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
