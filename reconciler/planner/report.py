"""A plan of every environment as ``reconcile plan`` shows it: text, JSON or a pull-request comment.

``build_report`` pairs each plan of the revision under review with the plan of
the base revision (the pull-request view) and knows which environment files
the change touched; the renderers are pure functions of that report.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from reconciler.desired.resolved import Problem
from reconciler.domain.states import Phase
from reconciler.domain.values import format_timestamp
from reconciler.planner.changes import InputChanges
from reconciler.planner.model import ActionKind, EnvironmentPlan, Verdict

#: The order summaries list verdicts in: what needs attention first.
_VERDICT_ORDER = (
    Verdict.INVALID,
    Verdict.CORRUPT,
    Verdict.BLOCKED,
    Verdict.CHANGES,
    Verdict.WAITING,
    Verdict.PROTECTED,
    Verdict.SUSPENDED,
    Verdict.AHEAD,
    Verdict.UNMANAGED,
    Verdict.CONVERGED,
)
_SUMMARY_WORDS: Mapping[Verdict, str] = {
    Verdict.CHANGES: "to change",
    Verdict.WAITING: "waiting",
    Verdict.BLOCKED: "blocked",
    Verdict.AHEAD: "ahead",
    Verdict.SUSPENDED: "suspended",
    Verdict.PROTECTED: "protected",
    Verdict.UNMANAGED: "unmanaged",
    Verdict.INVALID: "invalid",
    Verdict.CORRUPT: "with corrupt state",
    Verdict.CONVERGED: "converged",
}
_ICONS: Mapping[Verdict, str] = {
    Verdict.CHANGES: "🔄",
    Verdict.WAITING: "⏳",
    Verdict.BLOCKED: "⛔",
    Verdict.AHEAD: "⏩",
    Verdict.SUSPENDED: "⏸️",
    Verdict.PROTECTED: "🛡️",
    Verdict.UNMANAGED: "👻",
    Verdict.INVALID: "❌",
    Verdict.CORRUPT: "💥",
    Verdict.CONVERGED: "✅",
}


class Change(StrEnum):
    """What a plan with changes does to its environment, as terraform counts it."""

    CREATE = "create"
    CHANGE = "change"
    DESTROY = "destroy"
    #: ``destroyed`` brought back: it is built again from scratch.
    RECREATE = "recreate"


#: terraform's marks: a reviewer's eye goes to ``-`` and ``-/+`` first.
MARKS: Mapping[Change, str] = {
    Change.CREATE: "+",
    Change.CHANGE: "~",
    Change.DESTROY: "-",
    Change.RECREATE: "-/+",
}
_COUNT_ORDER = (Change.CREATE, Change.CHANGE, Change.DESTROY, Change.RECREATE)


def kind_of(plan: EnvironmentPlan) -> Change | None:
    """The kind of change ``plan``'s actions make, whether or not it may act now."""
    if not plan.actions:
        return None
    kinds = {(a.kind, a.phase) for a in plan.actions}
    if (ActionKind.PHASE, Phase.DESTROY) in kinds:
        return Change.DESTROY
    if any(kind is ActionKind.RECREATE for kind, _ in kinds):
        return Change.RECREATE
    if any(kind is ActionKind.CREATE for kind, _ in kinds):
        return Change.CREATE
    return Change.CHANGE


def change_of(plan: EnvironmentPlan) -> Change | None:
    """The kind of change a plan makes (now or once its wait ends); ``None`` when it makes none."""
    return kind_of(plan) if plan.has_changes else None


@dataclass(frozen=True)
class ReviewedPlan:
    """One environment's plan at the revision, and (pull-request view) at the base."""

    plan: EnvironmentPlan
    #: The plan at the base revision; ``None`` without ``--base``.
    base: EnvironmentPlan | None = None
    #: Whether the environment's file differs between base and revision (``False`` without ``--base``).
    file_changed: bool = False
    #: Whether there is a base to compare with at all.
    reviewed: bool = False
    #: For each phase re-run because its own inputs changed: which ones (``planner.changes.explain``).
    changes: Mapping[Phase, InputChanges] = field(default_factory=dict)

    @property
    def change(self) -> Change | None:
        return change_of(self.plan)

    @property
    def plan_changed(self) -> bool:
        """Whether merging changes what reconciling this environment would do."""
        if not self.reviewed:
            return False
        return self.base is None or _signature(self.base) != _signature(self.plan)

    @property
    def affected(self) -> bool:
        """Touched by the change under review: its file or its plan differs."""
        return self.file_changed or self.plan_changed


def _signature(plan: EnvironmentPlan) -> tuple[object, ...]:
    actions = tuple((a.kind, a.phase, a.reason) for a in plan.actions)
    return (plan.verdict, plan.desired_state, actions)


