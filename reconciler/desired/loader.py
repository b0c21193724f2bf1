"""Loading one revision of the GitOps repository into a ``DesiredSnapshot``.

Files are read from a commit's tree with pygit2, never from a checkout (or
from disk for ``--worktree``). Each distinct file content is parsed once
(``ParseCache``, keyed by blob id), and an environment is resolved again only
when its file, its blueprint or a path its steps reference changed, so a
commit touching one file of ten thousand costs one parse. A bad file is that
environment's problem alone: it lands in ``DesiredSnapshot.broken`` and every
other environment loads.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import posixpath
import re
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pygit2
from pydantic import BaseModel

from reconciler.desired import hashing, helper, validation, yamlio
from reconciler.desired.models import (
    NAME_PATTERN,
    AnsibleStep,
    BlueprintFile,
    ConfigFile,
    EnvironmentFile,
    EnvironmentSpec,
    ShellStep,
    Step,
    TofuStep,
    state_ref_refusal,
)
from reconciler.desired.plancache import HelperFacts, PlanCache
from reconciler.desired.resolved import (
    DeferredEnvironment,
    DesiredSnapshot,
    PhaseOrCheck,
    Problem,
    ResolvedEnvironment,
)
from reconciler.desired.sources import (
    FileEntry,
    GitTreeSource,
    PathEscape,
    TreeSource,
    WorkTreeSource,
    check_repo_path,
)
from reconciler.desired.templating import is_template, issues_of, step_templates, vars_of
from reconciler.domain.states import Phase

logger = logging.getLogger(__name__)

ENVIRONMENTS_DIR = "environments"
BLUEPRINTS_DIR = "blueprints"
CONFIG_PATH = "reconciler.yaml"
_PHASES: tuple[PhaseOrCheck, ...] = (*Phase, "check")
_PHASE_NAMED = {str(phase): phase for phase in Phase}

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class RevisionError(LookupError):
    """A revision that does not name a commit of the repository."""


@dataclass(frozen=True, slots=True)
class _Parsed:
    """One file content, parsed (or refused). Problems carry no path: one blob may sit at several."""

    text: str | None
    model: BaseModel | None
    issues: tuple[tuple[int, int, str], ...] = ()
    #: The file's bytes, when ``text`` was not kept (a document from the plan cache): read to locate.
    read: Callable[[], bytes] | None = field(default=None, compare=False, repr=False)

    def source(self) -> str | None:
        """The file's text, to place a problem at a line and column."""
        if self.text is not None or self.read is None:
            return self.text
        text = yamlio.decode(self.read())
        return text if isinstance(text, str) else None


@dataclass(frozen=True, slots=True)
class _Resolution:
    """An environment resolved against a blueprint, with the tree ids it depended on."""

    result: ResolvedEnvironment | tuple[Problem, ...]
    refs: tuple[tuple[str, str | None], ...]


@dataclass(frozen=True)
class _StepInfo:
    """What the loader checks and hashes of one step that does not depend on the revision."""

    #: Repository path fields: (where, value, why it is refused whatever the tree).
    path_fields: tuple[tuple[Loc, str, str | None], ...]
    templates: tuple[tuple[Loc, Any], ...]
    #: Paths the step may read: (path, counts only when it exists).
    candidates: tuple[tuple[str, bool], ...]
    is_shell: bool
    reapply: bool


def _step_info(step: Step) -> _StepInfo:
    body = step.body
    fields: list[tuple[Loc, str | None]] = []
    if isinstance(body, ShellStep):
        fields.append((("shell", "cwd"), body.cwd))
    elif isinstance(body, TofuStep):
        fields.append((("tofu", "module"), body.module))
    elif isinstance(body, AnsibleStep):
        fields.append((("ansible", "playbook"), body.playbook))
        if body.inventory is not None and "," not in body.inventory:
            fields.append((("ansible", "inventory"), body.inventory))
    path_fields = tuple(
        (loc, value, check_repo_path(value))
        for loc, value in fields
        if value is not None and not is_template(value)
    )
    return _StepInfo(
        path_fields=path_fields,
        templates=step_templates(step),
        candidates=tuple(hashing.path_candidates(step)),
        is_shell=isinstance(body, ShellStep),
        reapply=step.reapply is not None,
    )


@dataclass(frozen=True, slots=True)
class _EnvResult:
    """One environment file as the last load left it (before the ``dependsOn`` check)."""

    entry: FileEntry
    parsed: _Parsed | None
    #: The blueprint the file names, when it parsed.
    blueprint: str | None
    result: ResolvedEnvironment | tuple[Problem, ...]
    refs: tuple[tuple[str, str | None], ...]


@dataclass
class _LastLoad:
    """The previous load of one repository: enough to revisit only what a new revision changed."""

    origin: tuple[str, str]
    env_tree: str | None
    #: Blueprint file stems and their blob ids.
    blueprints: dict[str, str]
    #: Per environment stem, in sorted order.
    results: dict[str, _EnvResult]
    #: Every path some environment's resolution probed, with what it found then.
    ref_ids: dict[str, str | None]
    ref_users: dict[str, set[str]]
    blueprint_users: dict[str, set[str]]
    #: Whether the indexes describe ``results``: built by the first load that revisits
    #: a previous one (a one-shot command such as ``plan`` never needs them).
    indexed: bool = True
    #: The stems of valid environments that name others in ``dependsOn`` (an index too).
    depending: set[str] = field(default_factory=set)


