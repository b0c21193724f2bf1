"""Memory and pause settings of a long-running daemon that holds a large fleet in memory.

A daemon keeps every environment's resolved definition (about 7 KB each:
10,000 environments are some 70 MB of Python objects, nearly all of them
long-lived). Three process-wide settings keep that from costing more:

- ``settle``: after a desired state is installed, the objects alive then are
  moved out of the cyclic collector's generations (``gc.freeze``). A full
  collection over 400,000 objects pauses every thread for 0.3 s on a small
  machine, and would recur at random while the fleet's objects never die in
  cycles. Frozen objects are still freed by reference counting when a later
  snapshot drops them; only garbage cycles among them would be kept.
- ``limit_arenas``: glibc gives each thread its own malloc arena and keeps
  what each arena freed; with a handful of workers that grows RSS by tens of
  MB for nothing. Two arenas are plenty for a process whose threads mostly
  wait (``mallopt(M_ARENA_MAX, 2)``, as ``MALLOC_ARENA_MAX=2``). It also sets
  libgit2's object cache budget (``GIT_CACHE_BYTES``).
- ``trim``: memory freed by work (the start-up pass, a resync, a push's reload
  and checkout) is handed back to the system (``malloc_trim``) whenever the
  work queue drains.

Each is a no-op where the C library lacks the call. See docs/decisions/014-wake-by-difference.md.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging

import pygit2

from reconciler.desired import yamlio

logger = logging.getLogger(__name__)

#: ``mallopt`` parameter number of ``M_ARENA_MAX`` in glibc.
_M_ARENA_MAX = -8
#: The most libgit2 keeps in its object cache (its default is 256 MiB), counted in raw object bytes:
#: the state branch's tip root tree and a push's desired trees at 10,000 environments (0.4-0.5 MB
#: each, raw and parsed) fit. A parsed tree costs about three times what is counted, so 8 MiB
#: held some 20 MiB of old trees once full (docs/decisions/027-daemon-memory.md).
GIT_CACHE_BYTES = 2 * 1024 * 1024


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        return ctypes.CDLL(name)
    except OSError:
        return None


_LIBC = _libc()


def limit_arenas() -> None:
    """Before the daemon starts its threads: at most two malloc arenas, a bounded git object cache,
    and the C YAML path only (the native parser's module would stay resident: decision 027)."""
    pygit2.settings.cache_max_size(GIT_CACHE_BYTES)
    yamlio.native = False
    mallopt = getattr(_LIBC, "mallopt", None)
    if mallopt is not None:
        mallopt(_M_ARENA_MAX, 2)


def settle() -> None:
    """Take the objects alive now out of the cyclic collector's reach (they are the fleet's)."""
    gc.freeze()


def trim() -> None:
    """Hand memory freed by work back to the system (a few milliseconds, after the work is done)."""
    malloc_trim = getattr(_LIBC, "malloc_trim", None)
    if malloc_trim is not None:
        malloc_trim(0)
