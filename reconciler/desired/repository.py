"""Opening the repository ``--repo`` names: the same search and the same refusal for every command."""

from __future__ import annotations

from pathlib import Path

import pygit2


class NotARepository(LookupError):
    """``--repo`` names no git repository: the one wording every command uses (issue 15)."""

    def __init__(self, path: Path) -> None:
        super().__init__(
            f"{path}: not a git repository (nor is any parent directory); --repo takes a work tree, "
            "a directory inside one, or a bare repository"
        )
        self.path = path


def open_repository(path: Path) -> pygit2.Repository:
    """The repository at ``path`` or the nearest one above it, as git finds it."""
    try:
        found = pygit2.discover_repository(str(path))
        if found is None:
            raise NotARepository(path)
        return pygit2.Repository(found)
    except (pygit2.GitError, KeyError, ValueError) as e:
        raise NotARepository(path) from e
