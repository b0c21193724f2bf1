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

import logging
import posixpath
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

import pygit2
from pydantic import BaseModel

from reconciler.desired import hashing, validation, yamlio
from reconciler.desired.models import (
    NAME_PATTERN,
    AnsibleStep,
    BlueprintFile,
    ConfigFile,
    EnvironmentFile,
    ShellStep,
    Step,
    TofuStep,
)
from reconciler.desired.resolved import DesiredSnapshot, PhaseOrCheck, Problem, ResolvedEnvironment
from reconciler.desired.sources import (
    FileEntry,
    GitTreeSource,
    PathEscape,
    TreeSource,
    WorkTreeSource,
    check_repo_path,
)
from reconciler.desired.templating import is_template, template_issues
from reconciler.domain.states import Phase

logger = logging.getLogger(__name__)

ENVIRONMENTS_DIR = "environments"
BLUEPRINTS_DIR = "blueprints"
CONFIG_PATH = "reconciler.yaml"
_PHASES: tuple[PhaseOrCheck, ...] = (*Phase, "check")

M = TypeVar("M", bound=BaseModel)
Loc = tuple[str | int, ...]


class RevisionError(LookupError):
    """A revision that does not name a commit of the repository."""


@dataclass(frozen=True)
class _Parsed:
    """One file content, parsed (or refused). Problems carry no path: one blob may sit at several."""

    text: str | None
    model: BaseModel | None
    issues: tuple[tuple[int, int, str], ...] = ()


@dataclass(frozen=True)
class _Resolution:
    """An environment resolved against a blueprint, with the tree ids it depended on."""

    result: ResolvedEnvironment | tuple[Problem, ...]
    refs: tuple[tuple[str, str | None], ...]


@dataclass
class ParseCache:
    """Parsed files by blob id and resolved environments by their inputs, kept across loads.

    Safe to share between loads of the same repository in one thread.
    """

    parsed: dict[tuple[str, str], _Parsed] = field(default_factory=dict)
    resolved: dict[tuple[str, str, str | None], _Resolution] = field(default_factory=dict)
    #: Canonical JSON of a step list, keyed by the list's identity (the list is kept alive beside it).
    steps_json: dict[int, tuple[object, str]] = field(default_factory=dict)

    def parse(self, kind: str, blob_id: str, data: Callable[[], bytes], model: type[M]) -> _Parsed:
        key = (kind, blob_id)
        hit = self.parsed.get(key)
        if hit is None:
            hit = _parse(data(), model)
            self.parsed[key] = hit
        return hit

    def canonical_steps(self, steps: tuple[Step, ...], origin: object) -> str:
        key = id(origin)
        hit = self.steps_json.get(key)
        if hit is not None and hit[0] is origin:
            return hit[1]
        text = hashing.canonical_json(list(steps))
        self.steps_json[key] = (origin, text)
        return text


def _parse(data: bytes, model: type[M]) -> _Parsed:
    text = yamlio.decode(data)
    if isinstance(text, yamlio.YamlIssue):
        return _Parsed(None, None, ((text.line, text.col, text.message),))
    loaded = yamlio.load(text)
    if isinstance(loaded, yamlio.YamlIssue):
        return _Parsed(text, None, ((loaded.line, loaded.col, loaded.message),))
    result = validation.validate(model, loaded, text, "")
    if isinstance(result, list):
        return _Parsed(text, None, tuple((p.line, p.col, p.message) for p in result))
    return _Parsed(text, result)


def _problems(parsed: _Parsed, path: str, environment: str | None) -> tuple[Problem, ...]:
    return tuple(Problem(path, line, col, message, environment) for line, col, message in parsed.issues)


def _locate(parsed: _Parsed, path: str, loc: Loc, message: str, environment: str | None) -> Problem:
    line, col = 1, 1
    if parsed.text is not None:
        line, col, _ = yamlio.locate(parsed.text, loc)
    return Problem(path, line, col, message, environment)


# -- revisions -------------------------------------------------------------------------------------


def resolve_revision(repo: pygit2.Repository, rev: str) -> str:
    """The commit sha ``rev`` names (a branch, tag, sha or ``HEAD~2``)."""
    try:
        obj = repo.revparse_single(rev)
        commit = obj.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as e:
        raise RevisionError(f"{rev!r} does not name a commit in {repo.path}") from e
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