@dataclass(frozen=True)
class Verification:
    """What ``plan`` says about signatures when they are required (SPEC section 10)."""

    #: Whether the planned revision may be acted on as it is.
    verified: bool
    #: One line: who signed it, or why it is not acted on.
    detail: str
    #: The desired branch's tip when the plan is of an older verified commit because the tip is not.
    skipped_tip: str | None = None


@dataclass(frozen=True)
class PlanReport:
    """Everything ``reconcile plan`` prints."""

    #: The desired-state commit planned, or ``None`` for the work tree.
    revision: str | None
    #: The base commit of the pull-request view, or ``None``.
    base: str | None
    state_ref: str
    generated_at: datetime
    environments: tuple[ReviewedPlan, ...]
    #: Every problem found in the revision's files, environment-specific or not.
    problems: tuple[Problem, ...] = ()
    #: The revision's signature, when signatures are required; ``None`` otherwise.
    verification: Verification | None = None

    @property
    def has_changes(self) -> bool:
        """Whether reconciling the revision would run a transition (``--detailed-exitcode`` 2)."""
        return any(r.plan.has_changes for r in self.environments)

    @property
    def has_errors(self) -> bool:
        """Invalid files or unreadable state: the plan is incomplete (exit 1)."""
        return bool(self.problems) or any(
            r.plan.verdict in (Verdict.INVALID, Verdict.CORRUPT) for r in self.environments
        )

    def counts(self, plans: Iterable[ReviewedPlan] | None = None) -> Counter[Verdict]:
        return Counter(r.plan.verdict for r in (self.environments if plans is None else plans))

    def change_counts(self, plans: Iterable[ReviewedPlan] | None = None) -> Counter[Change]:
        return Counter(c for r in (self.environments if plans is None else plans) if (c := r.change))


def build_report(
    plans: Sequence[EnvironmentPlan],
    *,
    revision: str | None,
    state_ref: str,
    generated_at: datetime,
    problems: Sequence[Problem] = (),
    base: str | None = None,
    base_plans: Sequence[EnvironmentPlan] | None = None,
    changed_files: Iterable[str] = (),
    verification: Verification | None = None,
    input_changes: Mapping[str, Mapping[Phase, InputChanges]] | None = None,
) -> PlanReport:
    """Pair ``plans`` with ``base_plans`` by name; ``changed_files`` are the environment names touched.

    ``input_changes``: per environment, the re-run phases' changed inputs (``planner.changes.explain``).
    """
    reviewed = base_plans is not None
    before = {p.name: p for p in base_plans or ()}
    touched = set(changed_files)
    why = input_changes or {}
    return PlanReport(
        revision=revision,
        base=base,
        state_ref=state_ref,
        generated_at=generated_at,
        environments=tuple(
            ReviewedPlan(p, before.get(p.name), p.name in touched, reviewed, why.get(p.name, {}))
            for p in plans
        ),
        problems=tuple(problems),
        verification=verification,
    )


# -- text ------------------------------------------------------------------------------


def _short(sha: str | None) -> str:
    return sha[:12] if sha else "work tree"


def _desired(plan: EnvironmentPlan, missing: str) -> str:
    if plan.verdict is Verdict.INVALID:
        return "(invalid file)"
    return plan.desired_state or missing


def _states(plan: EnvironmentPlan) -> str:
    return f"{plan.observed_state or '(none)'} -> {_desired(plan, '(no file)')}"


def _summary(counts: Counter[Verdict]) -> str:
    parts = [f"{counts[v]} {_SUMMARY_WORDS[v]}" for v in _VERDICT_ORDER if counts[v]]
    return ", ".join(parts) if parts else "no environments"


def plan_line(report: PlanReport, plans: Sequence[ReviewedPlan] | None = None) -> str:
    """``1 to create, 2 to change, 1 to destroy; 3 unchanged, 1 blocked``: terraform's, then the rest."""
    shown = report.environments if plans is None else plans
    changes = report.change_counts(shown)
    counted = [f"{changes[c]} to {c}" for c in _COUNT_ORDER if changes[c] or c is not Change.RECREATE]
    rest = Counter(r.plan.verdict for r in shown if r.change is None)
    others = [f"{rest[v]} {_REST_WORDS.get(v, _SUMMARY_WORDS[v])}" for v in _VERDICT_ORDER if rest[v]]
    return ", ".join(counted) + (f"; {', '.join(others)}" if others else "")


_REST_WORDS: Mapping[Verdict, str] = {Verdict.CONVERGED: "unchanged"}


def _mark(plan: EnvironmentPlan) -> str:
    kind = kind_of(plan)
    return MARKS[kind] if kind is not None else ""


