"""Commands of SPEC section 5 about the desired-state files: ``validate``, ``schema``, ``init``."""

from __future__ import annotations

import json
import stat
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

import pygit2
import typer

from reconciler.cli.app import app
from reconciler.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    FormatOption,
    OutputFormat,
    RepoOption,
    bulk_load,
)
from reconciler.cli.output import fail
from reconciler.desired.backends import backend_warnings
from reconciler.desired.loader import (
    ParseCache,
    RevisionError,
    default_revision,
    load_snapshot,
    load_worktree,
    misnamed_files,
)
from reconciler.desired.models import BlueprintFile, EnvironmentFile
from reconciler.desired.repository import NotARepository, open_repository
from reconciler.desired.resolved import DesiredSnapshot, Problem, one_line
from reconciler.desired.sources import GitTreeSource, WorkTreeSource
from reconciler.views import document

__all__ = ["app", "blueprint_schema", "environment_schema"]

#: Where ``init`` writes the JSON Schemas editors read (see the first line of each scaffolded file).
SCHEMA_DIR = ".reconciler"


def _open_repo(path: Path) -> pygit2.Repository:
    try:
        return open_repository(path)
    except NotARepository as e:
        raise fail(str(e), EXIT_FAILURE) from e


def _work_tree(path: Path) -> Path:
    """The work tree ``validate --worktree`` reads: the repository's top when ``path`` is in one.

    A bare repository has none (it used to read as an empty one: "ok: 0 environment(s)"); a
    directory outside git is read as it is.
    """
    if not path.is_dir():
        raise fail(
            f"{path}: no such directory; --repo takes a work tree or a directory inside one", EXIT_FAILURE
        )
    try:
        repository = open_repository(path)
    except NotARepository:
        return path
    if repository.workdir is None:
        raise fail(
            f"{path}: a bare repository has no work tree to validate; "
            "drop --worktree to validate its desired-state branch",
            EXIT_FAILURE,
        )
    return Path(repository.workdir)


@app.command()
def validate(
    repo: RepoOption = Path("."),
    rev: Annotated[
        str | None, typer.Option("--rev", help="Revision to check (default: the desired-state branch).")
    ] = None,
    worktree: Annotated[
        bool, typer.Option("--worktree", help="Check the files on disk, committed or not.")
    ] = False,
    output: FormatOption = OutputFormat.TEXT,
) -> None:
    """Check every environment, blueprint and config file; print each problem as path:line:col: message.

    Warnings (``path:line:col: warning: message``) do not change the exit code.
    """
    snapshot: DesiredSnapshot
    warnings: list[Problem]
    if worktree:
        if rev is not None:
            raise fail("--rev and --worktree exclude each other", EXIT_USAGE)
        top = _work_tree(repo)
        with bulk_load():
            snapshot = load_worktree(top)
        source = WorkTreeSource(top, None)
        problems = list(snapshot.problems) + misnamed_files(source)
        warnings = backend_warnings(source, snapshot)
    else:
        repository = _open_repo(repo)
        cache = ParseCache.kept_in(repository)
        try:
            with bulk_load():
                snapshot = load_snapshot(repository, rev or default_revision(repository), cache=cache)
            cache.save()
        except RevisionError as e:
            raise fail(str(e), EXIT_FAILURE) from e
        commit = repository[snapshot.commit or ""]
        assert isinstance(commit, pygit2.Commit)
        tree_source = GitTreeSource(repository, commit.tree)
        problems = list(snapshot.problems) + misnamed_files(tree_source)
        warnings = backend_warnings(tree_source, snapshot)
    if output is OutputFormat.JSON:
        rows = [
            {
                "path": p.path,
                "line": p.line,
                "col": p.col,
                "message": p.message,
                "environment": p.environment,
                "severity": severity,
            }
            for severity, found in (("error", problems), ("warning", warnings))
            for p in found
        ]
        typer.echo(
            json.dumps(
                document(
                    revision=snapshot.commit,
                    valid=not problems,
                    environments=len(snapshot.environments),
                    invalidEnvironments=sorted(snapshot.broken),
                    problems=rows,
                ),
                indent=2,
            )
        )
    else:
        for problem in problems:
            typer.echo(str(problem))
        for warning in warnings:
            typer.echo(one_line(f"{warning.path}:{warning.line}:{warning.col}: warning: {warning.message}"))
        where = snapshot.commit[:12] if snapshot.commit else "the work tree"
        warned = f"; {len(warnings)} warning(s)" if warnings else ""
        if problems:
            typer.echo(
                f"{len(problems)} problem(s) at {where}; "
                f"{len(snapshot.broken)} environment(s) will be left alone until fixed{warned}",
                err=True,
            )
        else:
            typer.echo(f"ok: {len(snapshot.environments)} environment(s) valid at {where}{warned}", err=True)
    raise typer.Exit(EXIT_FAILURE if problems else EXIT_OK)