@dataclass
class ParseCache:
    """Parsed files by blob id and resolved environments by their inputs, kept across loads.

    Safe to share between loads of the same repository in one thread.
    """

    parsed: dict[tuple[str, str], _Parsed] = field(default_factory=dict)
    resolved: dict[tuple[str, str, str | None], _Resolution] = field(default_factory=dict)
    #: Canonical JSON of a step list, keyed by the list's identity (the list is kept alive beside it).
    steps_json: dict[int, tuple[object, str]] = field(default_factory=dict)
    #: What a step is, independent of the revision, keyed by the step's identity (kept alive beside it).
    steps: dict[int, tuple[Step, _StepInfo]] = field(default_factory=dict)
    #: The previous load's per-environment results, so the next one revisits only what changed.
    last: _LastLoad | None = None
    #: What earlier processes learned (documents by blob id, phase hashes by their inputs), if kept.
    disk: PlanCache | None = None
    #: The source of the load in progress, and which sets of probed paths are unchanged in it.
    refs_checked: tuple[TreeSource, dict[tuple[tuple[str, str | None], ...], bool]] | None = None
    #: Whether a cold load of many files may fork a helper for half of them (``desired/helper.py``):
    #: only for one-shot commands with a plan cache, whose process has nothing else running.
    helpers: bool = False
    #: What the helper does with its half once it is loaded (``plan``: decide its plans), and sends.
    share_next: Callable[[DesiredSnapshot], bytes] | None = None
    #: The helper still to send what ``share_next`` made: whoever asked for it takes it from here.
    helper_next: helper.Helper | None = None

    def parse(self, kind: str, blob_id: str, data: Callable[[], bytes], model: type[M]) -> _Parsed:
        key = (kind, blob_id)
        hit = self.parsed.get(key)
        if hit is None:
            hit = self._from_disk(kind, blob_id, data, model)
        if hit is None:
            try:
                hit, document = _parse(data(), model)
            except Exception as e:  # one file's boundary: whatever it holds, it is refused alone
                hit, document = _Parsed(None, None, ((1, 1, _unexpected(e)),)), None
            if self.disk is not None and hit.model is not None:
                self.disk.keep_document(kind, blob_id, document)
        self.parsed[key] = hit
        return hit

    def _from_disk(
        self, kind: str, blob_id: str, data: Callable[[], bytes], model: type[M]
    ) -> _Parsed | None:
        """The file validated again from the document an earlier run parsed, if it was kept."""
        if self.disk is None:
            return None
        document = self.disk.document(kind, blob_id)
        if document is None:
            return None
        try:
            return _Parsed(None, model.model_validate(document), read=data)
        except Exception:  # the schema refuses it now, or the entry is damaged: parse the file
            self.disk.forget_document(kind, blob_id)
            return None

    @classmethod
    def kept_in(cls, repo: pygit2.Repository) -> ParseCache:
        """A cache that starts from, and with ``save`` leaves, the plan cache under ``repo``'s git dir."""
        return cls(disk=PlanCache.for_repository(repo.path), helpers=True)

    def save(self) -> None:
        """Leave what this run learned for the next process (a no-op without a plan cache)."""
        if self.disk is not None:
            self.disk.save()

    def step_info(self, step: Step) -> _StepInfo:
        hit = self.steps.get(id(step))
        if hit is not None and hit[0] is step:
            return hit[1]
        info = _step_info(step)
        self.steps[id(step)] = (step, info)
        return info

    def canonical_steps(self, steps: tuple[Step, ...], origin: object) -> str:
        key = id(origin)
        hit = self.steps_json.get(key)
        if hit is not None and hit[0] is origin:
            return hit[1]
        text = hashing.canonical_json(list(steps))
        self.steps_json[key] = (origin, text)
        return text


def _parse(data: bytes, model: type[M]) -> tuple[_Parsed, Any]:
    """The file parsed and validated, and the YAML document it held (``None`` when refused)."""
    text = yamlio.decode(data)
    if isinstance(text, yamlio.YamlIssue):
        return _Parsed(None, None, ((text.line, text.col, text.message),)), None
    loaded = yamlio.load(text)
    if isinstance(loaded, yamlio.YamlIssue):
        return _Parsed(text, None, ((loaded.line, loaded.col, loaded.message),)), None
    result = validation.validate(model, loaded, text, "")
    if isinstance(result, list):
        return _Parsed(text, None, tuple((p.line, p.col, p.message) for p in result)), None
    return _Parsed(text, result), loaded


def _unexpected(error: Exception) -> str:
    """The refusal of a file whose loading raised what nothing here expected (logged with its trace)."""
    logger.debug("unexpected error while loading a file", exc_info=error)
    what = str(error).splitlines()[0][:200] if str(error) else ""
    return (
        f"this file cannot be loaded ({type(error).__name__}{': ' + what if what else ''}); "
        "it is left alone until it changes: simplify the value at fault, and report it as a bug"
    )


def _problems(parsed: _Parsed, path: str, environment: str | None) -> tuple[Problem, ...]:
    return tuple(Problem(path, line, col, message, environment) for line, col, message in parsed.issues)


def _locate(parsed: _Parsed | None, path: str, loc: Loc, message: str, environment: str | None) -> Problem:
    line, col = 1, 1
    text = parsed.source() if parsed is not None else None
    if text is not None:
        line, col, _ = yamlio.locate(text, loc)
    return Problem(path, line, col, message, environment)


# -- revisions -------------------------------------------------------------------------------------


def resolve_revision(repo: pygit2.Repository, rev: str) -> str:
    """The commit sha ``rev`` names (a branch, tag, sha or ``HEAD~2``)."""
    try:
        obj = repo.revparse_single(rev)
        commit = obj.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as e:
        hint = ""
        if repo.head_is_unborn:
            hint = (
                "; nothing is committed yet: only committed files are reconciled "
                "(commit them, or use `validate --worktree` / `plan --worktree`)"
            )
        raise RevisionError(f"{rev!r} does not name a commit in {repo.path}{hint}") from e
    return str(commit.id)


def head_branch(repo: pygit2.Repository) -> str | None:
    """The branch HEAD names (``main``), even when that branch has no commit yet."""
    try:
        target = repo.references["HEAD"].target
    except KeyError:
        return None
    if isinstance(target, str) and target.startswith("refs/heads/"):
        return target[len("refs/heads/") :]
    return None


def desired_branch(repo: pygit2.Repository, config: ConfigFile | None = None) -> str | None:
    """The desired-state branch: ``branch`` of reconciler.yaml, else the branch HEAD names."""
    if config is not None and config.branch:
        return config.branch
    if config is None and not repo.head_is_unborn:
        # reconciler.yaml at HEAD decides, when it parses.
        source = GitTreeSource(repo, repo.head.peel(pygit2.Commit).tree)
        found = read_config(source, ParseCache())[0]
        if found.branch:
            return found.branch
    return head_branch(repo)


def default_revision(repo: pygit2.Repository) -> str:
    """What to load when the user names no revision: the desired branch, else ``HEAD``."""
    branch = desired_branch(repo)
    if branch is not None and f"refs/heads/{branch}" in repo.references:
        return f"refs/heads/{branch}"
    return "HEAD"


# -- loading ---------------------------------------------------------------------------------------


def load_snapshot(
    repo: pygit2.Repository, rev: str = "HEAD", *, cache: ParseCache | None = None
) -> DesiredSnapshot:
    """The desired state committed at ``rev`` (bare and non-bare repositories alike)."""
    sha = resolve_revision(repo, rev)
    commit = repo[sha]
    assert isinstance(commit, pygit2.Commit)
    return _load(GitTreeSource(repo, commit.tree), sha, cache or ParseCache())


def load_tree(
    repo: pygit2.Repository, tree: pygit2.Tree, label: str | None, *, cache: ParseCache | None = None
) -> DesiredSnapshot:
    """The desired state in ``tree``, one no commit holds yet (a pull request's merge), as ``label``."""
    return _load(GitTreeSource(repo, tree), label, cache or ParseCache())