def render_text(report: PlanReport) -> str:
    lines = [f"Plan of {_short(report.revision)}, observed state from {report.state_ref}"]
    if report.base is not None:
        lines[0] = (
            f"Plan of merging {_short(report.revision)} over {_short(report.base)}, "
            f"observed state from {report.state_ref}"
        )
    if report.verification is not None:
        mark = "verified" if report.verification.verified else "UNVERIFIED"
        lines.append(f"Signatures: {mark}: {report.verification.detail}")
    lines += ["", f"Plan: {plan_line(report)}", ""]
    width = max((len(r.plan.name) for r in report.environments), default=0)
    pad = " " * (width + 4)
    for item in report.environments:
        plan = item.plan
        marks = []
        if item.file_changed:
            marks.append("file changed")
        if item.plan_changed:
            marks.append("plan changed")
        marked = f"  [{', '.join(marks)}]" if marks else ""
        sign = MARKS[item.change] if item.change is not None else ""
        lines.append(f"{sign:>3} {plan.name:<{width}}  {_states(plan)}: {plan.verdict}{marked}")
        lines.append(f"{pad}    {plan.reason}")
        action_mark = _mark(plan)
        for action in plan.actions:
            lines.append(f"{pad}    {action_mark} {action.describe():<18} {action.reason}")
            changed = item.changes.get(action.phase) if action.phase is not None else None
            if changed is not None and changed.known:
                lines.append(f"{pad}    {'':<{len(action_mark)}} {'':<18} changed: {changed.describe()}")
        if plan.retry_at is not None:
            lines.append(f"{pad}    retry at {format_timestamp(plan.retry_at)}")
        if item.plan_changed and item.base is not None:
            lines.append(f"{pad}    before this change: {item.base.verdict}: {item.base.reason}")
    if report.problems:
        lines += ["", "Problems:"]
        lines += [f"  {p}" for p in report.problems]
    count = len(report.environments)
    lines += ["", f"{count} environment{'' if count == 1 else 's'}: {_summary(report.counts())}"]
    return "\n".join(lines) + "\n"


# -- JSON ------------------------------------------------------------------------------


def _changes_json(changes: InputChanges | None) -> dict[str, Any] | None:
    if changes is None:
        return None
    return {
        "known": changes.known,
        "files": list(changes.files),
        "moreFiles": changes.more_files,
        "vars": list(changes.vars),
        "steps": list(changes.steps),
    }


def _plan_json(plan: EnvironmentPlan, changes: Mapping[Phase, InputChanges] | None = None) -> dict[str, Any]:
    why = changes or {}
    kind = change_of(plan)
    return {
        "verdict": str(plan.verdict),
        "change": str(kind) if kind is not None else None,
        "observed": plan.observed_state,
        "desired": plan.desired_state,
        "reason": plan.reason,
        "actions": [
            {
                "kind": str(a.kind),
                "phase": str(a.phase) if a.phase else None,
                "reason": a.reason,
                "changedInputs": _changes_json(why.get(a.phase)) if a.phase is not None else None,
            }
            for a in plan.actions
        ],
        "transitions": list(plan.path),
        "retryAt": format_timestamp(plan.retry_at) if plan.retry_at else None,
        "nextAttempt": plan.next_attempt,
        "suspended": plan.suspended.to_json() if plan.suspended is not None else None,
    }


def render_json(report: PlanReport) -> str:
    data = {
        "formatVersion": 1,  # reconciler.views.FORMAT_VERSION (planner sits below views)
        "revision": report.revision,
        "base": report.base,
        "stateRef": report.state_ref,
        "generatedAt": format_timestamp(report.generated_at),
        "hasChanges": report.has_changes,
        "verification": (
            {
                "verified": report.verification.verified,
                "detail": report.verification.detail,
                "skippedTip": report.verification.skipped_tip,
            }
            if report.verification is not None
            else None
        ),
        "summary": {str(v): n for v, n in sorted(report.counts().items())},
        "changes": {str(c): report.change_counts()[c] for c in _COUNT_ORDER},
        "environments": [
            {
                "name": item.plan.name,
                **_plan_json(item.plan, item.changes),
                "fileChanged": item.file_changed,
                "planChanged": item.plan_changed,
                "base": _plan_json(item.base) if item.base is not None else None,
            }
            for item in report.environments
        ],
        "problems": [
            {"path": p.path, "line": p.line, "col": p.col, "message": p.message, "environment": p.environment}
            for p in report.problems
        ],
    }
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


# -- markdown --------------------------------------------------------------------------


