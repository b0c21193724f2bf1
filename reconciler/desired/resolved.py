"""Desired state after loading: what the planner and the engine consume.

A ``DesiredSnapshot`` is one revision of the GitOps repository, read and
checked: every valid environment resolved against its blueprint, every bad
file reduced to ``Problem`` values that name the file, line and field. These
are plain frozen values: no git objects, no YAML nodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any, Literal

from reconciler.desired.models import ConfigFile, DesiredState, EnvironmentSpec, Step
from reconciler.domain.states import Phase

PhaseOrCheck = Phase | Literal["check"]


@dataclass(frozen=True)
class Problem:
    """One refusal, printed as ``path:line:col: message``."""

    path: str
    line: int
    col: int
    message: str
    #: The environment this problem belongs to, or ``None`` for a repository-wide one.
    environment: str | None = None

    def __str__(self) -> str:
        return one_line(f"{self.path}:{self.line}:{self.col}: {self.message}")


# Every character ``str.splitlines`` breaks at, and the other C0/C1 controls: escaped, so that
# a key or file name from the repository can never split one problem into two lines.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))}
_CONTROLS.update({0x2028: "\\u2028", 0x2029: "\\u2029"})


def one_line(text: str) -> str:
    """``text`` with its control and line-separator characters escaped (``\\x1e``)."""
    return text.translate(_CONTROLS)


@dataclass(frozen=True, slots=True)
class ResolvedEnvironment:
    """One environment with its blueprint merged in.

    ``phases`` holds the merged steps of every phase (empty tuple = no-op
    phase) and ``check``; ``phase_hashes`` the input hash of each lifecycle
    phase (SPEC section 3, Planning), which the planner compares with the
    hashes recorded on the state branch.
    """

    name: str
    path: str
    spec: EnvironmentSpec
    vars: Mapping[str, Any]
    phases: Mapping[PhaseOrCheck, tuple[Step, ...]]
    phase_hashes: Mapping[Phase, str]
    #: The blob id of the environment file, for caching and change detection.
    blob_id: str = ""
    #: ``metadata.labels`` (selectors: notification sinks, ``-l``).
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def desired_state(self) -> DesiredState:
        return self.spec.desired_state

    @property
    def depends_on(self) -> tuple[str, ...]:
        return tuple(self.spec.depends_on)

    def steps(self, phase: PhaseOrCheck) -> tuple[Step, ...]:
        return self.phases.get(phase, ())


@dataclass(frozen=True)
class DesiredSnapshot:
    """One revision of the repository, loaded."""

    #: The desired-state commit, or ``None`` when read from a work tree.
    commit: str | None
    config: ConfigFile
    environments: Mapping[str, ResolvedEnvironment] = field(default_factory=lambda: MappingProxyType({}))
    #: Environments whose file exists but is invalid: left alone, reported.
    broken: Mapping[str, tuple[Problem, ...]] = field(default_factory=lambda: MappingProxyType({}))
    #: Every problem found, environment-specific or not, in path order.
    problems: tuple[Problem, ...] = ()
    #: Why reconciler.yaml is refused; while there is one, nothing is acted on (SPEC 2.4).
    config_problems: tuple[Problem, ...] = ()
    #: The environments that name others in ``dependsOn``, when the loader knows them
    #: (``None``: found by looking at every environment).
    depending: frozenset[str] | None = field(default=None, compare=False, repr=False)

    @property
    def config_refused(self) -> str | None:
        """One message for commands that must not act: ``None`` when reconciler.yaml is valid."""
        if not self.config_problems:
            return None
        found = "; ".join(str(p) for p in self.config_problems)
        return f"reconciler.yaml is invalid, so nothing is acted on until it is fixed: {found}"

    @property
    def names(self) -> frozenset[str]:
        """Every environment that has a file at this revision, valid or not."""
        return frozenset(self.environments) | frozenset(self.broken)

    @cached_property
    def dependents(self) -> Mapping[str, frozenset[str]]:
        """For each environment others name in ``dependsOn``, those that do (computed once per snapshot)."""
        index: dict[str, set[str]] = {}
        environments = self.environments
        names = environments if self.depending is None else sorted(self.depending)
        for name in names:
            env = environments.get(name)
            for dep in env.spec.depends_on if env is not None else ():
                index.setdefault(dep, set()).add(name)
        return MappingProxyType({name: frozenset(users) for name, users in index.items()})
