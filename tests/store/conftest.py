from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.store import MemoryStore, StateStore
from tests.conftest import git
from tests.gitservers import TRANSPORTS, GitServer, init_bare, serving
from tests.store.kit import open_store, plant_corrupt


@dataclass
class StoreKit:
    """A store under test, the spec to open it again in another process, and a way to corrupt it."""

    kind: str
    spec: str
    store: StateStore
    corrupt: Callable[[str, str], None]


def _init_repo(path: Path) -> Path:
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    git(path, "commit", "-q", "--allow-empty", "-m", "initial")
    return path


@pytest.fixture(params=["git", "file", "memory"])
def kit(request: pytest.FixtureRequest, tmp_path: Path) -> StoreKit:
    kind: str = request.param
    if kind == "git":
        spec = f"git:{_init_repo(tmp_path / 'repo')}"
    elif kind == "file":
        spec = f"file:{tmp_path / 'data'}"
    else:
        spec = "memory:"
    store = open_store(spec)

    def corrupt(name: str, text: str) -> None:
        if isinstance(store, MemoryStore):
            store.put_raw(name, text)
        else:
            plant_corrupt(spec, name, text)

    return StoreKit(kind, spec, store, corrupt)


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return _init_repo(tmp_path / "repo")


@pytest.fixture(params=TRANSPORTS)
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[GitServer, Path]]:
    """A bare repository served on each transport: local path, file://, git:// and smart HTTP."""
    root = tmp_path / "srv"
    root.mkdir()
    bare = init_bare(root / "fleet.git")
    with serving(str(request.param), root) as server:
        yield server, bare
