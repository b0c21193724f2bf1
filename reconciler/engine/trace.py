"""Trace files: one per failure, enough to diagnose it without the logs (SPEC 4.4)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from reconciler.domain import FailureContext, format_timestamp


def trace_path(data_dir: Path, name: str, ctx_phase: str, failed_at_stamp: str) -> Path:
    return data_dir / name / "traces" / f"{failed_at_stamp}-{ctx_phase}.log"


def write_trace(
    path: Path,
    *,
    environment: str,
    desired_commit: str | None,
    failure: FailureContext,
    error_chain: Sequence[str],
    output_tail: str,
) -> None:
    """Write the trace atomically (temp file, fsync, rename): a half trace is never left."""
    lines = [
        "=" * 72,
        f"reconcile failure trace: {environment} {failure.phase}",
        "=" * 72,
        f"Trace ID:        {failure.trace_id}",
        f"Environment:     {environment}",
        f"Desired commit:  {desired_commit or '-'}",
        f"Phase:           {failure.phase}",
        f"Attempt:         {failure.attempt}",
        f"Started at:      {format_timestamp(failure.execution_started_at)}",
        f"Failed at:       {format_timestamp(failure.failed_at)}",
        f"Duration:        {failure.execution_duration_seconds:.3f}s",
        f"Failed step:     {failure.failed_step}",
        f"Error kind:      {failure.error_kind}",
        f"Summary:         {failure.error_summary}",
        "",
        "ERROR CHAIN",
        "-" * 72,
    ]
    chain = list(error_chain) or [failure.error_summary]
    lines += [f"[Level {i}] {cause}" for i, cause in enumerate(chain)]
    lines += ["", "OUTPUT (tail)", "-" * 72, output_tail.rstrip("\n"), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".log.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


#: Phase logs kept per environment; older ones are removed when a new one starts.
KEEP_PHASE_LOGS = 50


class PhaseLog:
    """Every output line of one phase run: ``<data>/<name>/logs/<time>-<phase>.log``.

    Traces keep the tail of a failure; this keeps everything a phase printed,
    failed or not (redacted, as every line a step reports is).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115 - closed by close()
        _prune_logs(path.parent, keep=path)

    def write(self, line: str) -> None:
        self._file.write(line.rstrip("\n") + "\n")

    def close(self) -> None:
        self._file.close()


def phase_log_path(data_dir: Path, name: str, phase: str, stamp: str) -> Path:
    return data_dir / name / "logs" / f"{stamp}-{phase}.log"


def _prune_logs(directory: Path, keep: Path) -> None:
    logs = sorted(directory.glob("*.log"), key=lambda p: p.name, reverse=True)
    for old in logs[KEEP_PHASE_LOGS:]:
        if old != keep:
            old.unlink(missing_ok=True)