def definition_at(
    repo: pygit2.Repository, commit: str | None, name: str, *, cache: ParseCache | None = None
) -> ResolvedEnvironment | None:
    """``name`` as it was declared at ``commit``: how to destroy an environment whose file is gone.

    ``None`` when there is no such commit (never applied, or garbage-collected) or no valid file in it.
    """
    if not commit:
        return None
    try:
        snapshot = load_snapshot(repo, commit, cache=cache or ParseCache())
    except (LookupError, ValueError, pygit2.GitError):
        return None
    return snapshot.environments.get(name)


def load_worktree(path: Path, *, cache: ParseCache | None = None) -> DesiredSnapshot:
    """The desired state in the files on disk, committed or not (``validate``/``plan --worktree``)."""
    repo: pygit2.Repository | None
    try:
        repo = pygit2.Repository(str(path))
    except pygit2.GitError:
        repo = None
    return _load(WorkTreeSource(path, repo), None, cache or ParseCache())


def read_config(source: TreeSource, cache: ParseCache) -> tuple[ConfigFile, tuple[Problem, ...]]:
    """reconciler.yaml (defaults when absent), and why it is refused: a refused one is refused as a whole."""
    entry = next((e for e in source.entries(".") if e.name == CONFIG_PATH), None)
    if entry is None:
        return ConfigFile(), ()
    parsed = cache.parse("config", entry.blob_id, lambda: source.read(CONFIG_PATH, entry), ConfigFile)
    if parsed.model is None:
        return ConfigFile(), _problems(parsed, CONFIG_PATH, None)
    assert isinstance(parsed.model, ConfigFile)
    config = parsed.model
    repo = source.repo if isinstance(source, GitTreeSource | WorkTreeSource) else None
    # The desired branch is the configured one, and HEAD's: state may be committed onto neither.
    why = state_ref_refusal(config.state_ref, config.branch)
    if why is None and repo is not None:
        why = state_ref_refusal(config.state_ref, head_branch(repo))
    if why is not None:
        problem = _locate(parsed, CONFIG_PATH, ("stateRef",), f"`stateRef`: {why}", None)
        return ConfigFile(), (problem,)
    return config, ()


@dataclass(frozen=True)
class _Blueprint:
    path: str
    blob_id: str
    parsed: _Parsed
    model: BlueprintFile | None
    #: ``_merge`` of an environment that declares no phase of its own: the blueprint's, made once.
    inherited: list[
        tuple[dict[PhaseOrCheck, tuple[Step, ...]], dict[PhaseOrCheck, tuple[str, _Parsed, object]]]
    ] = field(default_factory=list, compare=False, repr=False)
    #: ``_shape`` of those inherited phases in this load's tree, made once.
    shape: list[_Shape] = field(default_factory=list, compare=False, repr=False)


def misnamed_files(source: TreeSource) -> list[Problem]:
    """Files in ``environments/`` and ``blueprints/`` that are never read because they end in ``.yml``."""
    problems: list[Problem] = []
    for directory in (ENVIRONMENTS_DIR, BLUEPRINTS_DIR):
        for entry in source.entries(directory):
            if entry.name.endswith(".yml"):
                stem = entry.name[: -len(".yml")]
                problems.append(
                    Problem(
                        f"{directory}/{entry.name}",
                        1,
                        1,
                        f"this file is ignored: only `.yaml` files are read; rename it to {stem}.yaml",
                        stem if directory == ENVIRONMENTS_DIR else None,
                    )
                )
    return problems


def _yaml_files(source: TreeSource, directory: str) -> Iterable[tuple[str, FileEntry]]:
    for entry in source.entries(directory):
        if entry.name.endswith(".yaml"):
            yield entry.name[: -len(".yaml")], entry


def _origin(source: TreeSource) -> tuple[str, str] | None:
    if isinstance(source, GitTreeSource):
        return ("git", str(source.repo.path))
    if isinstance(source, WorkTreeSource):
        return ("worktree", str(source.root))
    return None


#: What a probe records for a path that leads outside the repository (never a git object id).
_ESCAPES = "escapes the repository"


def _probe(source: TreeSource, path: str) -> str | None:
    try:
        return source.object_id(path)
    except PathEscape:
        return _ESCAPES


