"""What a phase's hash was computed from, kept apart so two versions can be compared.

``phase_hashes`` say only *that* a phase's inputs changed; a reviewer wants to
know *which*: the repository paths whose object ids differ, the vars, the
steps. ``phase_inputs`` recomputes the parts of one phase's hash at one
revision (``hashing.hash_phase``'s inputs) and checks them against the hash the
loader computed, so a comparison is never made from parts that do not add up.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.desired.hashing import (
    ObjectIds,
    canonical_json,
    phase_hash,
    phase_vars,
    plain,
    referenced_paths,
)
from reconciler.desired.models import Step
from reconciler.desired.resolved import ResolvedEnvironment
from reconciler.desired.sources import PathEscape
from reconciler.domain.states import Phase


@dataclass(frozen=True)
class PhaseInputs:
    """One phase's inputs at one revision, and the hash they make."""

    #: The merged steps, each as its plain JSON form, and each one's one-line label.
    steps: tuple[Any, ...]
    labels: tuple[str, ...]
    #: The vars the phase's steps can see (a secret stays ``{fromEnv: NAME}``).
    vars: Mapping[str, Any]
    #: Repository path -> git object id (``None``: referenced but missing).
    paths: Mapping[str, str | None]
    hash: str


class InputReader:
    """``phase_inputs`` at one revision, remembering what only depends on the steps.

    Environments of one blueprint share its step tuples, so the steps' JSON, labels and
    referenced paths are worked out once per tuple, not once per environment.
    """

    def __init__(self, object_id: ObjectIds) -> None:
        self.object_id = object_id
        #: The ids of a phase's step objects (a blueprint's are shared by its environments) ->
        #: (the steps, kept so that no id is reused; their facts).
        self._steps: dict[tuple[int, ...], tuple[tuple[Step, ...], _StepFacts]] = {}

    def __call__(self, env: ResolvedEnvironment, phase: Phase) -> PhaseInputs | None:
        """The inputs of ``env``'s ``phase``; ``None`` when they do not give the hash the loader recorded."""
        steps: tuple[Step, ...] = env.steps(phase)
        key = tuple(map(id, steps))
        known = self._steps.get(key)
        if known is None:
            try:
                facts = _StepFacts.of(steps, self.object_id)
            except PathEscape:
                return None
            known = self._steps[key] = (steps, facts)
        facts = known[1]
        seen = phase_vars(steps, env.vars)
        digest = phase_hash(facts.steps_json, seen, facts.paths.items())
        if digest != env.phase_hashes.get(phase):
            return None
        return PhaseInputs(steps=facts.plain, labels=facts.labels, vars=seen, paths=facts.paths, hash=digest)


@dataclass(frozen=True)
class _StepFacts:
    steps_json: str
    plain: tuple[Any, ...]
    labels: tuple[str, ...]
    paths: Mapping[str, str | None]

    @classmethod
    def of(cls, steps: tuple[Step, ...], object_id: ObjectIds) -> _StepFacts:
        paths = {p: object_id(p) for step in steps for p in referenced_paths(step, object_id)}
        return cls(
            steps_json=canonical_json(list(steps)),
            plain=tuple(plain(step) for step in steps),
            labels=tuple(step.describe() for step in steps),
            paths=paths,
        )


def phase_inputs(env: ResolvedEnvironment, phase: Phase, object_id: ObjectIds) -> PhaseInputs | None:
    """The inputs of ``env``'s ``phase``; ``None`` when they do not give the hash the loader recorded."""
    return InputReader(object_id)(env, phase)
