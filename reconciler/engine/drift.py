"""Looking at a converged environment's completed phases for drift (SPEC 3.1), as values.

``look`` runs the probes (``steps/detect.py``) of every completed phase up to
the desired state, in phase order, then the ``check`` steps, and stops at the
first finding: the earliest drifted phase is where a heal re-applies from,
and what comes after it would be re-applied anyway. ``next_record`` turns a
finding into the ``drift`` of ``state.json``; ``is_news`` says whether that is
worth a state-branch commit (decision 020).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Literal

from reconciler.desired.resolved import ResolvedEnvironment
from reconciler.desired.templating import TemplateError, render_step, resolve_vars
from reconciler.domain import FORWARD_PHASES, DriftRecord, DriftStatus, Phase, format_timestamp
from reconciler.steps import StepContext, StepRunner, redact
from reconciler.steps.detect import has_probe

#: ``check`` steps are named by this pseudo-phase in a finding.
CHECK: Literal["check"] = "check"


@dataclass(frozen=True)
class Finding:
    """What one look found: ``in_sync``, or the first step that drifted or failed and how."""

    status: DriftStatus
    phase: str | None = None
    step: str | None = None
    summary: str | None = None
    #: Where a heal re-applies from; ``None``: nothing to heal, or a look that could not be made.
    reapply: Phase | None = None
    #: The redacted output of the look that found it (the plan, the diff), for the trace.
    output: str = ""
    #: How many probes and check steps ran.
    looked: int = 0

    @property
    def in_sync(self) -> bool:
        return self.status is DriftStatus.IN_SYNC


def probed_phases(desired: ResolvedEnvironment, target: Phase) -> list[Phase]:
    """The forward phases up to ``target`` (the desired state's), in order."""
    return list(FORWARD_PHASES[: FORWARD_PHASES.index(target) + 1])


def has_anything_to_look_at(desired: ResolvedEnvironment, target: Phase) -> bool:
    if desired.steps(CHECK):
        return True
    if not desired.spec.drift.detect:
        return False
    return any(has_probe(step) for phase in probed_phases(desired, target) for step in desired.steps(phase))


def look(
    runner: StepRunner,
    desired: ResolvedEnvironment,
    target: Phase,
    *,
    desired_commit: str,
    checkout: Path,
    data_dir: Path,
    outputs: Mapping[str, str],
    environ: Mapping[str, str],
    cancel: threading.Event | None = None,
) -> Finding:
    """Run the probes of every completed phase up to ``target``, then the ``check`` steps."""
    name = desired.name
    looked = 0
    try:
        resolved_vars, secrets = resolve_vars(desired.vars, environ)
    except TemplateError as e:
        return Finding(DriftStatus.FAILING, CHECK, None, f"template error: {e}")

    def context(phase: str, step_secrets: frozenset[str], detect: bool) -> StepContext:
        return StepContext(
            environment=name,
            desired_commit=desired_commit,
            checkout=checkout,
            data_dir=data_dir,
            vars=resolved_vars,
            outputs=dict(outputs),
            secrets=secrets | step_secrets,
            deadline=time.monotonic() + float(desired.spec.timeout_seconds),
            cancel=cancel,
            phase=phase,
            detect=detect,
        )

    if desired.spec.drift.detect:
        for phase in probed_phases(desired, target):
            for step in desired.steps(phase):
                if not has_probe(step):
                    continue
                try:
                    rendered = render_step(
                        step, environment=name, vars=desired.vars, outputs=outputs, environ=environ
                    )
                except TemplateError as e:
                    return Finding(DriftStatus.FAILING, str(phase), step.describe(), f"template error: {e}")
                looked += 1
                outcome = runner.run(rendered.step, context(str(phase), rendered.secrets, detect=True))
                every = secrets | rendered.secrets
                if not outcome.ok:
                    # The look itself failed: reported, not healed (re-applying cannot be expected to help).
                    return Finding(
                        DriftStatus.FAILING,
                        str(phase),
                        outcome.step,
                        f"could not look for drift: {redact(outcome.summary, every)}",
                        None,
                        outcome.output_tail,
                        looked,
                    )
                if outcome.drifted:
                    return Finding(
                        DriftStatus.DRIFTED,
                        str(phase),
                        outcome.step,
                        redact(outcome.summary, every),
                        phase,
                        outcome.output_tail,
                        looked,
                    )
    for step in desired.steps(CHECK):
        reapply = Phase(step.reapply or "run")
        try:
            rendered = render_step(
                step, environment=name, vars=desired.vars, outputs=outputs, environ=environ
            )
        except TemplateError as e:
            return Finding(DriftStatus.FAILING, CHECK, step.describe(), f"template error: {e}", reapply)
        looked += 1
        outcome = runner.run(rendered.step, context(CHECK, rendered.secrets, detect=False))
        if not outcome.ok:
            summary = redact(outcome.summary, secrets | rendered.secrets)
            return Finding(
                DriftStatus.FAILING, CHECK, outcome.step, summary, reapply, outcome.output_tail, looked
            )
    return Finding(DriftStatus.IN_SYNC, looked=looked)


def next_record(previous: DriftRecord | None, finding: Finding, now: datetime) -> DriftRecord:
    """The ``drift`` to keep after ``finding``: ``since`` carries over while the finding is the same."""
    record = DriftRecord(
        status=finding.status,
        phase=finding.phase,
        step=finding.step,
        summary=finding.summary,
        checked_at=now,
        since=now,
    )
    if previous is not None and record.same_finding(previous):
        record = record.model_copy(update={"since": previous.since})
    return record


def is_news(previous: DriftRecord | None, record: DriftRecord) -> bool:
    """Worth a state-branch commit: the status, or the phase and step it is about, changed.

    No record yet reads as in sync, so a fleet's first look writes nothing where nothing drifted.
    """
    return not record.same_finding(previous)


def event_of(record: DriftRecord) -> str:
    """The ``Reconcile-Event`` of a commit recording ``record`` (SPEC 4.1)."""
    return "in-sync" if record.status is DriftStatus.IN_SYNC else "drift"


def commit_body(previous: DriftRecord | None, record: DriftRecord, trace: str | None) -> str:
    """The free text of the observation's commit: which phase and step, and how."""
    if record.status is DriftStatus.IN_SYNC:
        if previous is None:
            return "In sync."
        was = f"{previous.status}"
        if previous.phase:
            was += f" at {previous.phase} step {previous.step or '-'}"
        return f"In sync again (was {was} since {format_timestamp(previous.since)})."
    lines = [
        f"{str(record.status).capitalize()} at {record.phase or '-'} step {record.step or '-'}: "
        f"{record.summary or '-'}",
        f"Status: {record.status}",
        f"Phase: {record.phase or '-'}",
        f"Step: {record.step or '-'}",
        f"Summary: {record.summary or '-'}",
    ]
    if trace:
        lines.append(f"Trace: {trace}")
    return "\n".join(lines)


def drift_trace_path(data_dir: Path, name: str, at: datetime) -> Path:
    return data_dir / name / "traces" / f"{at.strftime('%Y%m%d-%H%M%S')}-drift.log"


def write_drift_trace(
    path: Path, *, environment: str, desired_commit: str | None, record: DriftRecord, output: str
) -> None:
    """What a look found, with the output that shows it (the plan, the diff), already redacted."""
    lines = [
        "=" * 72,
        f"reconcile drift trace: {environment}",
        "=" * 72,
        f"Environment:     {environment}",
        f"Desired commit:  {desired_commit or '-'}",
        f"Status:          {record.status}",
        f"Phase:           {record.phase or '-'}",
        f"Step:            {record.step or '-'}",
        f"Summary:         {record.summary or '-'}",
        f"Checked at:      {format_timestamp(record.checked_at)}",
        f"Since:           {format_timestamp(record.since)}",
        "",
        "OUTPUT (tail)",
        "-" * 72,
        output.rstrip("\n"),
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".log.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