def _fence(lines: list[str]) -> str:
    """A code fence longer than any run of backticks in ``lines`` (CommonMark closes on one as long)."""
    longest = max((len(run) for line in lines for run in re.findall("`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ").replace("`", "'")


def _what_happens(plan: EnvironmentPlan) -> str:
    icon = _ICONS[plan.verdict]
    steps = [a.describe() for a in plan.actions]
    if plan.verdict is Verdict.CHANGES:
        return f"{icon} " + " → ".join(steps)
    if steps:
        return f"{icon} {plan.verdict}, then " + " → ".join(steps)
    return f"{icon} {plan.verdict}"


_INVALID_WHY = "left alone until the file is fixed (see below)"


def _marked(plan: EnvironmentPlan) -> str:
    """What happens, with terraform's mark in front; a destroy or a recreate in bold."""
    text = _cell(_what_happens(plan))
    kind = kind_of(plan)
    if kind is None:
        return text
    if kind in (Change.DESTROY, Change.RECREATE):
        text = f"**{text}**"
    return f"`{MARKS[kind]}` {text}"


def _why(item: ReviewedPlan) -> str:
    plan = item.plan
    if plan.verdict is Verdict.INVALID:
        return _cell(_INVALID_WHY)
    lines = [_cell(plan.reason)]
    for phase, changed in item.changes.items():
        if not changed.known:
            continue
        parts = []
        if changed.files:
            more = f" and {changed.more_files} more" if changed.more_files else ""
            parts.append("files " + ", ".join(f"`{_cell(f)}`" for f in changed.files) + more)
        if changed.vars:
            parts.append("vars " + ", ".join(f"`{_cell(v)}`" for v in changed.vars))
        if changed.steps:
            parts.append("steps " + ", ".join(f"`{_cell(s)}`" for s in changed.steps))
        lines.append(f"{phase}: " + ("; ".join(parts) if parts else "inputs changed"))
    return "<br>".join(lines)


def _row(item: ReviewedPlan) -> str:
    plan = item.plan
    name = f"**{plan.name}**"
    if item.file_changed:
        name += " ✏️"
    cells = [
        name,
        _cell(plan.observed_state or "—"),
        _cell(_desired(plan, "(no file)")),
        _marked(plan),
        _why(item),
    ]
    return "| " + " | ".join(cells) + " |"


def render_markdown(report: PlanReport) -> str:
    """A pull-request comment: one table a reviewer reads at a glance."""
    errors = (Verdict.INVALID, Verdict.CORRUPT)
    shown = [r for r in report.environments if report.base is None or r.affected or r.plan.verdict in errors]
    counts = report.counts(shown)
    title = "### reconcile plan"
    if report.base is not None:
        lines = [
            f"{title}: merging `{_short(report.revision)}` over `{_short(report.base)}`",
            "",
            f"**{len(shown)} environment{'s' if len(shown) != 1 else ''} affected:** {_summary(counts)}",
        ]
    else:
        lines = [
            f"{title}: `{_short(report.revision)}`",
            "",
            f"**{len(shown)} environment{'s' if len(shown) != 1 else ''}:** {_summary(counts)}",
        ]
    lines[-1] += f"  \n**Plan:** {plan_line(report, shown)}"
    doomed = {
        kind: [r.plan.name for r in shown if r.change is kind] for kind in (Change.DESTROY, Change.RECREATE)
    }
    if doomed[Change.DESTROY]:
        lines += ["", f"⚠️ **To destroy:** {', '.join(doomed[Change.DESTROY])}"]
    if doomed[Change.RECREATE]:
        lines += ["", f"♻️ **To recreate from scratch:** {', '.join(doomed[Change.RECREATE])}"]
    if report.verification is not None:
        if report.verification.verified:
            lines += ["", f"🔏 Signature verified: {_cell(report.verification.detail)}"]
        else:
            lines += ["", f"⚠️ **Unverified:** {_cell(report.verification.detail)}"]
    lines.append("")
    if shown:
        lines += [
            "| environment | observed | desired | what will happen | why |",
            "|---|---|---|---|---|",
            *(_row(r) for r in shown),
            "",
        ]
    else:
        lines += ["This change does not change what any environment will do.", ""]
    if report.problems:
        problems = [str(p) for p in report.problems]
        fence = _fence(problems)  # user text can never close it early and write markdown of its own
        lines += ["#### ❌ Invalid files", "", fence, *problems, fence, ""]
    when = format_timestamp(report.generated_at.replace(microsecond=0))
    notes = [f"Observed state from `{report.state_ref}` at {when}."]
    if report.base is not None:
        others = [r for r in report.environments if r not in shown]
        pending = sum(1 for r in others if r.plan.has_changes)
        if others:
            notes.append(
                f"{len(others)} other environment{'s' if len(others) != 1 else ''} unaffected"
                + (f" ({pending} with changes pending regardless of this pull request)" if pending else "")
                + "."
            )
        notes.append("✏️ = environment file changed in this pull request.")
    lines.append(" ".join(notes))
    return "\n".join(lines) + "\n"
