"""The ``git`` CLI for what crosses the network: the same transports, credentials and host keys as people's.

Fetches and pushes both go through ``git`` (decision 011): a service account
set up once for git (``~/.ssh/config``, a deploy key, ``known_hosts``, a
credential helper) works for both, and ``git fetch`` checks that what it
fetched is complete, where libgit2 trusts any commit already in the object
store. Never interactive: no terminal prompt, ssh in batch mode (unless the
caller set ``GIT_SSH_COMMAND`` or ``GIT_SSH``), git's own words in English.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping

#: A fetch that takes longer than this failed (the daemon tries again at its next turn).
FETCH_TIMEOUT_SECONDS = 120.0


class FetchError(Exception):
    """``git fetch`` failed; the message is git's last line."""


def git_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) made non-interactive and untranslated."""
    env = dict(os.environ if base is None else base)
    env.update({"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "LANGUAGE": "C"})
    if "GIT_SSH_COMMAND" not in env and "GIT_SSH" not in env:
        env["GIT_SSH_COMMAND"] = "ssh -o BatchMode=yes"
    return env


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def run_git(git_dir: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", "--git-dir", git_dir, *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
        env=git_environment(),
    )


def fetch(
    git_dir: str, remote: str, refspecs: tuple[str, ...] = (), *, timeout: float = FETCH_TIMEOUT_SECONDS
) -> None:
    """``git fetch remote [refspecs]`` (none: the remote's configured ones), or ``FetchError``.

    No automatic ``git gc`` in the background: the reconciler's writes stay the only
    load it puts on the repository (run ``git gc`` from a timer; docs/state-branch.md).
    """
    argv = ("fetch", "--quiet", "--no-write-fetch-head", "--no-auto-gc", remote, *refspecs)
    try:
        done = run_git(git_dir, *argv, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        raise FetchError(f"git fetch {remote} timed out after {timeout:g}s") from e
    except OSError as e:
        raise FetchError(f"cannot run git: {e}") from e
    if done.returncode != 0:
        raise FetchError(last_line(done.stderr) or f"git fetch exited {done.returncode}")
