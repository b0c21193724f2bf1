"""The ``Dockerfile`` at the root: built where a docker or podman daemon answers, checked without one.

Without a daemon the test still proves what would break a build or the
container: every COPY source exists and is not ignored, exactly the copied
files build the package and its wheel declares the ``reconcile`` command, the
user is not root, and the entrypoint's command line, run from this checkout's
venv, starts a daemon that logs transitions at info.
"""

from __future__ import annotations

import fnmatch
import json
import shlex
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import git

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"

pytestmark = pytest.mark.timeout(300)


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if line.lstrip().startswith("#") or (not line.strip() and not pending):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out = []
    for text in logical:
        keyword, _, args = text.strip().partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def one(keyword: str) -> str:
    found = [args for k, args in instructions() if k == keyword]
    assert len(found) == 1, f"expected one {keyword}, found {found}"
    return found[0]


def copies() -> list[tuple[list[str], str]]:
    result = []
    for keyword, args in instructions():
        if keyword in ("COPY", "ADD"):
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            result.append((words[:-1], words[-1]))
    return result


def ignored(rel: str) -> bool:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    parts = rel.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(fnmatch.fnmatch(p, pat.removeprefix("**/")) for pat in patterns for p in prefixes)


def test_the_image_is_a_slim_python_with_git_and_tini_run_as_a_user_that_is_not_root() -> None:
    args = dict(a.split("=", 1) for k, a in instructions() if k == "ARG" and "=" in a)
    base = one("FROM")
    for name, value in args.items():
        base = base.replace("${" + name + "}", value)
    assert base.startswith("python:3.1") and base.endswith("-slim"), base
    installs = " ".join(a for k, a in instructions() if k == "RUN" and "apt-get install" in a).split()
    assert {"git", "tini"} <= set(installs)
    user = one("USER").split(":")[0]
    assert user not in ("root", "0"), user
    assert one("STOPSIGNAL") == "SIGTERM"


def test_every_copy_source_exists_and_is_sent_in_the_build_context() -> None:
    assert copies(), "the Dockerfile copies nothing: it cannot install this repository"
    for sources, _dest in copies():
        for src in sources:
            assert (ROOT / src).exists(), f"COPY {src}: no such file in the build context"
            assert not ignored(src), f"COPY {src}: excluded by .dockerignore"


def test_the_copied_files_alone_build_a_wheel_that_provides_the_entrypoint_command(tmp_path: Path) -> None:
    context = tmp_path / "image"
    for sources, dest in copies():
        target = context / dest.lstrip("/")
        for src in sources:
            if (ROOT / src).is_dir():
                shutil.copytree(ROOT / src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / src, target / Path(src).name)
    install = next(a for k, a in instructions() if k == "RUN" and "pip install" in a)
    assert '"/src' in install, install
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path / "wheels"),
            str(context / "src"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = (tmp_path / "wheels").glob("reconciler-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        entry_points = next(zf.read(n).decode() for n in zf.namelist() if n.endswith("entry_points.txt"))
    command = json.loads(one("ENTRYPOINT"))[2]
    assert f"{command} = reconciler.cli:main" in entry_points


def test_the_entrypoint_runs_the_daemon_and_logs_each_transition(tmp_path: Path) -> None:
    """ENTRYPOINT + CMD as the container runs them, with /repo, /data and the address made local."""
    entrypoint, cmd = json.loads(one("ENTRYPOINT")), json.loads(one("CMD"))
    assert entrypoint[:2] == ["tini", "--"]
    repo, data = tmp_path / "repo", tmp_path / "data"
    local = {"/repo": str(repo), "/data": str(data), "0.0.0.0:8080": "127.0.0.1:0"}
    argv = [
        str(Path(sys.executable).with_name(entrypoint[2])),
        *entrypoint[3:],
        *(local.get(a, a) for a in cmd),
    ]
    subprocess.run([sys.executable, "-m", "reconciler", "init", str(repo)], check=True, capture_output=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "example")
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=repo)
    try:
        deadline = time.monotonic() + 120
        while (
            '"to_state": "running"' not in log.read_text()
            and proc.poll() is None
            and time.monotonic() < deadline
        ):
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    records = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    transitions = [
        (r["from_state"], r["to_state"])
        for r in records
        if r["level"] == "INFO" and r["message"] == "state transition" and r["environment"] == "example"
    ]
    assert transitions[0] == ("created", "provisioning"), log.read_text()
    assert transitions[-1] == ("starting", "running"), log.read_text()


def _container_engine() -> str:
    for engine in ("docker", "podman"):
        path = shutil.which(engine)
        if (
            path
            and subprocess.run([path, "info"], capture_output=True, check=False, timeout=30).returncode == 0
        ):
            return path
    pytest.skip(
        "no container engine answers here (`docker info` and `podman info` fail: no daemon running); "
        "the build is checked by the tests above without one"
    )


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_the_image_builds_and_runs_reconcile_as_a_user_that_is_not_root() -> None:
    engine = _container_engine()
    tag = f"reconciler-test:{int(time.time())}"
    built = subprocess.run(
        [engine, "build", "-q", "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1100,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    try:
        version = subprocess.run(
            [engine, "run", "--rm", "--entrypoint", "reconcile", tag, "--version"],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert version.returncode == 0 and version.stdout.startswith("reconcile "), version.stderr
        uid = subprocess.run(
            [engine, "run", "--rm", "--entrypoint", "id", tag, "-u"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert uid.stdout.strip() != "0"
    finally:
        subprocess.run([engine, "rmi", "-f", tag], capture_output=True, check=False, timeout=120)
