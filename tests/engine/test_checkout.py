"""Exports of desired commits: a new one made from an idle older one is exactly its commit's tree."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pygit2
import pytest

from reconciler.engine.checkout import checkout, ensure_checkout
from tests.conftest import git

pytestmark = pytest.mark.timeout(60)


def _commit(repo: Path, files: dict[str, str | None], message: str = "change") -> str:
    for rel, text in files.items():
        path = repo / rel
        if text is None:
            if path.is_dir() and not path.is_symlink():
                git(repo, "rm", "-rq", rel)
            else:
                path.unlink()
            continue
        if path.is_dir() and not path.is_symlink():
            git(repo, "rm", "-rq", rel)
        elif path.is_symlink() or path.exists():
            path.unlink()
        path.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith("->"):
            os.symlink(text[2:], path)
        else:
            path.write_text(text)
            if rel.endswith(".sh"):
                path.chmod(0o755)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def _tree(root: Path) -> dict[str, tuple[str, str]]:
    """Every path under ``root``: (kind, content or link target), executable bits included."""
    found: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = Path(dirpath) / name
            rel = str(full.relative_to(root))
            if full.is_symlink():
                found[rel] = ("link", os.readlink(full))
            elif full.is_dir():
                found[rel] = ("dir", "")
            else:
                found[rel] = ("x" if os.access(full, os.X_OK) else "file", full.read_text())
    return found


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "gitops"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    _commit(
        path,
        {
            "environments/web.yaml": "web v1\n",
            "environments/db.yaml": "db\n",
            "scripts/start.sh": "echo start\n",
            "scripts/link.sh": "->start.sh",
            "infra/vm/main.tf": "vm\n",
            "notes": "a file that becomes a directory\n",
        },
    )
    return path


CHANGES: dict[str, str | None] = {
    "environments/web.yaml": "web v2\n",
    "environments/db.yaml": None,
    "environments/new.yaml": "new\n",
    "scripts/link.sh": "->../infra/vm/main.tf",
    "infra/vm": None,
    "infra/vm.tf": "now a file\n",
    "notes": None,
    "notes/one.md": "one\n",
}


def test_a_new_export_made_from_an_idle_one_is_its_commit_exactly(repo: Path, tmp_path: Path) -> None:
    r = pygit2.Repository(str(repo))
    data = tmp_path / "data"
    first = git(repo, "rev-parse", "HEAD").strip()
    old = ensure_checkout(r, first, data)
    # What steps leave behind in a shared export: a new file, a new directory, an edit, a deletion.
    (old / "scratch.txt").write_text("left by a step\n")
    (old / "build" / "out").mkdir(parents=True)
    (old / "build" / "out" / "a.o").write_text("object\n")
    time.sleep(0.06)  # past the export's seal, as a step that runs later is
    (old / "scripts/start.sh").write_text("edited by a step\n")
    (old / "environments/web.yaml").unlink()

    second = _commit(repo, CHANGES)
    new = ensure_checkout(r, second, data)

    fresh = tmp_path / "fresh"
    ensure_checkout(r, second, fresh)
    assert _tree(new) == _tree(fresh / "checkouts" / second)
    assert (new / "environments/web.yaml").read_text() == "web v2\n"
    assert not old.exists(), "the idle export was turned into the new one, not copied"


def test_an_export_steps_run_in_is_never_reused(repo: Path, tmp_path: Path) -> None:
    r = pygit2.Repository(str(repo))
    data = tmp_path / "data"
    first = git(repo, "rev-parse", "HEAD").strip()
    with checkout(r, first, data) as old:
        (old / "scratch.txt").write_text("a running step's file\n")
        second = _commit(repo, CHANGES)
        with checkout(r, second, data) as new:
            assert (new / "environments/new.yaml").read_text() == "new\n"
        assert (old / "scratch.txt").read_text() == "a running step's file\n"
        assert (old / "environments/web.yaml").read_text() == "web v1\n"


def test_a_lease_held_by_another_process_keeps_the_export(repo: Path, tmp_path: Path) -> None:
    r = pygit2.Repository(str(repo))
    data = tmp_path / "data"
    first = git(repo, "rev-parse", "HEAD").strip()
    old = ensure_checkout(r, first, data)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            "fd = os.open(sys.argv[1], os.O_RDWR)\n"
            "fcntl.flock(fd, fcntl.LOCK_SH)\n"
            "print('held', flush=True)\n"
            "time.sleep(30)\n",
            str(data / "checkouts" / f".{first}.lease"),
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        second = _commit(repo, CHANGES)
        new = ensure_checkout(r, second, data)
        assert (new / "infra/vm.tf").read_text() == "now a file\n"
        assert (old / "environments/web.yaml").read_text() == "web v1\n", "the other process's export stays"
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
