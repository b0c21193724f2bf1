"""``AnyEnvironment``: an environment whose state is known only at run time.

It is what the store reads and writes (the JSON of SPEC section 4.2) and what
the planner inspects; ``try_into`` recovers the typed ``Environment[S]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from functools import cache
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_serializer
from pydantic.alias_generators import to_camel

from reconciler.domain.drift import DriftRecord
from reconciler.domain.states import STATES_BY_NAME, Phase, State
from reconciler.domain.values import FailureContext, Lock, PhaseRecord, SuspensionRecord, format_timestamp

if TYPE_CHECKING:
    from reconciler.domain.environment import Environment

T = TypeVar("T", bound=State)

SCHEMA_VERSION = 1


class StateTypeError(TypeError):
    """The environment is not in the state the caller asked for."""

    def __init__(self, name: str, expected: str, actual: str) -> None:
        super().__init__(f"Environment '{name}': expected state '{expected}', but found '{actual}'")
        self.expected = expected
        self.actual = actual


class StateDocumentError(ValueError):
    """A ``state.json`` that cannot be read as an environment."""


class StateDocument(BaseModel):
    """The JSON shape of one environment's state (SPEC section 4.2)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    schema_: Literal[1] = Field(default=1, alias="schema")
    name: str
    state: str
    desired_commit: str | None = None
    phases: dict[Phase, PhaseRecord] = Field(default_factory=dict)
    outputs: dict[str, str] = Field(default_factory=dict)
    lock: Lock | None = None
    failure: FailureContext | None = None
    updated_at: AwareDatetime
    #: Optional (SPEC 4.2): absent until a look for drift found something; files without it still read.
    drift: DriftRecord | None = None
    #: Optional (SPEC 4.2): absent, not ``null``, when nobody suspended it, so older files read the same.
    suspended: SuspensionRecord | None = None

    @field_serializer("updated_at")
    def _ts(self, value: datetime) -> str:
        return format_timestamp(value)


@cache
def _environment_class() -> type[Environment[State]]:
    """``Environment``, imported on first use (it imports this module)."""
    from reconciler.domain.environment import Environment

    return Environment


class AnyEnvironment:
    """The type-erased environment; equality is by value."""

    __slots__ = ("_env",)

    def __init__(self, env: Environment[State]) -> None:
        self._env = env

    # -- introspection -------------------------------------------------------------

    @property
    def name(self) -> str:
        return self._env.name

    @property
    def state(self) -> type[State]:
        return self._env.state

    @property
    def state_name(self) -> str:
        return self._env.state.name

    @property
    def is_success_state(self) -> bool:
        return self._env.state.is_success

    @property
    def is_error_state(self) -> bool:
        return not self._env.state.is_success

    @property
    def is_terminal_state(self) -> bool:
        return self._env.state.is_terminal

    @property
    def is_in_progress(self) -> bool:
        return self._env.state.is_in_progress

    @property
    def error_details(self) -> FailureContext | None:
        return self._env.failure

    @property
    def lock(self) -> Lock | None:
        return self._env.lock

    @property
    def phases(self) -> Mapping[Phase, PhaseRecord]:
        return self._env.phases

    @property
    def outputs(self) -> Mapping[str, str]:
        return self._env.outputs

    @property
    def desired_commit(self) -> str | None:
        return self._env.desired_commit

    @property
    def updated_at(self) -> datetime:
        return self._env.updated_at

    @property
    def drift(self) -> DriftRecord | None:
        return self._env.drift

    def with_drift(self, drift: DriftRecord | None) -> AnyEnvironment:
        return AnyEnvironment(self._env.with_drift(drift))

    @property
    def suspended(self) -> SuspensionRecord | None:
        """An operator's ``reconcile suspend``, when one is in force."""
        return self._env.suspended

    @property
    def environment(self) -> Environment[State]:
        """The typed environment, as its widest type."""
        return self._env

    # -- recovering the type -------------------------------------------------------

    def try_into(self, state: type[T]) -> Environment[T]:
        if self._env.state is not state:
            # A capability or base class (``CanProvision``, ``Failed``) has no ``name``.
            expected = getattr(state, "name", state.__name__)
            raise StateTypeError(self.name, expected, self.state_name)
        return self._env  # type: ignore[return-value]  # checked just above

    # -- display and equality ------------------------------------------------------

    def __str__(self) -> str:
        text = f"Environment '{self.name}' is in state: {self.state_name}"
        if self._env.failure is not None:
            text += f" (failed at: {self._env.failure.error_summary})"
        return text

    def __repr__(self) -> str:
        return f"AnyEnvironment({self.to_document()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AnyEnvironment):
            return NotImplemented
        return self.to_document() == other.to_document()

    def __hash__(self) -> int:
        return hash((self.name, self.state_name, self.updated_at))

    # -- serialization -------------------------------------------------------------

    def to_document(self) -> StateDocument:
        env = self._env
        return StateDocument(
            name=env.name,
            state=env.state.name,
            desired_commit=env.desired_commit,
            phases=dict(env.phases),
            outputs=dict(env.outputs),
            lock=env.lock,
            failure=env.failure,
            updated_at=env.updated_at,
            drift=env.drift,
            suspended=env.suspended,
        )

    def to_json(self) -> str:
        """Stable, human-diffable JSON (sorted by the model's field order, 2-space indent)."""
        data = self.to_document().model_dump(mode="json", by_alias=True)
        if data.get("drift") is None:
            data.pop("drift", None)  # optional key: absent rather than null, as before it existed
        if data.get("suspended") is None:
            data.pop("suspended", None)  # an optional key (SPEC 4.2): written only when set
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_document(cls, doc: StateDocument) -> AnyEnvironment:
        return cls._from_document(doc, dict(doc.phases), dict(doc.outputs))

    @classmethod
    def _from_document(
        cls, doc: StateDocument, phases: dict[Phase, PhaseRecord], outputs: dict[str, str]
    ) -> AnyEnvironment:
        """``phases`` and ``outputs``: dicts of the document's own that nothing else holds."""
        state = STATES_BY_NAME.get(doc.state)
        if state is None:
            raise StateDocumentError(
                f"unknown state '{doc.state}' (expected one of: {', '.join(STATES_BY_NAME)})"
            )
        if doc.lock is not None and not state.is_in_progress:
            raise StateDocumentError(f"state '{doc.state}' cannot hold a lock")
        if state.is_error() != (doc.failure is not None):
            need = "requires" if state.is_error() else "cannot carry"
            raise StateDocumentError(f"state '{doc.state}' {need} a failure context")
        if doc.failure is not None and doc.failure.phase is not state.phase:
            raise StateDocumentError(f"state '{doc.state}' cannot carry a {doc.failure.phase} failure")
        env: Environment[State] = _environment_class()(
            name=doc.name,
            state=state,
            desired_commit=doc.desired_commit,
            phases=MappingProxyType(phases),
            outputs=MappingProxyType(outputs),
            lock=doc.lock,
            failure=doc.failure,
            updated_at=doc.updated_at,
            drift=doc.drift,
            suspended=doc.suspended,
        )
        return cls(env)

    @classmethod
    def from_json(cls, text: str | bytes) -> AnyEnvironment:
        """Parse ``state.json``; any problem is a ``StateDocumentError`` naming it."""
        try:
            doc = StateDocument.model_validate_json(text)
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in e.errors()
            )
            raise StateDocumentError(f"invalid state document: {problems}") from e
        # The document was made here and is dropped: its dicts need no defensive copy.
        return cls._from_document(doc, doc.phases, doc.outputs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AnyEnvironment:
        return cls.from_json(json.dumps(data))
