"""The git side of "which inputs changed" in a plan (``planner.changes`` is the pure side).

A re-run phase was last applied from the environment's recorded
``desiredCommit``: its definition there, with the object ids of that commit's
tree, is compared with the definition planned. A directory a step references
(a tofu module) is expanded into the files that differ under it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import pygit2

from reconciler.desired.hashing import ObjectIds
from reconciler.desired.inputs import InputReader, PhaseInputs
from reconciler.desired.loader import ParseCache, load_snapshot
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.desired.sources import GitTreeSource, WorkTreeSource
from reconciler.domain import AnyEnvironment, Phase
from reconciler.planner.changes import InputChanges, explain
from reconciler.planner.model import EnvironmentPlan


def input_changes(
    repo: pygit2.Repository,
    plans: Sequence[EnvironmentPlan],
    observed: Mapping[str, object],
    snapshot: DesiredSnapshot,
    tree: pygit2.Tree | None,
    *,
    cache: ParseCache | None = None,
) -> dict[str, dict[Phase, InputChanges]]:
    """Per environment, the changed inputs of each phase its plan re-runs for them.

    ``tree`` is what was planned (a pull request's merge); ``None``: ``snapshot.commit``'s
    tree, or the work tree when the snapshot has no commit. ``cache``: the plan's parse
    cache, so an applied commit that shares most files with the planned one loads fast.
    """
    now_ids: ObjectIds
    if tree is not None:
        now_ids = GitTreeSource(repo, tree).object_id
    elif snapshot.commit is not None:
        now_ids = GitTreeSource(repo, repo[snapshot.commit].peel(pygit2.Tree)).object_id
    elif repo.workdir is not None:
        now_ids = WorkTreeSource(Path(repo.workdir), repo).object_id
    else:
        return {}
    then = _AppliedDefinitions(repo, cache or ParseCache())
    return explain(
        plans,
        observed,
        snapshot.environments,
        now_inputs=InputReader(now_ids),
        then_inputs=then.inputs,
        expand=lambda path, old, new: _expand(repo, path, old, new),
    )


class _AppliedDefinitions:
    """Definitions at the commits environments were last applied from, each commit loaded once."""

    def __init__(self, repo: pygit2.Repository, cache: ParseCache) -> None:
        self.repo = repo
        self.cache = cache
        self.loaded: dict[str, tuple[DesiredSnapshot, InputReader] | None] = {}

    def inputs(self, env: AnyEnvironment, phase: Phase) -> PhaseInputs | None:
        commit = env.desired_commit
        if not commit:
            return None  # recorded before desired commits were (or by hand): nothing to compare with
        if commit not in self.loaded:
            self.loaded[commit] = self._load(commit)
        found = self.loaded[commit]
        if found is None:
            return None
        snapshot, reader = found
        definition = snapshot.environments.get(env.name)
        return reader(definition, phase) if definition is not None else None

    def _load(self, commit: str) -> tuple[DesiredSnapshot, InputReader] | None:
        try:
            snapshot = load_snapshot(self.repo, commit, cache=self.cache)
            tree = self.repo[commit].peel(pygit2.Tree)
        except (LookupError, ValueError, pygit2.GitError):
            return None  # garbage-collected, or a shallow clone without it
        return snapshot, InputReader(GitTreeSource(self.repo, tree).object_id)


def _expand(repo: pygit2.Repository, path: str, old: str | None, new: str | None) -> list[str]:
    """``path``, or the files under it that differ when both sides are directories."""
    if old is None or new is None:
        return [path]
    try:
        before, after = repo[old], repo[new]
    except (KeyError, ValueError):
        return [path]  # a work tree's id that is in no object database
    if not isinstance(before, pygit2.Tree) or not isinstance(after, pygit2.Tree):
        return [path]
    files: list[str] = []
    for delta in before.diff_to_tree(after).deltas:
        files.append(f"{path}/{delta.new_file.path or delta.old_file.path}")
    return files or [path]
