"""Observed state: where it lives and how it changes (one compare-and-swap transition at a time).

``GitStore`` (the state branch, the default), ``FileStore`` (the data dir) and
``MemoryStore`` (for tests) all satisfy ``StateStore``.
"""

from reconciler.store.errors import (
    CorruptStateError,
    InvalidLockFile,
    LockIdMismatch,
    LockTimeout,
    LostRace,
    PushRefused,
    StoreError,
)
from reconciler.store.file import FileLock, FileStore
from reconciler.store.git import GitStore
from reconciler.store.lock import is_stale, new_lock, this_holder
from reconciler.store.memory import MemoryStore
from reconciler.store.model import (
    DEFAULT_STATE_REF,
    CorruptState,
    Observed,
    RemembersFailures,
    StateStore,
    TransitionRecord,
)
from reconciler.store.recovery import recover_stale

__all__ = [
    "DEFAULT_STATE_REF",
    "CorruptState",
    "CorruptStateError",
    "FileLock",
    "FileStore",
    "GitStore",
    "InvalidLockFile",
    "LockIdMismatch",
    "LockTimeout",
    "LostRace",
    "MemoryStore",
    "Observed",
    "PushRefused",
    "RemembersFailures",
    "StateStore",
    "StoreError",
    "TransitionRecord",
    "is_stale",
    "new_lock",
    "recover_stale",
    "this_holder",
]
