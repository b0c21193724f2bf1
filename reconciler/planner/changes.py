"""Which inputs of a re-run phase changed: the files, the vars, the steps.

The planner re-runs a phase because its recorded hash differs from the
desired one. To say why in a plan people review, the inputs the phase was
last applied with (its definition at the environment's recorded desired
commit) are compared with the desired ones. Both sides come in as values;
reading them from git is the caller's job, so this stays pure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from reconciler.desired.inputs import PhaseInputs
from reconciler.desired.resolved import ResolvedEnvironment
from reconciler.domain.erased import AnyEnvironment
from reconciler.domain.states import Phase
from reconciler.planner.model import ActionKind, EnvironmentPlan

#: How many changed files one phase lists before saying "and N more".
MAX_FILES = 20


@dataclass(frozen=True)
class InputChanges:
    """What differs between the inputs a phase was applied with and the desired ones."""

    #: Repository paths whose object id differs (added, removed or changed).
    files: tuple[str, ...] = ()
    #: Vars added, removed or changed (names only: a value may be a secret's name or worse).
    vars: tuple[str, ...] = ()
    #: Labels of the steps added, removed or changed.
    steps: tuple[str, ...] = ()
    #: ``False``: the old inputs cannot be known (state recorded before they were kept, or its
    #: commit is gone); only that the hash differs is known.
    known: bool = True
    #: Files left off ``files`` beyond ``MAX_FILES``.
    more_files: int = 0

    def describe(self) -> str:
        """``files scripts/release.sh; vars http_port``, or ``inputs changed`` when unknown."""
        parts = []
        if self.files:
            more = f" and {self.more_files} more" if self.more_files else ""
            parts.append("files " + ", ".join(self.files) + more)
        if self.vars:
            parts.append("vars " + ", ".join(self.vars))
        if self.steps:
            parts.append("steps " + ", ".join(self.steps))
        return "; ".join(parts) if parts else "inputs changed"


UNKNOWN = InputChanges(known=False)

#: ``(path, old id, new id)`` -> the files under a changed directory, or ``[path]``.
ExpandPath = Callable[[str, str | None, str | None], list[str]]


def diff_inputs(before: PhaseInputs, after: PhaseInputs, expand: ExpandPath | None = None) -> InputChanges:
    """The paths, vars and steps that differ between two versions of one phase's inputs."""
    files: list[str] = []
    for path in sorted(set(before.paths) | set(after.paths)):
        old, new = before.paths.get(path), after.paths.get(path)
        if old != new or (path in before.paths) != (path in after.paths):
            files += expand(path, old, new) if expand is not None else [path]
    files = list(dict.fromkeys(files))
    # A directory whose changed files are listed anyway says nothing more (a work tree's, unexpanded).
    parents = {f[:i] for f in files for i, c in enumerate(f) if c == "/"}
    files = [f for f in files if f not in parents]
    names = sorted(
        k
        for k in set(before.vars) | set(after.vars)
        if k not in before.vars or k not in after.vars or before.vars[k] != after.vars[k]
    )
    steps: list[str] = []
    for i in range(max(len(before.steps), len(after.steps))):
        old_step = before.steps[i] if i < len(before.steps) else None
        new_step = after.steps[i] if i < len(after.steps) else None
        if old_step != new_step:
            label = after.labels[i] if i < len(after.labels) else f"{before.labels[i]} (removed)"
            steps.append(label)
    return InputChanges(
        files=tuple(files[:MAX_FILES]),
        vars=tuple(names),
        steps=tuple(steps),
        more_files=max(0, len(files) - MAX_FILES),
    )


#: ``(environment, phase)`` -> that phase's inputs at the revision planned, or ``None``.
DesiredInputs = Callable[[ResolvedEnvironment, Phase], PhaseInputs | None]
#: ``(observed environment, phase)`` -> the inputs it was last applied with, or ``None``.
AppliedInputs = Callable[[AnyEnvironment, Phase], PhaseInputs | None]


def recorded_hash(observed: AnyEnvironment, phase: Phase) -> str | None:
    """The hash a phase was completed (or last failed) with, as the state recorded it."""
    record = observed.phases.get(phase)
    if record is not None:
        return record.hash
    failure = observed.error_details
    if failure is not None and failure.phase is phase:
        return failure.phase_hash
    return None


def explain(
    plans: Iterable[EnvironmentPlan],
    observed: Mapping[str, object],
    desired: Mapping[str, ResolvedEnvironment],
    *,
    now_inputs: DesiredInputs,
    then_inputs: AppliedInputs,
    expand: ExpandPath | None = None,
) -> dict[str, dict[Phase, InputChanges]]:
    """For each plan, the phases it runs whose recorded hash differs from the desired one, and why.

    A phase that is re-run only because an earlier one is (``re-applied after``), or
    that never completed, is not listed: its own inputs are not the reason.
    """
    out: dict[str, dict[Phase, InputChanges]] = {}
    for plan in plans:
        if not any(a.kind is ActionKind.PHASE for a in plan.actions):
            continue  # nothing re-runs: its state is not read (a lazy store parses only what is asked)
        env = desired.get(plan.name)
        found = observed.get(plan.name)
        if env is None or not isinstance(found, AnyEnvironment):
            continue
        for action in plan.actions:
            phase = action.phase
            if action.kind is not ActionKind.PHASE or phase is None:
                continue
            recorded = recorded_hash(found, phase)
            wanted = env.phase_hashes.get(phase)
            if recorded is None or wanted is None or recorded == wanted:
                continue
            before = then_inputs(found, phase)
            after = now_inputs(env, phase) if before is not None else None
            if before is None or after is None or before.hash != recorded:
                changes = UNKNOWN
            else:
                changes = diff_inputs(before, after, expand)
            out.setdefault(plan.name, {})[phase] = changes
    return out
