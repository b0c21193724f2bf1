"""``reconcile plan``: what reconciling would do, per environment, and why (SPEC section 5).

Reads the desired state of a revision (or the work tree), the observed state
from the state branch, and prints the planner's decisions. With ``--base`` it
is the pull-request view: what merging the revision over the base changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Annotated

import pygit2
import typer

from reconciler.cli.app import app
from reconciler.cli.kept_plans import DiskKeptPlans, ObservedView
from reconciler.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    AllowedSignersOption,
    PlanFormat,
    RepoOption,
    SelectorOption,
    bulk_load,
    nothing_selected,
    parse_selector_option,
    signers_path,
)
from reconciler.cli.output import err, fail, write_text
from reconciler.cli.plan_changes import input_changes
from reconciler.desired.loader import (
    ENVIRONMENTS_DIR,
    ParseCache,
    RevisionError,
    definition_at,
    load_snapshot,
    load_tree,
    load_worktree,
    resolve_revision,
)
from reconciler.desired.models import SignaturePolicy
from reconciler.desired.repository import NotARepository, open_repository
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.desired.selector import Selector, select
from reconciler.desired.trust import (
    ALLOWED_SIGNERS_ENV,
    AllowedSigners,
    DesiredCommit,
    TrustSetupError,
    choose_desired,
    config_at,
    desired_revision,
)
from reconciler.domain import AnyEnvironment, Lock
from reconciler.planner import plan_all
from reconciler.planner.report import (
    PlanReport,
    Verification,
    build_report,
    render_json,
    render_markdown,
    render_text,
)
from reconciler.store import GitStore, StoreError, is_stale
from reconciler.store.git import StateTree

__all__ = ["app"]

logger = logging.getLogger(__name__)


class PlanError(Exception):
    """Something the user must fix before a plan can be made (exit 1)."""


@app.command("plan")
def plan_command(
    *,
    repo: RepoOption = Path("."),
    rev: Annotated[
        str | None,
        typer.Option("--rev", help="The desired-state revision to plan (default: the desired branch)."),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option("--base", help="Pull-request view: what merging --rev over this revision changes."),
    ] = None,
    worktree: Annotated[
        bool, typer.Option("--worktree", help="Plan the files on disk, committed or not (not with --rev).")
    ] = False,
    output: Annotated[PlanFormat, typer.Option("--format", help="Output format.")] = PlanFormat.TEXT,
    detailed_exitcode: Annotated[
        bool,
        typer.Option("--detailed-exitcode", help="Exit 2 when reconciling would change something, else 0."),
    ] = False,
    allowed_signers: AllowedSignersOption = None,
    selector: SelectorOption = None,
) -> None:
    """Per environment: observed state, desired state, the transitions that would run and why."""
    chosen = parse_selector_option(selector)
    if worktree and rev is not None:
        raise fail("--rev and --worktree exclude each other", EXIT_USAGE)
    with bulk_load():
        try:
            report = make_report(
                repo,
                rev=rev,
                base=base,
                worktree=worktree,
                now=datetime.now(UTC),
                allowed_signers=signers_path(allowed_signers),
                selector=chosen,
            )
        except PlanError as e:
            raise fail(str(e), EXIT_FAILURE) from e
        if chosen is not None and not report.environments:
            err.print(nothing_selected(chosen), markup=False)
        renderers = {PlanFormat.JSON: render_json, PlanFormat.MARKDOWN: render_markdown}
        write_text(renderers.get(output, render_text)(report))
    if report.has_errors:
        raise typer.Exit(EXIT_FAILURE)
    if detailed_exitcode and report.has_changes:
        raise typer.Exit(EXIT_USAGE)  # SPEC section 5: 2 = there are changes
    raise typer.Exit(EXIT_OK)


def make_report(
    repo_path: Path,
    *,
    rev: str | None,
    base: str | None,
    worktree: bool,
    now: datetime,
    allowed_signers: Path | None = None,
    selector: Selector | None = None,
) -> PlanReport:
    """Load, observe, plan, and (with ``base``) compare: every I/O of ``plan`` is here."""
    try:
        repo = open_repository(repo_path)
    except NotARepository as e:
        raise PlanError(str(e)) from e
    try:
        signers = AllowedSigners.load(allowed_signers, repo) if allowed_signers is not None else None
    except TrustSetupError as e:
        raise PlanError(str(e)) from e
    cache = ParseCache.kept_in(repo)
    if base is None:
        # A cold load's helper goes on to decide the plans of its half (decision 026).
        cache.share_next = _decider(repo, repo_path, cache, now)
    verification: Verification | None = None
    try:
        if worktree:
            if repo.workdir is None:
                raise PlanError(f"{repo_path}: a bare repository has no work tree to plan")
            snapshot = load_worktree(Path(repo.workdir), cache=cache)
        elif rev is None:
            # What apply and the daemon would act on: with signatures required, the newest verified commit.
            choice = choose_desired(repo, resolve_revision(repo, desired_revision(repo, signers)), signers)
            if choice.commit is None:
                raise PlanError(f"{choice.message}: nothing is acted on")
            snapshot = load_snapshot(repo, choice.commit, cache=cache)
            verification = _chosen(repo, choice, signers)
        else:
            snapshot = load_snapshot(repo, rev, cache=cache)
            verification = _named(repo, snapshot.commit or "", signers)
        before = load_snapshot(repo, base, cache=cache) if base is not None else None
    except RevisionError as e:
        raise PlanError(str(e)) from e
    merged: pygit2.Tree | None = None
    if before is not None and before.commit is not None and snapshot.commit is not None:
        # A pull request is planned as its merge: what the base gained since the branch left it stays.
        merged = _merge(
            repo, before.commit, snapshot.commit, rev=rev or "the desired branch", base_name=base or ""
        )
        snapshot = load_tree(repo, merged, snapshot.commit, cache=cache)
    try:
        return _plan_loaded(
            repo,
            repo_path,
            snapshot,
            before,
            merged,
            cache,
            now=now,
            verification=verification,
            selector=selector,
        )
    finally:
        cache.save()


def _plan_loaded(
    repo: pygit2.Repository,
    repo_path: Path,
    snapshot: DesiredSnapshot,
    before: DesiredSnapshot | None,
    merged: pygit2.Tree | None,
    cache: ParseCache,
    *,
    now: datetime,
    verification: Verification | None,
    selector: Selector | None,
) -> PlanReport:
    for loaded in (snapshot, before):
        refused = loaded.config_refused if loaded is not None else None
        if refused is not None:  # SPEC 2.4: nothing is planned with defaults in its place
            raise PlanError(refused)
    # Observed state lives where the configuration in force says: the base's, in a pull request.
    config = (before or snapshot).config
    state_ref = _state_ref(repo, config.state_ref, config.remote)
    tree = _observed(repo_path, state_ref)
    observed = ObservedView(tree)
    kept = DiskKeptPlans(cache.disk, tree, cache.helper_next) if cache.disk is not None else None
    cache.helper_next = None
    prune = config.prune
    stale, protected_before = _plan_inputs(repo, now)
    if kept is not None and cache.helpers:
        kept.share_with_helper(
            snapshot, observed, now=now, prune=prune, lock_stale=stale, protected_before=protected_before
        )
    plans = plan_all(
        snapshot,
        observed,
        now=now,
        prune=prune,
        lock_stale=stale,
        protected_before=protected_before,
        kept=kept,
    )
    if kept is not None:
        kept.finish()
    problems = snapshot.problems
    if selector is not None:
        keep = _selected(selector, snapshot, before)
        plans = [p for p in plans if p.name in keep]
        problems = tuple(p for p in problems if p.environment is None or p.environment in keep)
    why = input_changes(repo, plans, observed, snapshot, merged, cache=cache)
    if before is None:
        return build_report(
            plans,
            revision=snapshot.commit,
            state_ref=state_ref,
            generated_at=now,
            problems=problems,
            verification=verification,
            input_changes=why,
        )
    base_plans = plan_all(
        before, observed, now=now, prune=prune, lock_stale=stale, protected_before=protected_before
    )
    if selector is not None:
        base_plans = [p for p in base_plans if p.name in keep]
    return build_report(
        plans,
        revision=snapshot.commit,
        state_ref=state_ref,
        generated_at=now,
        problems=problems,
        base=before.commit,
        base_plans=base_plans,
        changed_files=_changed_environments(repo, before, snapshot, merged),
        verification=verification,
        input_changes=why,
    )


def _plan_inputs(
    repo: pygit2.Repository, now: datetime
) -> tuple[Callable[[Lock], bool], Callable[[AnyEnvironment], bool]]:
    """Whether a lock is stale, and whether a gone environment was last applied from a protected file."""

    def stale(lock: Lock) -> bool:
        return is_stale(lock, now)

    definitions = ParseCache()

    def protected_before(env: AnyEnvironment) -> bool:
        last = definition_at(repo, env.desired_commit, env.name, cache=definitions)
        return last is not None and last.spec.protected

    return stale, protected_before


def _decider(
    repo: pygit2.Repository, repo_path: Path, cache: ParseCache, now: datetime
) -> Callable[[DesiredSnapshot], bytes]:
    """What a load helper does with its half once loaded: decide its plans, as ``_plan_loaded`` would."""

    def decide(half: DesiredSnapshot) -> bytes:
        if cache.disk is None or half.config_refused is not None:
            return b""
        tree = _observed(repo_path, _state_ref(repo, half.config.state_ref, half.config.remote))
        stale, protected_before = _plan_inputs(repo, now)
        return DiskKeptPlans(cache.disk, tree).decide(
            half,
            ObservedView(tree),
            now=now,
            prune=half.config.prune,
            lock_stale=stale,
            protected_before=protected_before,
        )

    return decide


def _selected(selector: Selector, snapshot: DesiredSnapshot, before: DesiredSnapshot | None) -> set[str]:
    """Names whose labels match at the revision or, in a pull request, at its base (so that a change
    of labels still shows both sides)."""
    keep: set[str] = set()
    for loaded in (snapshot, before):
        if loaded is not None:
            labels = {name: env.labels for name, env in loaded.environments.items()}
            keep.update(select(labels, labels, selector))
    return keep


def _chosen(
    repo: pygit2.Repository, choice: DesiredCommit, signers: AllowedSigners | None
) -> Verification | None:
    """The note for the desired branch's plan: its verified commit, and the tip when that is not it."""
    if not choice.required or choice.commit is None or signers is None:
        return None
    signed = signers.verify(repo, choice.commit).detail
    if choice.tip_applied:
        return Verification(True, signed)
    tip_said = choice.tip_signature.detail if choice.tip_signature is not None else "not verified"
    n = choice.skipped
    return Verification(
        True,
        f"{signed}; the desired tip {choice.tip[:12]} is not applied ({tip_said}; "
        f"{n} commit{' above this one is' if n == 1 else 's above this one are'} not acted on)",
        skipped_tip=choice.tip,
    )


