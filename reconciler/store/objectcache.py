"""libgit2's object cache kept within its budget in a repository whose large trees are replaced, not reused.

libgit2 keeps parsed objects per repository and counts them against one
process-wide budget (``pygit2.settings.cache_max_size``). Over budget, each
new entry of a cache evicts eight of that cache's entries (or 1/2048th of
them) at random: by count, not by size. The state branch's repository holds
thousands of small ``<name>/`` trees and, at 10,000 environments, a 360 KB
root tree per transition of which only the tip's is read again: eviction
almost never picks a root tree, so they pile up far past the budget (15 MiB
counted, 34 MiB of heap after 40 pushes; docs/decisions/027-daemon-memory.md).

``TipCache.moved`` starts a repository's caches over when its branch moved
``every`` times since the last start and libgit2 is over its budget: what the
next reads need (the new tip and its root tree) is parsed again once.
"""

from __future__ import annotations

import threading

import pygit2

#: Tip moves between two clears at least (so a budget another repository fills costs little here).
CLEAR_EVERY_TIPS = 8

#: ``enable_caching`` is process-wide: one clear at a time turns it off and on again.
_TOGGLE = threading.Lock()


def clear(repo: pygit2.Repository, oid: pygit2.Oid | str) -> None:
    """Empty ``repo``'s object caches (parsed and raw), by looking ``oid`` up while caching is off.

    libgit2 documents it: with caching disabled "each cache will be cleared on the
    next attempt to update anything in it". The lookup stores into both caches of
    ``repo`` and nothing else; another thread's lookup meanwhile only misses the
    cache (and may clear its own repository's). Objects in use stay valid: the
    cache only drops its reference. Caching is on again when this returns.
    """
    with _TOGGLE:
        pygit2.settings.enable_caching(False)
        try:
            repo.get(oid)
        finally:
            pygit2.settings.enable_caching(True)


def over_budget() -> bool:
    """Whether libgit2's cached objects, over every repository of the process, exceed its budget."""
    current, allowed = pygit2.settings.cached_memory
    return bool(current > allowed)


class TipCache:
    """Counts the moves of one branch's tip in one repository and clears its caches when due."""

    def __init__(self, every: int = CLEAR_EVERY_TIPS) -> None:
        self._every = every
        self._lock = threading.Lock()
        self._tip: pygit2.Oid | str | None = None
        self._moves = 0
        #: How many times this repository's caches were started over (for tests and benchmarks).
        self.clears = 0

    def moved(self, repo: pygit2.Repository, tip: pygit2.Oid | str) -> None:
        """Note that the tip is ``tip`` (before reading it); clear ``repo``'s caches when due."""
        with self._lock:
            if tip == self._tip:
                return
            self._tip = tip
            self._moves += 1
            if self._moves < self._every or not over_budget():
                return
            self._moves = 0
            self.clears += 1
        clear(repo, tip)
