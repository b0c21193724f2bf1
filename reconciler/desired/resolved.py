"""Desired state after loading: what the planner and the engine consume.

A ``DesiredSnapshot`` is one revision of the GitOps repository, read and
checked: every valid environment resolved against its blueprint, every bad
file reduced to ``Problem`` values that name the file, line and field. These
are plain frozen values: no git objects, no YAML nodes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
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


class DeferredEnvironment(ResolvedEnvironment):
    """A ``ResolvedEnvironment`` whose ``spec``, ``vars``, ``phases`` and ``labels`` are built on first use.

    The loader makes one from what an earlier run, or the helper process, kept for the
    very same file: its document (validated then, by the same code) and its phase
    hashes (for the same inputs). What a plan needs to find a kept plan (the name, the
    blob id, the phase hashes, ``dependsOn``) is there at once; the schema runs only for
    an environment whose plan is decided again (issue 11). Built, it is the
    ``ResolvedEnvironment`` a load without the cache gives, and compares equal to it.
    """

    __slots__ = ("_build", "_depends_on")
    _build: Callable[[], ResolvedEnvironment]
    _depends_on: tuple[str, ...]

    def __init__(
        self,
        *,
        name: str,
        path: str,
        blob_id: str,
        phase_hashes: Mapping[Phase, str],
        depends_on: tuple[str, ...],
        build: Callable[[], ResolvedEnvironment],
    ) -> None:
        _set_name(self, name)
        _set_path(self, path)
        _set_blob_id(self, blob_id)
        _set_phase_hashes(self, phase_hashes)
        _set_depends_on(self, depends_on)
        _set_build(self, build)

    @property
    def depends_on(self) -> tuple[str, ...]:
        return self._depends_on

    @property
    def built(self) -> bool:
        """Whether the schema has run for it (something read its spec, vars, phases or labels)."""
        try:
            _SLOTS["spec"].__get__(self, DeferredEnvironment)
        except AttributeError:
            return False
        return True

    def __eq__(self, other: object) -> bool:
        # The dataclass's own ``__eq__`` compares only instances of one class: this one is built
        # to be equal to what a load without the cache gives.
        if not isinstance(other, ResolvedEnvironment):
            return NotImplemented
        return all(getattr(self, key) == getattr(other, key) for key in _FIELDS)

    __hash__ = ResolvedEnvironment.__hash__

    def _built(self, key: str) -> Any:
        slot = _SLOTS[key]
        try:
            return slot.__get__(self, DeferredEnvironment)
        except AttributeError:
            built = self._build()
            for lazy in _LAZY:
                _SLOTS[lazy].__set__(self, getattr(built, lazy))
            return slot.__get__(self, DeferredEnvironment)


_LAZY = ("spec", "vars", "phases", "labels")
_FIELDS = ("name", "path", "spec", "vars", "phases", "phase_hashes", "blob_id", "labels")
_SLOTS: dict[str, Any] = {
    key: ResolvedEnvironment.__dict__[key] for key in (*_LAZY, "name", "path", "blob_id", "phase_hashes")
}
_set_name = _SLOTS["name"].__set__
_set_path = _SLOTS["path"].__set__
_set_blob_id = _SLOTS["blob_id"].__set__
_set_phase_hashes = _SLOTS["phase_hashes"].__set__
_set_depends_on = DeferredEnvironment.__dict__["_depends_on"].__set__
_set_build = DeferredEnvironment.__dict__["_build"].__set__


def _lazy(key: str) -> property:
    def get(self: DeferredEnvironment) -> Any:
        return self._built(key)

    def put(self: DeferredEnvironment, value: Any) -> None:  # ``dataclasses.replace`` builds one whole
        _SLOTS[key].__set__(self, value)

    return property(get, put)


for _key in _LAZY:
    setattr(DeferredEnvironment, _key, _lazy(_key))


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
            for dep in env.depends_on if env is not None else ():
                index.setdefault(dep, set()).add(name)
        return MappingProxyType({name: frozenset(users) for name, users in index.items()})