def load_worktree(path: Path, *, cache: ParseCache | None = None) -> DesiredSnapshot:
    """The desired state in the files on disk, committed or not (``validate``/``plan --worktree``)."""
    repo: pygit2.Repository | None
    try:
        repo = pygit2.Repository(str(path))
    except pygit2.GitError:
        repo = None
    return _load(WorkTreeSource(path, repo), None, cache or ParseCache())


def read_config(source: TreeSource, cache: ParseCache) -> tuple[ConfigFile, tuple[Problem, ...]]:
    entry = next((e for e in source.entries(".") if e.name == CONFIG_PATH), None)
    if entry is None:
        return ConfigFile(), ()
    parsed = cache.parse("config", entry.blob_id, lambda: source.read(CONFIG_PATH, entry), ConfigFile)
    if parsed.model is None:
        return ConfigFile(), _problems(parsed, CONFIG_PATH, None)
    assert isinstance(parsed.model, ConfigFile)
    return parsed.model, ()


@dataclass(frozen=True)
class _Blueprint:
    path: str
    blob_id: str
    parsed: _Parsed
    model: BlueprintFile | None


def _yaml_files(source: TreeSource, directory: str) -> Iterable[tuple[str, FileEntry]]:
    for entry in source.entries(directory):
        if entry.name.endswith(".yaml"):
            yield entry.name[: -len(".yaml")], entry


def _load(source: TreeSource, commit: str | None, cache: ParseCache) -> DesiredSnapshot:
    config, problems_list = read_config(source, cache)
    problems: list[Problem] = list(problems_list)

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
            problems.append(_name_mismatch(parsed, path, stem, model.metadata.name, None))
            model = None
        blueprints[stem] = _Blueprint(path, entry.blob_id, parsed, model)

    environments: dict[str, ResolvedEnvironment] = {}
    broken: dict[str, tuple[Problem, ...]] = {}
    texts: dict[str, _Parsed] = {}
    ids = source.object_id
    for stem, entry in _yaml_files(source, ENVIRONMENTS_DIR):
        path = f"{ENVIRONMENTS_DIR}/{entry.name}"
        if not _valid_name(stem):
            broken[stem] = (
                Problem(
                    path,
                    1,
                    1,
                    f"file name {stem!r} is not a valid environment name: 2-63 lowercase letters, "
                    "digits and '-', starting with a letter",
                    stem,
                ),
            )
            continue
        if entry.is_link:
            broken[stem] = (Problem(path, 1, 1, "an environment file may not be a symlink", stem),)
            continue
        parsed = cache.parse("environment", entry.blob_id, _reader(source, path, entry), EnvironmentFile)
        texts[stem] = parsed
        if not isinstance(parsed.model, EnvironmentFile):
            broken[stem] = _problems(parsed, path, stem)
            continue
        env = parsed.model
        if env.metadata.name != stem:
            broken[stem] = (_name_mismatch(parsed, path, stem, env.metadata.name, stem),)
            continue
        blueprint = blueprints.get(env.spec.blueprint) if env.spec.blueprint else None
        key = (stem, entry.blob_id, blueprint.blob_id if blueprint else env.spec.blueprint)
        hit = cache.resolved.get(key)
        if hit is None or not _refs_unchanged(hit.refs, ids):
            hit = _resolve(
                stem, path, entry.blob_id, parsed, env, blueprint, env.spec.blueprint, source, cache
            )
            cache.resolved[key] = hit
        if isinstance(hit.result, ResolvedEnvironment):
            environments[stem] = hit.result
        else:
            broken[stem] = hit.result

    for name, found in _dependency_problems(environments, broken, texts).items():
        environments.pop(name, None)
        broken[name] = broken.get(name, ()) + found

    for found in broken.values():
        problems.extend(found)
    problems = sorted(dict.fromkeys(problems), key=lambda p: (p.path, p.line, p.col, p.message))
    return DesiredSnapshot(
        commit=commit,
        config=config,
        environments=MappingProxyType(dict(sorted(environments.items()))),
        broken=MappingProxyType(dict(sorted(broken.items()))),
        problems=tuple(problems),
    )


