"""The phase output kept under ``<data>/<name>/logs/`` (``reconcile log``), listed and followed."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

_NAME = re.compile(r"^(?P<stamp>\d{8}-\d{6})-(?P<phase>[a-z]+)\.log$")


@dataclass(frozen=True)
class PhaseRun:
    """One kept phase run's output file."""

    path: Path
    phase: str
    started_at: datetime

    @property
    def size(self) -> int:
        try:
            return self.path.stat().st_size
        except FileNotFoundError:
            return 0


def phase_runs(data_dir: Path, name: str, phase: str | None = None) -> list[PhaseRun]:
    """The kept runs of ``name`` (of ``phase`` only, when given), newest first."""
    directory = data_dir / name / "logs"
    if not directory.is_dir():
        return []
    runs: list[PhaseRun] = []
    for path in directory.iterdir():
        match = _NAME.match(path.name)
        if match is None or (phase is not None and match["phase"] != phase):
            continue
        started = datetime.strptime(match["stamp"], "%Y%m%d-%H%M%S").replace(tzinfo=UTC)
        runs.append(PhaseRun(path, match["phase"], started))
    # Same second: the file written last is the newer run.
    runs.sort(key=lambda r: (r.started_at, _mtime(r.path)), reverse=True)
    return runs


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def follow(
    data_dir: Path,
    name: str,
    phase: str | None,
    *,
    stop: Callable[[], bool],
    poll_seconds: float = 0.2,
) -> Iterator[tuple[PhaseRun, str]]:
    """Every line of the newest run and of every run after it, as they are written (``tail -F``).

    Starts with the newest run's whole output (or waits for the first run); a
    newer run file appearing switches to it after the current one's lines.
    """
    current: PhaseRun | None = None
    offset = 0
    pending = ""
    while not stop():
        runs = phase_runs(data_dir, name, phase)
        newest = runs[0] if runs else None
        if current is None and newest is not None:
            current, offset, pending = newest, 0, ""
        if current is not None:
            try:
                with open(current.path, encoding="utf-8", errors="replace") as f:
                    f.seek(offset)
                    chunk = f.read()
                    offset = f.tell()
            except FileNotFoundError:
                chunk = ""
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                yield current, line
            if not chunk and newest is not None and newest.path != current.path:
                if pending:
                    yield current, pending
                current, offset, pending = newest, 0, ""
                continue
        time.sleep(poll_seconds)