def _load(source: TreeSource, commit: str | None, cache: ParseCache) -> DesiredSnapshot:
    try:
        config, config_problems = read_config(source, cache)
    except Exception as e:  # reconciler.yaml's boundary: refused as a whole, never the load's crash
        config, config_problems = ConfigFile(), (Problem(CONFIG_PATH, 1, 1, _unexpected(e)),)
    problems: list[Problem] = list(config_problems)

    blueprints: dict[str, _Blueprint] = {}
    for stem, entry in _yaml_files(source, BLUEPRINTS_DIR):
        path = f"{BLUEPRINTS_DIR}/{entry.name}"
        if entry.is_link:
            problems.append(
                Problem(path, 1, 1, "a blueprint file may not be a symlink; commit the file itself")
            )
            continue
        parsed = cache.parse("blueprint", entry.blob_id, _reader(source, path, entry), BlueprintFile)
        model = parsed.model if isinstance(parsed.model, BlueprintFile) else None
        problems.extend(_problems(parsed, path, None))
        if model is not None and model.metadata.name != stem:
            try:
                problems.append(_name_mismatch(parsed, path, stem, model.metadata.name, None))
            except Exception as e:  # this blueprint's boundary
                problems.append(Problem(path, 1, 1, _unexpected(e)))
            model = None
        blueprints[stem] = _Blueprint(path, entry.blob_id, parsed, model)

    origin = _origin(source)
    last = cache.last if cache.last is not None and cache.last.origin == origin else None
    env_tree = source.subtree_id(ENVIRONMENTS_DIR) if isinstance(source, GitTreeSource) else None
    blueprint_ids = {stem: bp.blob_id for stem, bp in blueprints.items()}

    # Which environment files to look at again, and their entries (None: gone).
    todo: dict[str, FileEntry | None] = {}
    if last is None or origin is None:
        last = _LastLoad(origin or ("", ""), None, {}, {}, {}, {}, {}, indexed=False)
        todo.update(_yaml_files(source, ENVIRONMENTS_DIR))
    else:
        if not last.indexed:
            for stem, outcome in last.results.items():
                _index(last, stem, outcome)
            last.indexed = True
        stems: set[str] = set()
        if isinstance(source, GitTreeSource):
            if env_tree != last.env_tree:
                if env_tree is None or last.env_tree is None:
                    stems.update(last.results)
                    stems.update(stem for stem, _ in _yaml_files(source, ENVIRONMENTS_DIR))
                else:
                    for name in source.changed_names(last.env_tree, env_tree):
                        if name.endswith(".yaml"):
                            stems.add(name[: -len(".yaml")])
            for stem in stems:
                todo[stem] = source.entry(ENVIRONMENTS_DIR, f"{stem}.yaml")
        else:
            current = dict(_yaml_files(source, ENVIRONMENTS_DIR))
            for stem, seen in current.items():
                before = last.results.get(stem)
                if before is None or before.entry != seen:
                    todo[stem] = seen
            for stem in last.results:
                if stem not in current:
                    todo[stem] = None
        # Environments whose blueprint changed, appeared or went away.
        for name in set(blueprint_ids) | set(last.blueprints):
            if blueprint_ids.get(name) != last.blueprints.get(name):
                for stem in last.blueprint_users.get(name, ()):
                    todo.setdefault(stem, last.results[stem].entry)
        # Environments referencing a path whose object id changed.
        for ref, oid in list(last.ref_ids.items()):
            if _probe(source, ref) != oid:
                for stem in last.ref_users.get(ref, ()):
                    todo.setdefault(stem, last.results[stem].entry)

    results = dict(last.results)
    added = False
    cache.last = None  # until the indexes below are consistent again
    assistant = _start_helper(todo, blueprints, source, cache, commit, config)
    for stem, file_entry in todo.items():
        if assistant is not None and stem in assistant.share:
            _receive(assistant, cache)  # its half is next: take what it learned (waiting if need be)
            if assistant.more:
                cache.helper_next = assistant
            assistant = None
        # Replaced in place, so every kept key keeps its (sorted) place: only an addition re-sorts.
        old = results.get(stem)
        if old is not None and last.indexed:
            _unindex(last, stem, old)
        if file_entry is None:
            results.pop(stem, None)
            continue
        try:
            new = _load_environment(stem, file_entry, blueprints, source, cache)
        except Exception as e:  # one file's boundary: whatever it holds, it is that environment's refusal
            path = f"{ENVIRONMENTS_DIR}/{file_entry.name}"
            new = _EnvResult(file_entry, None, None, (Problem(path, 1, 1, _unexpected(e), stem),), ())
        added = added or old is None
        results[stem] = new
        if last.indexed:
            _index(last, stem, new)
    if added:
        results = dict(sorted(results.items()))
    last.results = results
    last.env_tree = env_tree
    last.blueprints = blueprint_ids
    cache.last = last if origin is not None else None

    environments: dict[str, ResolvedEnvironment] = {}
    broken: dict[str, tuple[Problem, ...]] = {}
    for stem, outcome in results.items():
        if isinstance(outcome.result, ResolvedEnvironment):
            environments[stem] = outcome.result
        else:
            broken[stem] = outcome.result

    depending = frozenset(last.depending) if last.indexed else None
    dependency = _dependency_problems(environments, broken, results, depending)
    if dependency:
        for name, more in dependency.items():
            environments.pop(name, None)
            broken[name] = broken.get(name, ()) + more
        broken = dict(sorted(broken.items()))

    for found in broken.values():
        problems.extend(found)
    problems = sorted(dict.fromkeys(problems), key=lambda p: (p.path, p.line, p.col, p.message))
    return DesiredSnapshot(
        commit=commit,
        config=config,
        environments=MappingProxyType(environments),
        broken=MappingProxyType(broken),
        problems=tuple(problems),
        config_problems=tuple(config_problems),
        depending=depending,
    )