def _reader(source: TreeSource, path: str, entry: FileEntry) -> Callable[[], bytes]:
    return lambda: source.read(path, entry)


def _valid_name(name: str) -> bool:
    import re

    return re.fullmatch(NAME_PATTERN, name) is not None


def _name_mismatch(parsed: _Parsed, path: str, stem: str, name: str, environment: str | None) -> Problem:
    return _locate(
        parsed,
        path,
        ("metadata", "name"),
        f"`metadata.name` is {name!r} but the file is {posixpath.basename(path)}; "
        f"the name must equal the file stem {stem!r}",
        environment,
    )


def _refs_unchanged(refs: Iterable[tuple[str, str | None]], ids: Callable[[str], str | None]) -> bool:
    try:
        return all(ids(path) == oid for path, oid in refs)
    except PathEscape:
        return False


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
    """Merge the blueprint, check paths and templates, and hash each phase."""
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
    bp = blueprint.model if blueprint else None

    # Each phase: (steps, the file and location it came from, the object whose identity keys the cache).
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
    merged_vars: dict[str, Any] = {**(bp.spec.vars if bp else {}), **spec.vars}

    problems: list[Problem] = []
    for phase, steps in phases.items():
        if not steps:
            continue
        origin_path, origin_parsed, _ = origins[phase]
        for i, step in enumerate(steps):
            base: Loc = ("spec", "phases", str(phase), i)
            for loc, message in _path_issues(step, source):
                problems.append(_locate(origin_parsed, origin_path, base + loc, message, name))
            for loc, message in template_issues(step, merged_vars):
                problems.append(_locate(origin_parsed, origin_path, base + loc, message, name))
            if step.reapply is not None and phase != "check":
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
        return _Resolution(tuple(problems), ())

    refs: dict[str, str | None] = {}
    hashes: dict[Phase, str] = {}
    for phase in Phase:
        steps = phases[phase]
        paths = {
            p: source.object_id(p) for step in steps for p in hashing.referenced_paths(step, source.object_id)
        }
        refs.update(paths)
        steps_json = cache.canonical_steps(steps, origins[phase][2]) if steps else "[]"
        hashes[phase] = hashing.phase_hash(steps_json, hashing.phase_vars(steps, merged_vars), paths.items())
    resolved = ResolvedEnvironment(
        name=name,
        path=path,
        spec=spec,
        vars=MappingProxyType(merged_vars),
        phases=MappingProxyType(phases),
        phase_hashes=MappingProxyType(hashes),
        blob_id=blob_id,
    )
    return _Resolution(resolved, tuple(sorted(refs.items())))


def _path_issues(step: Step, source: TreeSource) -> list[tuple[Loc, str]]:
    """Repository paths of a step that are absolute, escape with ``..`` or through a symlink."""
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
    issues: list[tuple[Loc, str]] = []
    for loc, value in fields:
        if value is None or is_template(value):
            continue
        where = validation.field_path(loc)
        why = check_repo_path(value)
        if why is None:
            try:
                source.object_id(value)
            except PathEscape as e:
                why = str(e)
        if why is not None:
            issues.append((loc, f"`{where}`: {why}; expected a path inside the repository"))
    return issues


def _dependency_problems(
    environments: Mapping[str, ResolvedEnvironment],
    broken: Mapping[str, tuple[Problem, ...]],
    texts: Mapping[str, _Parsed],
) -> dict[str, tuple[Problem, ...]]:
    """Unknown ``dependsOn`` names and cycles; each makes its environment broken."""
    known = set(environments) | set(broken)
    found: dict[str, list[Problem]] = {}
    for name, env in environments.items():
        for i, dep in enumerate(env.depends_on):
            if dep not in known:
                choices = ", ".join(sorted(known - {name})[:10]) or "none"
                found.setdefault(name, []).append(
                    _locate(
                        texts[name],
                        env.path,
                        ("spec", "dependsOn", i),
                        f"`spec.dependsOn[{i}]`: no environment named {dep!r}; "
                        f"expected the name of a file in environments/ (e.g. {choices})",
                        name,
                    )
                )
    # Cycles, by depth-first search with colours.
    colour: dict[str, int] = {}
    for start in environments:
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
