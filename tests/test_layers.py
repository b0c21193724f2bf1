"""Layers import only downward (STYLE.md, docs/architecture.md).

domain <- desired, store, steps <- planner <- engine <- daemon, cli

Every import in every module counts, including those under ``TYPE_CHECKING``
and those inside functions: a cycle hidden in a function is still a cycle.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reconciler"

#: layer -> the other reconciler layers it may import (its own package is always allowed).
#: ``None`` means any layer; modules at the package root (``logfmt``, ``__init__``) are layers too.
ALLOWED: dict[str, set[str] | None] = {
    "domain": set(),
    "desired": {"domain"},
    "store": {"domain"},
    "steps": {"domain"},
    "planner": {"domain", "desired"},
    "notify": {"domain", "desired", "store"},
}
FORBIDDEN: dict[str, set[str]] = {
    "engine": {"cli", "daemon", "web"},
    "web": {"cli", "daemon"},
    "daemon": {"cli"},
}

#: Imports that break the rule today, each with why, so no new one slips in beside it.
#: When one is fixed, ``test_known_exceptions_are_still_real`` fails: delete its entry.
KNOWN_EXCEPTIONS: dict[tuple[str, str], str] = {
    ("steps", "desired"): "runners take the step models (desired.models: Step, ShellStep, SecretRef, ...) "
    "as their input; the rule wants those values in domain or a Protocol in steps",
}


def layer_of(module: str) -> str:
    """``reconciler.store.git`` -> ``store``; ``reconciler`` itself -> ``reconciler``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "reconciler"


def module_name(path: Path, root: Path = PACKAGE) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> Iterator[tuple[int, str]]:
    """Every module ``path`` imports, made absolute, with its line number."""
    tree = ast.parse(path.read_text(), filename=str(path))
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            yield node.lineno, target
            # ``from reconciler import cli`` imports the cli layer, not just the root.
            for alias in node.names:
                yield node.lineno, f"{target}.{alias.name}"


def reconciler_imports() -> Iterator[tuple[str, str, str]]:
    """(file:line, importing layer, imported layer) for every cross-layer import."""
    for path in sorted(PACKAGE.rglob("*.py")):
        importer = layer_of(module_name(path))
        for line, target in imports_of(path):
            if target != "reconciler" and not target.startswith("reconciler."):
                continue
            imported = layer_of(target)
            if target.count(".") == 1 and not (PACKAGE / imported).is_dir():
                continue  # ``reconciler.__version__`` and similar names, or a root module like ``logfmt``
            if imported != importer and imported != "reconciler":
                yield f"{path.relative_to(PACKAGE.parent)}:{line}", importer, imported


def violations(layer: str, *, known: bool = False) -> list[str]:
    """Forbidden imports by ``layer``: the unknown ones, or (``known=True``) the recorded exceptions."""
    found = set()
    for where, importer, imported in reconciler_imports():
        if importer != layer:
            continue
        allowed = ALLOWED.get(layer)
        forbidden = (allowed is not None and imported not in allowed) or imported in FORBIDDEN.get(
            layer, set()
        )
        if forbidden and ((layer, imported) in KNOWN_EXCEPTIONS) == known:
            found.add(f"{where}: {layer} imports {imported}")
    return sorted(found)


def test_the_scanner_sees_real_imports() -> None:
    """If the parser missed imports, every layer test below would pass vacuously."""
    edges = {(importer, imported) for _, importer, imported in reconciler_imports()}
    assert ("store", "domain") in edges
    assert ("cli", "domain") in edges or ("cli", "engine") in edges


def test_relative_and_nested_imports_are_seen(tmp_path: Path) -> None:
    pkg = tmp_path / "reconciler" / "store"
    pkg.mkdir(parents=True)
    module = pkg / "x.py"
    module.write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import git\n"
        "from ..domain import states\n"
        "if TYPE_CHECKING:\n    from reconciler import engine\n"
        "def f() -> None:\n    import reconciler.cli.app\n"
    )
    targets = {t for _, t in imports_of(module, root=tmp_path / "reconciler")}
    assert {
        "reconciler.store.git",
        "reconciler.domain.states",
        "reconciler.engine",
        "reconciler.cli.app",
    } <= targets


def test_known_exceptions_are_still_real() -> None:
    for importer, imported in KNOWN_EXCEPTIONS:
        assert violations(importer, known=True), (
            f"{importer} no longer imports {imported}: remove the exception"
        )


@pytest.mark.parametrize("layer", [*ALLOWED, *FORBIDDEN])
def test_layer_imports_only_downward(layer: str) -> None:
    if not (PACKAGE / layer).is_dir():
        pytest.skip(f"reconciler.{layer} does not exist yet")
    assert violations(layer) == []


def test_the_domain_imports_nothing_but_the_standard_library_and_pydantic() -> None:
    """The domain is pure: no git, no processes, no YAML, no CLI."""
    third_party = set()
    for path in (PACKAGE / "domain").rglob("*.py"):
        for _, target in imports_of(path):
            top = target.split(".")[0]
            if top not in {"reconciler", "__future__"} and top not in sys.stdlib_module_names:
                third_party.add(top)
    assert third_party <= {"pydantic", "pydantic_core"}
