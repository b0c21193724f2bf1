"""An in-process state store for engine tests.

It keeps the same JSON text the real stores keep, so a test can also plant a
corrupt document (``put_raw``) and see the same refusal the real stores give.
"""

from __future__ import annotations

import hashlib
import threading
from uuid import UUID

from reconciler.domain import AnyEnvironment, FailureContext, StateDocumentError, utcnow
from reconciler.store.errors import CorruptStateError, LostRace
from reconciler.store.lock import holder_label, this_holder
from reconciler.store.message import RECONCILER_ACTOR, TRANSITION
from reconciler.store.model import CorruptState, Observed, TransitionRecord
from reconciler.store.recovery import force_unlock


def _version(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class MemoryStore:
    """A ``StateStore`` in a dict; thread-safe, nothing survives the process."""

    def __init__(self) -> None:
        self._texts: dict[str, str] = {}
        self._failure_before: dict[str, FailureContext | None] = {}
        self._history: list[TransitionRecord] = []
        self._mutex = threading.Lock()

    def _parse(self, name: str, text: str) -> Observed | CorruptState:
        path = f"memory:{name}/state.json"
        try:
            env = AnyEnvironment.from_json(text)
        except StateDocumentError as e:
            return CorruptState(name=name, path=path, error=str(e))
        if env.name != name:
            return CorruptState(name=name, path=path, error=f"document names environment '{env.name}'")
        return Observed(env=env, version=_version(text))

    def read(self, name: str) -> Observed | None:
        with self._mutex:
            text = self._texts.get(name)
        if text is None:
            return None
        result = self._parse(name, text)
        if isinstance(result, CorruptState):
            raise CorruptStateError(result)
        return result

    def read_all(self) -> dict[str, Observed | CorruptState]:
        with self._mutex:
            texts = dict(self._texts)
        return {name: self._parse(name, text) for name, text in sorted(texts.items())}

    def apply(
        self,
        name: str,
        expected_version: str | None,
        after: AnyEnvironment,
        *,
        from_state: str,
        desired_commit: str | None,
        detail: str | None = None,
        actor: str | None = None,
        event: str = TRANSITION,
    ) -> Observed:
        if after.name != name:
            raise ValueError(f"cannot store environment '{after.name}' under the name '{name}'")
        text = after.to_json()
        with self._mutex:
            current = self._texts.get(name)
            before: FailureContext | None = None
            if current is not None:
                parsed = self._parse(name, current)
                if isinstance(parsed, CorruptState):
                    raise CorruptStateError(parsed)
                before = parsed.env.error_details
            if (None if current is None else _version(current)) != expected_version:
                raise LostRace(f"{name}: changed since it was read")
            self._texts[name] = text
            self._failure_before[name] = before
            self._history.append(
                TransitionRecord(
                    name=name,
                    from_state=from_state,
                    to_state=after.state_name,
                    desired_commit=desired_commit,
                    holder=holder_label(this_holder()),
                    detail=detail,
                    at=utcnow(),
                    commit_id=None,
                    actor=actor or RECONCILER_ACTOR,
                    event=event,
                )
            )
        return Observed(env=after, version=_version(text))

    def history(self, name: str | None = None, limit: int | None = None) -> list[TransitionRecord]:
        with self._mutex:
            records = [r for r in reversed(self._history) if name is None or r.name == name]
        return records if limit is None else records[:limit]

    def unlock(self, name: str, lock_id: UUID) -> Observed:
        return force_unlock(self, name, lock_id)

    def failure_before(self, name: str) -> FailureContext | None:
        with self._mutex:
            return self._failure_before.get(name)

    def put_raw(self, name: str, text: str) -> None:
        """Plant ``text`` as ``name``'s state document, as a hand edit would (tests only)."""
        with self._mutex:
            self._texts[name] = text
