"""Phase hashes (SPEC section 3, Planning): what a completed phase was built from.

A phase's hash covers its merged steps, the vars those steps can see, and the
git object ids of every repository path they reference. So editing
``infra/vm/main.tf`` changes the provision hash and nothing else, and a phase
whose inputs did not change is not run again. Secrets enter as
``{fromEnv: NAME}``, never as their value. See docs/decisions/004-desired-state-loading.md.
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import shlex
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel

from reconciler.desired.models import AnsibleStep, ShellStep, Step, TofuStep
from reconciler.desired.sources import check_repo_path, normalize
from reconciler.desired.templating import is_template, referenced_vars

#: Directories next to a playbook that ansible reads implicitly.
_PLAYBOOK_SIBLINGS = ("roles", "group_vars", "host_vars", "templates", "files", "vars", "tasks", "handlers")
_NOT_A_PATH = set("$*?[]{}<>|;&=()`'\"")

#: ``exists(path)`` -> the git object id at a repository path, or ``None``.
ObjectIds = Callable[[str], str | None]


def plain(value: Any) -> Any:
    """JSON-ready form of vars and steps; a secret stays ``{fromEnv: NAME}``."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


_SCALARS = (str, int, float, bool, type(None))


def canonical_json(value: Any) -> str:
    # A flat mapping of scalars under string keys (most vars) is already plain: encode it as it is.
    if type(value) is not dict or not all(type(k) is str and type(v) in _SCALARS for k, v in value.items()):
        value = plain(value)
    return _CANONICAL.encode(value)


#: ``json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)``, built once.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def _run_words(run: str) -> list[str]:
    try:
        return shlex.split(run, comments=True)
    except ValueError:
        return run.split()


def _candidate(word: str, cwd: str) -> str | None:
    if not word or word.startswith("-") or any(c in _NOT_A_PATH for c in word):
        return None
    if check_repo_path(word) is not None:
        return None
    path = normalize(posixpath.join(cwd, word))
    if path == "." or path.startswith("../"):
        return None
    return path


def path_candidates(step: Step) -> list[tuple[str, bool]]:
    """The repository paths a step may read: ``(path, counts only when it exists)``.

    What ``referenced_paths`` keeps of them depends on the revision; this part
    does not, so the loader computes it once per step.
    """
    body = step.body
    paths: list[tuple[str, bool]] = []

    def add(value: str | None) -> None:
        if value is not None and not is_template(value) and check_repo_path(value) is None:
            paths.append((normalize(value), False))

    if isinstance(body, TofuStep):
        add(body.module)
    elif isinstance(body, AnsibleStep):
        add(body.playbook)
        if not is_template(body.playbook) and check_repo_path(body.playbook) is None:
            parent = posixpath.dirname(normalize(body.playbook))
            for sibling in _PLAYBOOK_SIBLINGS:
                paths.append((normalize(posixpath.join(parent, sibling)), True))
        if body.inventory is not None and "," not in body.inventory:
            add(body.inventory)
    elif isinstance(body, ShellStep):
        cwd: str = "."
        if body.cwd is not None and not is_template(body.cwd) and check_repo_path(body.cwd) is None:
            cwd = normalize(body.cwd)
            paths.append((cwd, False))
        for word in _run_words(body.run):
            word_path = _candidate(word, cwd)
            if word_path is not None:
                paths.append((word_path, True))
    return paths


def referenced_paths(step: Step, object_id: ObjectIds) -> list[str]:
    """Every repository path the step reads (only those that exist, for words of ``shell.run``)."""
    return [path for path, optional in path_candidates(step) if not optional or object_id(path) is not None]


def phase_vars(steps: Sequence[Step], vars: Mapping[str, Any]) -> dict[str, Any]:
    """The vars a phase's steps can see: all of them for shell steps, else those their templates read."""
    if any(isinstance(s.body, ShellStep) for s in steps):
        return dict(vars)
    names = referenced_vars(steps)
    if names is None:
        return dict(vars)
    return {k: v for k, v in vars.items() if k in names}


def phase_hash(steps_json: str, vars: Mapping[str, Any], paths: Iterable[tuple[str, str | None]]) -> str:
    """sha256 of the canonical JSON of a phase's inputs."""
    # The same bytes as canonical_json({"paths": ..., "steps": ..., "vars": ...}), without re-encoding steps.
    paths_json = canonical_json(dict(sorted(paths)))
    document = f'{{"paths":{paths_json},"steps":{steps_json or "[]"},"vars":{canonical_json(vars)}}}'
    return hashlib.sha256(document.encode()).hexdigest()


def hash_phase(steps: Sequence[Step], vars: Mapping[str, Any], object_id: ObjectIds) -> str:
    """The hash of one phase, computed from scratch (the loader caches the parts)."""
    paths = {p: object_id(p) for step in steps for p in referenced_paths(step, object_id)}
    return phase_hash(canonical_json(list(steps)), phase_vars(steps, vars), paths.items())