def _named(repo: pygit2.Repository, commit: str, signers: AllowedSigners | None) -> Verification | None:
    """The note for ``--rev``: planned whatever its signature, and said to be unverified when it is."""
    if signers is None:
        if config_at(repo, commit).verify.signatures is not SignaturePolicy.REQUIRED:
            return None
        return Verification(
            False,
            "reconciler.yaml requires signed commits and no allowed-signers file was given to check this one "
            f"(--allowed-signers PATH or {ALLOWED_SIGNERS_ENV})",
        )
    signature = signers.verify(repo, commit)
    if signature.trusted:
        return Verification(True, signature.detail)
    return Verification(
        False, f"{signature.detail}: reconcile acts only on commits signed by a key in {signers.path}"
    )


def _state_ref(repo: pygit2.Repository, ref: str, remote: str | None) -> str:
    """``ref``, or its remote-tracking copy when only that exists (a CI checkout of a pull request)."""
    if ref in repo.references or not ref.startswith("refs/heads/"):
        return ref
    tracking = f"refs/remotes/{remote or 'origin'}/{ref[len('refs/heads/') :]}"
    return tracking if tracking in repo.references else ref


def _observed(repo_path: Path, state_ref: str) -> StateTree:
    try:
        return GitStore(repo_path, state_ref).read_lazily()
    except StoreError as e:
        raise PlanError(f"cannot read observed state from {state_ref}: {e}") from e


