"""``make run``: the main job on the bundled examples, in a scratch copy of this repository."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_CONTENT = ("environments", "blueprints", "infra", "ansible", "examples", "reconciler.yaml")


def scratch_copy(scratch: Path) -> Path:
    """A fresh git repository holding the committed example content (never this repo's refs)."""
    target = scratch / "repo"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(target)], check=True)
    for name in (
        "environments",
        "blueprints",
        "infra",
        "ansible",
        "scripts",
        "reconciler.yaml",
        ".gitignore",
    ):
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, target / name)
        elif src.is_file():
            shutil.copy2(src, target / name)
    subprocess.run(["git", "-C", str(target), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(target), "commit", "-q", "-m", "examples"], check=True)
    return target


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scratch", type=Path, default=ROOT / ".scratch")
    args = parser.parse_args()
    repo = scratch_copy(args.scratch.resolve())
    print(f"scratch repository: {repo}")
    return subprocess.run([sys.executable, "-m", "reconciler", "--version"], check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
