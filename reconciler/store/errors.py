"""What can go wrong when reading or writing observed state.

::

    StoreError                  base: anything the state store refuses or fails to do
    ├── LostRace                compare-and-swap lost: re-read and decide again (temporary)
    ├── PushRefused             the remote refused a transition although nothing raced it (a hook, rights)
    ├── CorruptStateError       a state.json cannot be read; reported, never overwritten (permanent)
    ├── LockIdMismatch          unlock with a lock id that is not the environment's lock (usage)
    ├── InvalidLockFile         a file lock whose content is not a PID (permanent until removed)
    └── LockTimeout             a file lock held by a live process past the timeout (temporary)

Third-party errors (pygit2, OSError) are translated at this boundary with
``raise ... from e``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from reconciler.store.model import CorruptState


class StoreError(Exception):
    """The state store could not do what was asked."""


class LostRace(StoreError):
    """Someone else changed this environment since it was read: re-read and decide again."""


class PushRefused(StoreError):
    """The remote refused a transition although its ref had not moved (a hook, rights): it did not happen."""


class CorruptStateError(StoreError):
    """An environment's ``state.json`` cannot be read; it is left exactly as it is."""

    def __init__(self, corrupt: CorruptState) -> None:
        super().__init__(
            f"{corrupt.path}: corrupt state for environment '{corrupt.name}': {corrupt.error}\n"
            "Tip: fix or remove the file by hand (it is never overwritten); "
            "its history is in the state branch."
        )
        self.corrupt = corrupt


class LockIdMismatch(StoreError):
    """``unlock`` was given an id that is not the environment's current lock."""


class InvalidLockFile(StoreError):
    """A lock file holds something other than a PID."""


class LockTimeout(StoreError):
    """A lock file stayed held by a live process for longer than the timeout."""

    def __init__(self, message: str, holder_pid: int) -> None:
        super().__init__(message)
        self.holder_pid = holder_pid