def _merge(repo: pygit2.Repository, base: str, head: str, *, rev: str, base_name: str) -> pygit2.Tree:
    """The tree ``git merge`` of ``head`` into ``base`` would give; refused on a conflict."""
    base_commit = repo[base].peel(pygit2.Commit)
    head_commit = repo[head].peel(pygit2.Commit)
    ancestor = repo.merge_base(base_commit.id, head_commit.id)
    if ancestor is None:
        raise PlanError(f"{rev} and {base_name} share no history: there is no merge to plan")
    if ancestor == base_commit.id:
        return head_commit.tree  # the branch is up to date with its base
    if ancestor == head_commit.id:
        return base_commit.tree  # everything the branch has is in its base already
    index = repo.merge_trees(repo[ancestor].peel(pygit2.Tree), base_commit.tree, head_commit.tree)
    if index.conflicts is not None:
        paths = sorted({entry.path for entries in index.conflicts for entry in entries if entry is not None})
        raise PlanError(
            f"{rev} does not merge cleanly into {base_name}: conflicts in {', '.join(paths)}; "
            f"merge {base_name} into the branch (or rebase it) and plan again"
        )
    tree = repo[index.write_tree(repo)]
    assert isinstance(tree, pygit2.Tree)
    return tree


def _changed_environments(
    repo: pygit2.Repository, before: DesiredSnapshot, after: DesiredSnapshot, merged: pygit2.Tree | None
) -> set[str]:
    """Names whose ``environments/<name>.yaml`` differs between the base and what is planned."""
    changed = set(before.names ^ after.names)
    assert before.commit is not None
    base_tree = repo[before.commit].peel(pygit2.Tree)
    if merged is not None:
        diff = base_tree.diff_to_tree(merged)
    elif after.commit is None:
        diff = base_tree.diff_to_workdir()
    else:
        diff = base_tree.diff_to_tree(repo[after.commit].peel(pygit2.Tree))
    for delta in diff.deltas:
        for path in (delta.old_file.path, delta.new_file.path):
            pure = PurePosixPath(path)
            if str(pure.parent) == ENVIRONMENTS_DIR and pure.suffix == ".yaml":
                changed.add(pure.stem)
    return changed