def _schema(model: type[EnvironmentFile] | type[BlueprintFile], title: str) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode="validation")
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema, "title": title}


def environment_schema() -> dict[str, Any]:
    """JSON Schema of an environment file, by its YAML field names."""
    return _schema(EnvironmentFile, "reconciler Environment (environments/<name>.yaml)")


def blueprint_schema() -> dict[str, Any]:
    """JSON Schema of a blueprint file."""
    return _schema(BlueprintFile, "reconciler Blueprint (blueprints/<name>.yaml)")


@app.command()
def schema(
    kind: Annotated[str, typer.Option("--kind", help="environment (default) or blueprint.")] = "environment",
    repo: Annotated[
        Path | None, typer.Option("--repo", help="Accepted like every command's; the schema is the same.")
    ] = None,
) -> None:
    """Print the JSON Schema of an Environment file, for editors.

    Save it (``reconcile schema > .reconciler/environment.schema.json``) and put
    ``# yaml-language-server: $schema=../.reconciler/environment.schema.json``
    on the first line of each environment file: yaml-language-server (VS Code's
    YAML extension, Neovim, Helix) then completes and checks the fields.
    """
    if kind not in ("environment", "blueprint"):
        typer.echo(f"error: --kind {kind!r}; expected environment or blueprint", err=True)
        raise typer.Exit(EXIT_USAGE)
    document = environment_schema() if kind == "environment" else blueprint_schema()
    typer.echo(json.dumps(document, indent=2))


def _scaffold_files() -> list[tuple[str, Traversable]]:
    """(repository path, packaged file) for every file of the scaffold."""
    root = resources.files("reconciler") / "scaffold"
    out: list[tuple[str, Traversable]] = []

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.name == "__pycache__":
                continue
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            else:
                # Packaged without the dot so that packaging never drops it.
                name = ".gitignore" if prefix == "" and child.name == "gitignore" else child.name
                out.append((f"{prefix}{name}", child))

    walk(root, "")
    return out


@app.command()
def init(
    directory: Annotated[Path | None, typer.Argument(help="Where to create the repository.")] = None,
    repo: Annotated[Path | None, typer.Option("--repo", help="The same as DIR.")] = None,
) -> None:
    """Scaffold a GitOps repository: reconciler.yaml, an example environment and blueprint, .gitignore."""
    if directory is not None and repo is not None and directory != repo:
        typer.echo(f"error: DIR ({directory}) and --repo ({repo}) disagree; give one", err=True)
        raise typer.Exit(EXIT_USAGE)
    directory = directory or repo or Path(".")
    files: dict[str, bytes] = {path: item.read_bytes() for path, item in _scaffold_files()}
    files[f"{SCHEMA_DIR}/environment.schema.json"] = (
        json.dumps(environment_schema(), indent=2) + "\n"
    ).encode()
    files[f"{SCHEMA_DIR}/blueprint.schema.json"] = (json.dumps(blueprint_schema(), indent=2) + "\n").encode()
    existing = sorted(
        path for path in files if (directory / path).exists() or (directory / path).is_symlink()
    )
    if existing:
        typer.echo(
            f"error: refusing to overwrite existing files in {directory}: {', '.join(existing)}", err=True
        )
        raise typer.Exit(EXIT_FAILURE)
    directory.mkdir(parents=True, exist_ok=True)
    if pygit2.discover_repository(str(directory)) is None:
        pygit2.init_repository(str(directory), initial_head="main")
        typer.echo(f"initialized an empty git repository in {directory}")
    for path, data in files.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if path.endswith(".sh"):
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        typer.echo(f"created {path}")
    typer.echo(
        "next: git add -A && git commit -m 'reconciler: scaffold' && reconcile validate && reconcile plan"
    )
