"""Which environments a new desired commit concerns (SPEC 6: a push wakes only what it concerns).

The daemon wakes them (``daemon/wake.py``); the dashboard plans only them again (``web/fleet.py``).

The loader already turns the tree diff between two commits into the
environments it concerns: it re-resolves an environment only when the tree
diff of ``environments/`` names its file, its blueprint's blob changed, or
the object id of a path its steps reference changed (``desired/loader.py``),
and it hands back the very same ``ResolvedEnvironment`` object for every
other one. A resolved environment carries its phase hashes, which cover its
steps, its vars and the git ids of every path they reference. So comparing
the two loads, environment by environment (identity first, then value),
gives exactly the environments whose inputs changed, mapped through the same
code that computes the hashes: there is no second list of "what an
environment reads" to keep in step with the loader. To those come their
dependents, transitively (a dependent's plan reads its dependency's desired
state), and every environment whose refusal appeared, changed or went away.

In doubt, everything: no previous load, a commit that is not a descendant
of the one loaded before (history rewritten), or a change of a
``reconciler.yaml`` setting that decides every environment's plan (the
branch, the state ref, the remote, ``prune``, and any setting not known
here to be harmless); ``identity``, ``verify`` and ``notify`` change no plan.
See docs/decisions/014-wake-by-difference.md.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pygit2

from reconciler.desired.resolved import DesiredSnapshot


@dataclass(frozen=True)
class Wake:
    """What a new desired commit concerns: some environments, or (``names is None``) every one."""

    names: frozenset[str] | None
    #: Why, for the log: what changed, or why everything is looked at.
    reason: str

    @property
    def everything(self) -> bool:
        return self.names is None


def concerned(repo: pygit2.Repository, old: DesiredSnapshot | None, new: DesiredSnapshot) -> Wake:
    """The environments to look at again now that ``new`` replaces ``old`` as the desired state."""
    if old is None or old.commit is None or new.commit is None:
        return Wake(None, "first load")
    if old.commit == new.commit:
        return Wake(frozenset(), "same commit")
    if not _descends(repo, new.commit, old.commit):
        return Wake(None, "history rewritten: the new commit does not descend from the one loaded")
    if _plan_settings(old) != _plan_settings(new):
        return Wake(None, "reconciler.yaml changed")
    changed = changed_environments(old, new)
    if not changed:
        return Wake(frozenset(), "no environment's inputs changed")
    woken = with_dependents(changed, (old, new))
    dependents = len(woken) - len(changed)
    return Wake(frozenset(woken), f"{len(changed)} environment(s) changed, {dependents} dependent(s)")


#: ``reconciler.yaml`` fields that change no environment's plan: who commits, which commits are
#: trusted (the commit choice is made before loading), where events go.
_NOT_PLAN_SETTINGS = frozenset({"identity", "verify", "notify"})


def _plan_settings(snapshot: DesiredSnapshot) -> dict[str, object]:
    return snapshot.config.model_dump(exclude=set(_NOT_PLAN_SETTINGS))


def _descends(repo: pygit2.Repository, new: str, old: str) -> bool:
    try:
        return bool(repo.descendant_of(pygit2.Oid(hex=new), pygit2.Oid(hex=old)))
    except (KeyError, ValueError, pygit2.GitError):
        return False  # the old commit is gone (garbage-collected): in doubt


def changed_environments(old: DesiredSnapshot, new: DesiredSnapshot) -> set[str]:
    """Environments whose resolved definition or refusal differs between two loads, or that came or went.

    One identity comparison per environment when the loads shared a cache
    (the loader reuses what it did not re-resolve); a value comparison otherwise.
    """
    changed: set[str] = set()
    old_envs, new_envs = old.environments, new.environments
    for name, env in new_envs.items():
        before = old_envs.get(name)
        if before is not env and before != env:
            changed.add(name)
    if len(old_envs) != len(new_envs) or changed:
        changed.update(name for name in old_envs if name not in new_envs)
    for name in old.broken.keys() | new.broken.keys():
        if old.broken.get(name) != new.broken.get(name):
            changed.add(name)
    return changed


def with_dependents(names: Iterable[str], snapshots: Iterable[DesiredSnapshot]) -> set[str]:
    """``names`` and every environment that depends on one of them, transitively, in any of ``snapshots``."""
    indexes = [s.dependents for s in snapshots]
    found = set(names)
    pending = list(found)
    while pending:
        name = pending.pop()
        for index in indexes:
            for user in index.get(name, ()):
                if user not in found:
                    found.add(user)
                    pending.append(user)
    return found
