"""Shared fixtures: real git repositories in tmp_path."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.signing import Keys


@pytest.fixture(autouse=True)
def _git_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never depend on the machine's git config."""
    monkeypatch.setenv("GIT_AUTHOR_NAME", "Test User")
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_COMMITTER_NAME", "Test User")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "test@example.com")
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")


def git(repo: Path, *args: str) -> str:
    """Run the git CLI as a user would; return stdout."""
    out = subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=os.environ.copy()
    )
    return out.stdout


@pytest.fixture(autouse=True)
def _reset_reconciler_logger() -> Iterator[None]:
    """The CLI installs a handler on the ``reconciler`` logger; in-process CLI tests must not leak it."""
    logger = logging.getLogger("reconciler")
    saved = (logger.handlers[:], logger.propagate, logger.level)
    yield
    logger.handlers[:], logger.propagate, logger.level = saved[0], saved[1], saved[2]


@pytest.fixture(scope="session")
def signing_keys() -> Iterator[Keys]:
    """Real SSH and OpenPGP signing keys, made once per session (``tests/signing.py``)."""
    from tests.signing import make_keys

    keys = make_keys()
    try:
        yield keys
    finally:
        keys.close()