def _start_helper(
    todo: Mapping[str, FileEntry | None],
    blueprints: Mapping[str, _Blueprint],
    source: TreeSource,
    cache: ParseCache,
    commit: str | None,
    config: ConfigFile,
) -> helper.Helper | None:
    """A forked child loading the second half of ``todo`` into the plan cache, for a cold load of many.

    With ``cache.share_next`` it then hands that half, as a snapshot of its own, to it (``plan``
    decides its plans there) and sends what it returns: a second message, for ``cache.helper_next``.
    """
    disk = cache.disk
    if disk is None or not cache.helpers or len(todo) < helper.MIN_FILES:
        return None
    stems = list(todo)
    share = stems[len(stems) // 2 :]
    unknown = sum(1 for stem in share if (entry := todo[stem]) is not None and not disk.knows(entry.blob_id))
    if unknown < helper.MIN_FILES // 2:  # a warm cache: the helper would only validate what is kept
        return None

    loaded: dict[str, _EnvResult] = {}

    def work() -> bytes:
        index: dict[str, HelperFacts] = {}
        for stem in share:
            entry = todo[stem]
            if entry is None:
                continue
            try:
                found = loaded[stem] = _load_environment(stem, entry, blueprints, source, cache)
            except Exception:  # noqa: S112 (the parent loads it, and reports why)
                continue
            env = found.result
            if isinstance(env, ResolvedEnvironment):
                bp = blueprints.get(found.blueprint) if found.blueprint else None
                index[stem] = (
                    entry.blob_id,
                    found.blueprint,
                    bp.blob_id if bp is not None else found.blueprint,
                    env.depends_on,
                    tuple((str(phase), value) for phase, value in env.phase_hashes.items()),
                    found.refs,
                )
        return disk.learned(index)

    share_next = cache.share_next

    def then() -> bytes:
        # Its half alone: ``dependsOn`` across the halves is checked by the parent, which
        # uses what this decides only where that is what it would decide itself.
        assert share_next is not None
        environments = {n: r.result for n, r in loaded.items() if isinstance(r.result, ResolvedEnvironment)}
        broken = {n: r.result for n, r in loaded.items() if not isinstance(r.result, ResolvedEnvironment)}
        half = DesiredSnapshot(
            commit=commit,
            config=config,
            environments=MappingProxyType(environments),
            broken=MappingProxyType(broken),
        )
        return share_next(half)

    return helper.start(share, work) if share_next is None else helper.start(share, work, then)


def _receive(assistant: helper.Helper, cache: ParseCache) -> None:
    payload = assistant.receive()
    if payload is not None and cache.disk is not None:
        cache.disk.merge(payload)


def _index(last: _LastLoad, stem: str, outcome: _EnvResult) -> None:
    if isinstance(outcome.result, ResolvedEnvironment) and outcome.result.depends_on:
        last.depending.add(stem)
    if outcome.blueprint is not None:
        last.blueprint_users.setdefault(outcome.blueprint, set()).add(stem)
    for ref, oid in outcome.refs:
        last.ref_ids[ref] = oid
        last.ref_users.setdefault(ref, set()).add(stem)


def _unindex(last: _LastLoad, stem: str, outcome: _EnvResult) -> None:
    last.depending.discard(stem)
    if outcome.blueprint is not None:
        users = last.blueprint_users.get(outcome.blueprint)
        if users is not None:
            users.discard(stem)
            if not users:
                del last.blueprint_users[outcome.blueprint]
    for ref, _ in outcome.refs:
        users = last.ref_users.get(ref)
        if users is not None:
            users.discard(stem)
            if not users:
                del last.ref_users[ref]
                last.ref_ids.pop(ref, None)


def _load_environment(
    stem: str, entry: FileEntry, blueprints: Mapping[str, _Blueprint], source: TreeSource, cache: ParseCache
) -> _EnvResult:
    """One environment file, parsed and resolved (or refused)."""
    path = f"{ENVIRONMENTS_DIR}/{entry.name}"
    if not _valid_name(stem):
        problem = Problem(
            path,
            1,
            1,
            f"file name {stem!r} is not a valid environment name: 2-63 lowercase letters, "
            "digits and '-', starting with a letter",
            stem,
        )
        return _EnvResult(entry, None, None, (problem,), ())
    if entry.is_link:
        return _EnvResult(
            entry, None, None, (Problem(path, 1, 1, "an environment file may not be a symlink", stem),), ()
        )
    deferred = _deferred(stem, path, entry, blueprints, source, cache)
    if deferred is not None:
        return deferred
    parsed = cache.parse("environment", entry.blob_id, _reader(source, path, entry), EnvironmentFile)
    if not isinstance(parsed.model, EnvironmentFile):
        return _EnvResult(entry, parsed, None, _problems(parsed, path, stem), ())
    env = parsed.model
    # A wrong name is reported with everything else wrong in the file, not alone (issue 15): the
    # steps are still resolved under the file's stem, and ``dependsOn`` is checked after the load.
    mismatch = None
    if env.metadata.name != stem:
        mismatch = _name_mismatch(parsed, path, stem, env.metadata.name, stem)
    name = env.spec.blueprint
    blueprint = blueprints.get(name) if name else None
    key = (stem, entry.blob_id, blueprint.blob_id if blueprint else name)
    hit = cache.resolved.get(key)
    if hit is None or not _refs_unchanged(hit.refs, source, cache):
        hit = _resolve_from_disk(stem, path, entry.blob_id, parsed, env, blueprint, source, cache)
    if hit is None:
        hit = _resolve(stem, path, entry.blob_id, parsed, env, blueprint, name, source, cache)
        if cache.disk is not None and isinstance(hit.result, ResolvedEnvironment):
            hashes = tuple((str(phase), value) for phase, value in hit.result.phase_hashes.items())
            cache.disk.keep_resolution(stem, entry.blob_id, key[2], (hashes, hit.refs))
    cache.resolved[key] = hit
    if mismatch is not None:
        more = hit.result if isinstance(hit.result, tuple) else ()
        return _EnvResult(entry, parsed, name, (mismatch, *more), hit.refs)
    return _EnvResult(entry, parsed, name, hit.result, hit.refs)


def _deferred(
    stem: str,
    path: str,
    entry: FileEntry,
    blueprints: Mapping[str, _Blueprint],
    source: TreeSource,
    cache: ParseCache,
) -> _EnvResult | None:
    """The environment from what the plan cache kept for this very file, its schema run only on use.

    Only for the common case: a document whose ``metadata.name`` is its stem, whose
    blueprint (if any) is valid, whose resolution was kept for the same blueprint blob and
    whose every probed path still has the id it had. Anything else goes the way of a file
    read (and validated) now. The document was validated by the same code when it was kept
    (the cache is keyed by the code's fingerprint), so the values read here without the
    schema are the ones it gives, and building it later cannot fail but on a damaged cache.
    """
    disk = cache.disk
    if disk is not None and stem in disk.helper_index:
        helped = _helped(stem, path, entry, blueprints, disk.helper_index[stem], source, cache)
        if helped is not None:
            return helped
    document = disk.document("environment", entry.blob_id) if disk is not None else None
    if type(document) is not dict or disk is None:
        return None
    metadata, spec = document.get("metadata"), document.get("spec")
    if type(metadata) is not dict or type(spec) is not dict or metadata.get("name") != stem:
        return None
    name = spec.get("blueprint")
    depends = spec.get("dependsOn", ())
    if depends and (type(depends) is not list or not all(type(dep) is str for dep in depends)):
        return None
    if (name is not None and type(name) is not str) or "depends_on" in spec:
        return None
    blueprint = blueprints.get(name) if name else None
    if name and (blueprint is None or blueprint.model is None):
        return None
    kept = _kept_hashes(stem, entry.blob_id, blueprint.blob_id if blueprint else name, source, cache)
    if kept is None:
        return None
    hashes, refs = MappingProxyType(kept[0]), kept[1]
    read = _reader(source, path, entry)

    def build() -> ResolvedEnvironment:
        try:
            env = EnvironmentFile.model_validate(document)
        except Exception as e:
            raise RuntimeError(
                f"{path}: the plan cache's copy of this file no longer passes its schema; "
                f"remove {disk.path} (it is only a cache) and run again"
            ) from e
        return _built(stem, path, entry, env, blueprint, hashes, read)

    return _deferred_result(stem, path, entry, name, hashes, tuple(depends), tuple(refs), build, read)


def _helped(
    stem: str,
    path: str,
    entry: FileEntry,
    blueprints: Mapping[str, _Blueprint],
    facts: HelperFacts,
    source: TreeSource,
    cache: ParseCache,
) -> _EnvResult | None:
    """An environment of the load helper's half, deferred from what it sent (decision 031).

    The helper loaded this very blob against these very blueprints in the same tree, so its
    phase hashes hold; the document, needed only if the environment is built, is read from
    the helper's section then.
    """
    try:
        blob_id, name, blueprint_key, depends, hashes_sent, refs = facts
        if blob_id != entry.blob_id:
            return None
        blueprint = blueprints.get(name) if name else None
        if name and (blueprint is None or blueprint.model is None or blueprint.blob_id != blueprint_key):
            return None
        hashes = MappingProxyType({_PHASE_NAMED[phase]: value for phase, value in hashes_sent})
        depends_on = tuple(depends)
    except Exception:  # a damaged hand-over: the file is loaded here
        return None
    disk = cache.disk
    assert disk is not None
    read = _reader(source, path, entry)

    def build() -> ResolvedEnvironment:
        document = disk.document("environment", entry.blob_id)
        env = EnvironmentFile.model_validate(document) if document is not None else None
        if env is None:
            parsed, _ = _parse(read(), EnvironmentFile)
            env = parsed.model if isinstance(parsed.model, EnvironmentFile) else None
        if env is None:
            raise RuntimeError(f"{path}: the load helper said this file was valid, and it no longer loads so")
        return _built(stem, path, entry, env, blueprint, hashes, read)

    return _deferred_result(stem, path, entry, name, hashes, depends_on, tuple(refs), build, read)


def _built(
    stem: str,
    path: str,
    entry: FileEntry,
    env: EnvironmentFile,
    blueprint: _Blueprint | None,
    hashes: Mapping[Phase, str],
    read: Callable[[], bytes],
) -> ResolvedEnvironment:
    """A deferred environment, built: its blueprint merged in, with the phase hashes it was deferred with."""
    phases, _, merged_vars = _merge(path, _Parsed(None, env, read=read), env, blueprint)
    return ResolvedEnvironment(
        name=stem,
        path=path,
        spec=env.spec,
        vars=MappingProxyType(merged_vars),
        phases=MappingProxyType(phases),
        phase_hashes=hashes,
        blob_id=entry.blob_id,
        labels=MappingProxyType(dict(env.metadata.labels)),
    )


def _deferred_result(
    stem: str,
    path: str,
    entry: FileEntry,
    blueprint: str | None,
    hashes: Mapping[Phase, str],
    depends_on: tuple[str, ...],
    refs: tuple[tuple[str, str | None], ...],
    build: Callable[[], ResolvedEnvironment],
    read: Callable[[], bytes],
) -> _EnvResult:
    deferred = DeferredEnvironment(
        name=stem, path=path, blob_id=entry.blob_id, phase_hashes=hashes, depends_on=depends_on, build=build
    )
    return _EnvResult(entry, _Parsed(None, None, read=read), blueprint, deferred, refs)


def _kept_hashes(
    stem: str, blob_id: str, blueprint: str | None, source: TreeSource, cache: ParseCache
) -> tuple[dict[Phase, str], tuple[tuple[str, str | None], ...]] | None:
    """The phase hashes an earlier run kept for these inputs, if every path they probed is unchanged."""
    kept = cache.disk.resolution(stem, blob_id, blueprint) if cache.disk is not None else None
    if kept is None:
        return None
    try:
        hashes_kept, refs = kept
        if not _refs_unchanged(refs, source, cache):
            return None
        return {_PHASE_NAMED[phase]: value for phase, value in hashes_kept}, tuple(refs)
    except Exception:  # a damaged entry: the file is loaded as if nothing were kept
        return None


def _resolve_from_disk(
    stem: str,
    path: str,
    blob_id: str,
    parsed: _Parsed,
    env: EnvironmentFile,
    blueprint: _Blueprint | None,
    source: TreeSource,
    cache: ParseCache,
) -> _Resolution | None:
    """The environment rebuilt from the phase hashes an earlier run computed from the same inputs.

    Only resolutions without a problem are kept, and one is used only when every
    path it probed still has the object id it had, as for ``cache.resolved``.
    """
    if cache.disk is None or (env.spec.blueprint and (blueprint is None or blueprint.model is None)):
        return None
    kept = _kept_hashes(stem, blob_id, blueprint.blob_id if blueprint else env.spec.blueprint, source, cache)
    if kept is None:
        return None
    hashes, refs = kept
    try:
        phases, _, merged_vars = _merge(path, parsed, env, blueprint)
    except Exception:  # a damaged entry: resolve from scratch
        return None
    resolved = ResolvedEnvironment(
        name=stem,
        path=path,
        spec=env.spec,
        vars=MappingProxyType(merged_vars),
        phases=MappingProxyType(phases),
        phase_hashes=MappingProxyType(hashes),
        blob_id=blob_id,
        labels=MappingProxyType(dict(env.metadata.labels)),
    )
    return _Resolution(resolved, tuple(refs))


def _reader(source: TreeSource, path: str, entry: FileEntry) -> Callable[[], bytes]:
    return lambda: source.read(path, entry)


_NAME = re.compile(NAME_PATTERN)


def _valid_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def _name_mismatch(parsed: _Parsed, path: str, stem: str, name: str, environment: str | None) -> Problem:
    return _locate(
        parsed,
        path,
        ("metadata", "name"),
        f"`metadata.name` is {name!r} but the file is {posixpath.basename(path)}; "
        f"the name must equal the file stem {stem!r}",
        environment,
    )


def _refs_unchanged(refs: tuple[tuple[str, str | None], ...], source: TreeSource, cache: ParseCache) -> bool:
    """Whether every path still has the object id recorded (asked once per distinct set and source)."""
    memo = cache.refs_checked
    if memo is None or memo[0] is not source:
        memo = cache.refs_checked = (source, {})
    known = memo[1].get(refs)
    if known is None:
        known = memo[1][refs] = all(_probe(source, path) == oid for path, oid in refs)
    return known


def _resolve(
    name: str,
    path: str,
    blob_id: str,
    parsed: _Parsed,
    env: EnvironmentFile,
    blueprint: _Blueprint | None,
    blueprint_name: str | None,
    source: TreeSource,
    cache: ParseCache,
) -> _Resolution:
    """Merge the blueprint, check paths and templates, and hash each phase.

    The resolution's ``refs`` are every path probed in the tree (found, missing
    or escaping), so a cached one is reused only when all of them are unchanged.
    """
    spec = env.spec
    if blueprint_name is not None and (blueprint is None or blueprint.model is None):
        why = "does not exist" if blueprint is None else f"is invalid (see {blueprint.path})"
        known = f"blueprints/{blueprint_name}.yaml"
        problem = _locate(
            parsed,
            path,
            ("spec", "blueprint"),
            f"`spec.blueprint`: {blueprint_name!r} {why}; expected a valid {known}",
            name,
        )
        return _Resolution((problem,), ())
    phases, origins, merged_vars = _merge(path, parsed, env, blueprint)
    shared = blueprint is not None and bool(blueprint.inherited) and blueprint.inherited[0][0] is phases
    if shared and blueprint is not None:
        if not blueprint.shape:
            blueprint.shape.append(_shape(phases, origins, source, cache))
        shape = blueprint.shape[0]
    else:
        shape = _shape(phases, origins, source, cache)

    problems: list[Problem] = []
    # What the templates say depends on the steps and on which vars are declared, not on their values.
    declared = tuple(merged_vars)
    template_issues = shape.template_issues.get(declared)
    if template_issues is None:
        template_issues = shape.template_issues[declared] = _template_issues(shape, merged_vars)
    if template_issues or shape.any_step_issue:
        for phase, steps in shape.steps.items():
            origin_path, origin_parsed, _ = origins[phase]
            for i, (info, path_issues) in enumerate(steps):
                base: Loc = ("spec", "phases", str(phase), i)
                for loc, message in path_issues:
                    problems.append(_locate(origin_parsed, origin_path, base + loc, message, name))
                for loc, message in template_issues.get((phase, i), ()):
                    problems.append(_locate(origin_parsed, origin_path, base + loc, message, name))
                if info.reapply and phase != "check":
                    problems.append(
                        _locate(
                            origin_parsed,
                            origin_path,
                            (*base, "reapply"),
                            f"`reapply` is for check steps only; remove it from the {phase} phase",
                            name,
                        )
                    )
    if problems:
        return _Resolution(tuple(problems), shape.field_refs)
    if shape.escape is not None:
        # A path the step's command names (or a playbook's neighbour) is a symlink
        # out of the repository: this environment's problem alone (SPEC section 7).
        phase, i, message = shape.escape
        origin_path, origin_parsed, _ = origins[phase]
        problem = _locate(origin_parsed, origin_path, ("spec", "phases", str(phase), i), message, name)
        return _Resolution((problem,), shape.refs)

    hashes: dict[Phase, str] = {}
    all_vars_json: str | None = None
    for phase, (steps_json, paths_json, names) in shape.hashed.items():
        if names is None or (len(names) >= len(merged_vars) and names.issuperset(merged_vars)):
            if all_vars_json is None:
                all_vars_json = hashing.canonical_json(merged_vars)
            hashes[phase] = _phase_hash(steps_json, all_vars_json, paths_json)
            continue
        read = {k: merged_vars[k] for k in names if k in merged_vars} if names else None
        vars_json = hashing.canonical_json(read) if read else "{}"
        # Phases that read only some vars are often the same for every user of a blueprint.
        memo = (phase, vars_json)
        found = shape.hashes.get(memo)
        if found is None:
            found = shape.hashes[memo] = _phase_hash(steps_json, vars_json, paths_json)
        hashes[phase] = found
    resolved = ResolvedEnvironment(
        name=name,
        path=path,
        spec=spec,
        vars=MappingProxyType(merged_vars),
        phases=MappingProxyType(phases),
        phase_hashes=MappingProxyType(hashes),
        blob_id=blob_id,
        labels=MappingProxyType(dict(env.metadata.labels)),
    )
    return _Resolution(resolved, shape.refs)


@dataclass(frozen=True, slots=True)
class _Shape:
    """What resolving computes from the merged phases and the tree alone, not from the vars.

    Environments that take all their phases from one blueprint share one per load (issue 11):
    the paths are probed, the steps encoded and the path problems found once for all of them.
    """

    #: Per phase with steps: each step's info and its path problems (relative to the step).
    steps: dict[PhaseOrCheck, list[tuple[_StepInfo, list[tuple[Loc, str]]]]]
    #: Per lifecycle phase: its steps' JSON, its paths' JSON, the vars it reads (``None``: all).
    hashed: dict[Phase, tuple[str, str, frozenset[str] | None]]
    #: The first path a step reads that escapes the repository: (phase, step, message).
    escape: tuple[Phase, int, str] | None
    #: Paths probed by the path checks alone (what a resolution refused by them depended on).
    field_refs: tuple[tuple[str, str | None], ...]
    #: Every path probed (what a resolution depended on).
    refs: tuple[tuple[str, str | None], ...]
    #: Whether a step has a problem whatever the vars (a path, ``reapply`` outside ``check``).
    any_step_issue: bool = False
    #: Phase hashes by (phase, vars JSON) for phases that read only some vars.
    hashes: dict[tuple[Phase, str], str] = field(default_factory=dict)
    #: The templates' problems by the names of the vars declared (in order): per (phase, step index).
    template_issues: dict[tuple[str, ...], dict[tuple[PhaseOrCheck, int], list[tuple[Loc, str]]]] = field(
        default_factory=dict
    )


def _template_issues(
    shape: _Shape, declared: Mapping[str, Any]
) -> dict[tuple[PhaseOrCheck, int], list[tuple[Loc, str]]]:
    """What each templated step of ``shape`` says with these vars declared (only the steps that say so)."""
    found: dict[tuple[PhaseOrCheck, int], list[tuple[Loc, str]]] = {}
    for phase, steps in shape.steps.items():
        for i, (info, _) in enumerate(steps):
            if info.templates:
                issues = issues_of(info.templates, declared)
                if issues:
                    found[phase, i] = issues
    return found


def _shape(
    phases: Mapping[PhaseOrCheck, tuple[Step, ...]],
    origins: Mapping[PhaseOrCheck, tuple[str, _Parsed, object]],
    source: TreeSource,
    cache: ParseCache,
) -> _Shape:
    probed: dict[str, str | None] = {}

    def object_id(p: str) -> str | None:
        try:
            oid = source.object_id(p)
        except PathEscape:
            probed[p] = _ESCAPES
            raise
        probed[p] = oid
        return oid

    steps: dict[PhaseOrCheck, list[tuple[_StepInfo, list[tuple[Loc, str]]]]] = {}
    infos: dict[PhaseOrCheck, list[_StepInfo]] = {}
    for phase, phase_steps in phases.items():
        infos[phase] = [cache.step_info(step) for step in phase_steps]
        if phase_steps:
            steps[phase] = [(info, _path_issues(info, object_id)) for info in infos[phase]]
    field_refs = tuple(sorted(probed.items()))

    hashed: dict[Phase, tuple[str, str, frozenset[str] | None]] = {}
    escape: tuple[Phase, int, str] | None = None
    for phase in Phase:
        paths: dict[str, str | None] = {}
        for i, info in enumerate(infos[phase]):
            for p, optional in info.candidates:
                try:
                    oid = object_id(p)
                except PathEscape as e:
                    escape = (phase, i, f"`phases.{phase}[{i}]`: {e}; expected a path inside the repository")
                    break
                if not optional or oid is not None:
                    paths[p] = oid
            if escape is not None:
                break
        if escape is not None:
            break
        phase_steps = phases[phase]
        steps_json = cache.canonical_steps(phase_steps, origins[phase][2]) if phase_steps else "[]"
        if any(info.is_shell for info in infos[phase]):
            names = None
        else:
            names = vars_of([info.templates for info in infos[phase]])
        hashed[phase] = (steps_json, _paths_json(tuple(sorted(paths.items()))), names)
    any_step_issue = any(
        path_issues or (info.reapply and phase != "check")
        for phase, phase_steps in steps.items()
        for info, path_issues in phase_steps
    )
    return _Shape(steps, hashed, escape, field_refs, tuple(sorted(probed.items())), any_step_issue)


def _merge(
    path: str, parsed: _Parsed, env: EnvironmentFile, blueprint: _Blueprint | None
) -> tuple[
    dict[PhaseOrCheck, tuple[Step, ...]], dict[PhaseOrCheck, tuple[str, _Parsed, object]], dict[str, Any]
]:
    """The environment's phases over its blueprint's (with where each came from), and the merged vars.

    Each origin is (the file, its parse, the object whose identity keys the steps' JSON).
    """
    spec = env.spec
    bp = blueprint.model if blueprint else None
    if bp is not None and blueprint is not None and not spec.phases.model_fields_set:
        # Most environments only name a blueprint: its phases, merged once per load and shared.
        if not blueprint.inherited:
            blueprint.inherited.append(_merge_phases(path, parsed, spec, blueprint, bp))
        phases, origins = blueprint.inherited[0]
    else:
        phases, origins = _merge_phases(path, parsed, spec, blueprint, bp)
    merged_vars: dict[str, Any] = {**(bp.spec.vars if bp else {}), **spec.vars}
    return phases, origins, merged_vars


def _merge_phases(
    path: str, parsed: _Parsed, spec: EnvironmentSpec, blueprint: _Blueprint | None, bp: BlueprintFile | None
) -> tuple[dict[PhaseOrCheck, tuple[Step, ...]], dict[PhaseOrCheck, tuple[str, _Parsed, object]]]:
    phases: dict[PhaseOrCheck, tuple[Step, ...]] = {}
    origins: dict[PhaseOrCheck, tuple[str, _Parsed, object]] = {}
    for phase in _PHASES:
        own = spec.phases.get(phase)
        inherited = bp.spec.phases.get(phase) if bp else None
        if own is not None:
            phases[phase] = tuple(own)
            origins[phase] = (path, parsed, own)
        elif inherited is not None and blueprint is not None:
            phases[phase] = tuple(inherited)
            origins[phase] = (blueprint.path, blueprint.parsed, inherited)
        else:
            phases[phase] = ()
    return phases, origins


def _phase_hash(steps_json: str, vars_json: str, paths_json: str) -> str:
    """``hashing.phase_hash`` with the steps, vars and paths already encoded."""
    document = f'{{"paths":{paths_json},"steps":{steps_json or "[]"},"vars":{vars_json}}}'
    return hashlib.sha256(document.encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _paths_json(paths: tuple[tuple[str, str | None], ...]) -> str:
    return hashing.canonical_json(dict(paths))


def _path_issues(info: _StepInfo, object_id: Callable[[str], str | None]) -> list[tuple[Loc, str]]:
    """Repository paths of a step that are absolute, escape with ``..`` or through a symlink."""
    issues: list[tuple[Loc, str]] = []
    for loc, value, static in info.path_fields:
        why = static
        if why is None:
            try:
                object_id(value)
            except PathEscape as e:
                why = str(e)
        if why is not None:
            where = validation.field_path(loc)
            issues.append((loc, f"`{where}`: {why}; expected a path inside the repository"))
    return issues


def _unknown_dependency(
    parsed: _Parsed | None, path: str, name: str, i: int, dep: str, known: Iterable[str]
) -> Problem:
    choices = ", ".join(sorted(set(known) - {name})[:10]) or "none"
    return _locate(
        parsed,
        path,
        ("spec", "dependsOn", i),
        f"`spec.dependsOn[{i}]`: no environment named {dep!r}; "
        f"expected the name of a file in environments/ (e.g. {choices})",
        name,
    )


class _Known(Collection[str]):
    """The environment names of a load (valid or not), without building a set of the fleet."""

    def __init__(self, *parts: Mapping[str, object]) -> None:
        self._parts = parts

    def __contains__(self, name: object) -> bool:
        return any(name in part for part in self._parts)

    def __iter__(self) -> Iterator[str]:
        for part in self._parts:
            yield from part

    def __len__(self) -> int:
        return sum(len(part) for part in self._parts)


def _dependency_problems(
    environments: Mapping[str, ResolvedEnvironment],
    broken: Mapping[str, tuple[Problem, ...]],
    results: Mapping[str, _EnvResult],
    depending: frozenset[str] | None = None,
) -> dict[str, tuple[Problem, ...]]:
    """Unknown ``dependsOn`` names and cycles; each makes its environment broken.

    Only environments that depend on another are visited (the others can be in
    no cycle), so a repository of mostly independent environments costs little.
    """
    known = _Known(environments, broken)
    found: dict[str, list[Problem]] = {}
    # A file refused for another reason is checked too, so that all its problems come at once.
    for name in broken:
        outcome = results.get(name)
        parsed = outcome.parsed if outcome is not None else None
        model = parsed.model if parsed is not None else None
        if outcome is None or not isinstance(model, EnvironmentFile):
            continue
        for i, dep in enumerate(model.spec.depends_on):
            if dep not in known:
                found.setdefault(name, []).append(
                    _unknown_dependency(
                        parsed, f"{ENVIRONMENTS_DIR}/{outcome.entry.name}", name, i, dep, known
                    )
                )
    if depending is None:
        dependent = [name for name, env in environments.items() if env.depends_on]
    else:  # the load's index: the same names, without a pass over the fleet
        dependent = sorted(name for name in depending if name in environments)
    if not dependent:
        return {name: tuple(dict.fromkeys(problems)) for name, problems in found.items()}
    texts = {name: results[name].parsed for name in dependent}
    for name in dependent:
        env = environments[name]
        for i, dep in enumerate(env.depends_on):
            if dep not in known:
                found.setdefault(name, []).append(
                    _unknown_dependency(texts[name], env.path, name, i, dep, known)
                )
    # Cycles, by depth-first search with colours.
    colour: dict[str, int] = {}
    for start in dependent:
        if colour.get(start):
            continue
        stack: list[tuple[str, int]] = [(start, 0)]
        trail: list[str] = []
        while stack:
            node, i = stack.pop()
            if i == 0:
                colour[node] = 1
                trail.append(node)
            deps = [d for d in environments[node].depends_on if d in environments]
            if i < len(deps):
                stack.append((node, i + 1))
                dep = deps[i]
                if colour.get(dep) == 1:
                    cycle = [*trail[trail.index(dep) :], dep]
                    for member in cycle[:-1]:
                        env = environments[member]
                        at = env.depends_on.index(cycle[cycle.index(member) + 1])
                        found.setdefault(member, []).append(
                            _locate(
                                texts[member],
                                env.path,
                                ("spec", "dependsOn", at),
                                f"`spec.dependsOn` forms a cycle: {' -> '.join(cycle)}; "
                                "remove one of these dependencies",
                                member,
                            )
                        )
                elif not colour.get(dep):
                    stack.append((dep, 0))
            else:
                colour[node] = 2
                trail.pop()
    return {name: tuple(dict.fromkeys(problems)) for name, problems in found.items()}
