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


def phase_inputs(env: ResolvedEnvironment, phase: Phase, object_id: ObjectIds) -> PhaseInputs | None:
    """The inputs of ``env``'s ``phase``; ``None`` when they do not give the hash the loader recorded."""
    steps: tuple[Step, ...] = env.steps(phase)
    try:
        paths = {p: object_id(p) for step in steps for p in referenced_paths(step, object_id)}
    except PathEscape:
        return None
    seen = phase_vars(steps, env.vars)
    digest = phase_hash(canonical_json(list(steps)), seen, paths.items())
    if digest != env.phase_hashes.get(phase):
        return None
    return PhaseInputs(
        steps=tuple(plain(step) for step in steps),
        labels=tuple(step.describe() for step in steps),
        vars=seen,
        paths=paths,
        hash=digest,
    )
