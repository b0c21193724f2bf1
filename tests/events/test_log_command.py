"""``reconcile log``: a phase run's kept output, listed, filtered and followed (real applies)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from tests.engine.conftest import GitOpsRepo, env_file


def _phases(marker: str) -> dict[str, object]:
    return {
        phase: [{"shell": {"run": f'echo "{phase} says {marker}"; echo "token=$RECONCILE_VAR_TOKEN"'}}]
        for phase in ("provision", "configure", "release", "run")
    }


def test_log_shows_the_newest_run_and_lists_runs(gitops: GitOpsRepo) -> None:
    env = env_file("web", phases=_phases("v1"), vars={"token": {"fromEnv": "WEB_TOKEN"}})
    gitops.commit({"environments/web.yaml": env})
    gitops.reconcile("apply", env={"WEB_TOKEN": "s3cr3t-value"}, check=True)

    newest = gitops.reconcile("log", "web", check=True).stdout
    assert "run says v1" in newest and "provision says" not in newest
    assert "s3cr3t-value" not in newest and "token=" in newest
    provision = gitops.reconcile("log", "web", "--phase", "provision", check=True).stdout
    assert "provision says v1" in provision
    listed = json.loads(gitops.reconcile("log", "web", "--runs", "--format", "json", check=True).stdout)
    assert listed["runs"][0]["phase"] == "run"
    assert sorted(r["phase"] for r in listed["runs"]) == ["configure", "provision", "release", "run"]

    assert gitops.reconcile("log", "nosuch").returncode == 1
    assert gitops.reconcile("log", "web", "--phase", "deploy").returncode == 2


def test_follow_prints_a_run_as_it_writes(gitops: GitOpsRepo, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    slow = {
        "provision": [
            {"shell": {"run": f"echo first line; while [ ! -f {gate} ]; do sleep 0.1; done; echo last line"}}
        ]
    }
    gitops.commit({"environments/web.yaml": env_file("web", "provisioned", phases=slow)})
    # Started as a shell's background job is: SIGINT ignored on arrival. Ctrl-C must still stop it.
    follower = subprocess.Popen(
        ["sh", "-c", "trap '' INT; exec \"$@\"", "sh", *gitops.command("log", "web", "--follow")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(follower.stdout or ()), daemon=True)
    applying = subprocess.Popen(gitops.command("apply"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert follower.stdout is not None
        reader.start()

        def seen(text: str) -> bool:
            deadline = time.monotonic() + 60
            while not any(text in line for line in list(lines)) and time.monotonic() < deadline:
                time.sleep(0.1)
            return any(text in line for line in list(lines))

        assert seen("first line")
        assert not any("last line" in x for x in lines)
        gate.write_text("")  # the phase was still running when its first line was printed
        assert applying.wait(timeout=60) == 0
        assert seen("last line")
        assert seen("==> provision run started")
    finally:
        gate.write_text("")
        applying.wait(timeout=60)
        os.killpg(follower.pid, signal.SIGINT)
        follower.wait(timeout=30)
        if reader.is_alive() or reader.ident is not None:
            reader.join(timeout=30)
        for stream in (follower.stdout, follower.stderr):
            if stream is not None:
                stream.close()
