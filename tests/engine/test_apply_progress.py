"""``reconcile apply``'s live progress (issue 15): what a person sees on a pipe, a terminal, and JSON lines.

Real repositories, the real command in a subprocess, real pipes and a real pty.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import queue
import re
import select
import struct
import subprocess
import termios
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import pytest

from tests.engine.conftest import GitOpsRepo, env_file

pytestmark = pytest.mark.timeout(120)


def provisioned_by(run: str, name: str = "web") -> str:
    return env_file(name, "provisioned", phases={"provision": [{"name": "boot", "shell": {"run": run}}]})


def lines_of(stream: TextIO) -> queue.Queue[str | None]:
    """Every line ``stream`` gives, as it comes, then ``None``."""
    found: queue.Queue[str | None] = queue.Queue()

    def read() -> None:
        for line in stream:
            found.put(line.rstrip("\n"))
        found.put(None)

    threading.Thread(target=read, daemon=True).start()
    return found


def until(found: queue.Queue[str | None], wanted: str) -> list[str]:
    """The lines up to and including the first that contains ``wanted``."""
    seen: list[str] = []
    while True:
        line = found.get(timeout=60)
        assert line is not None, f"{wanted!r} never came; got {seen}"
        seen.append(line)
        if wanted in line:
            return seen


def rest(found: queue.Queue[str | None]) -> list[str]:
    out: list[str] = []
    while (line := found.get(timeout=60)) is not None:
        out.append(line)
    return out


# -- a pipe -----------------------------------------------------------------------------


def test_a_pipe_gets_one_line_per_transition_and_still_running_lines(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    gitops.commit(
        {"environments/web.yaml": provisioned_by(f"echo booting; while [ ! -e {go} ]; do sleep 0.05; done")}
    )
    with subprocess.Popen(
        gitops.command("apply"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "RECONCILE_PROGRESS_INTERVAL": "0.3"},
    ) as proc:
        assert proc.stdout is not None
        found = lines_of(proc.stdout)
        lines = until(found, "still running")
        lines += until(found, "still running")  # and again, one interval later, while the step runs
        assert proc.poll() is None
        go.touch()
        lines += rest(found)
        assert proc.wait(timeout=60) == 0

    start = lines.index("web: created -> provisioning")
    end = lines.index("web: provisioning -> provisioned")
    between = lines[start + 1 : end]
    assert len(between) >= 2, lines
    for line in between:
        assert re.fullmatch(r"web: still running \[\d+s elapsed\] \(boot\)", line), line
    assert lines[0] == "web: none -> created"
    assert not any("still running" in line for line in lines[end:])
    assert not any("\x1b" in line for line in lines)  # no terminal control codes in a log


def test_nothing_to_do_prints_no_progress(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": provisioned_by("true")})
    gitops.reconcile("apply", check=True)
    out = gitops.reconcile("apply", env={"RECONCILE_PROGRESS_INTERVAL": "0.1"}, check=True)
    assert out.stdout.splitlines() == ["web: converged (provisioned): provisioned; inputs unchanged"]


def test_a_bad_progress_interval_is_warned_about_and_the_default_used(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": provisioned_by("true")})
    out = gitops.reconcile("apply", env={"RECONCILE_PROGRESS_INTERVAL": "soon"}, check=True)
    assert "RECONCILE_PROGRESS_INTERVAL" in out.stderr and "'soon'" in out.stderr
    assert "web: provisioning -> provisioned" in out.stdout


# -- JSON lines -------------------------------------------------------------------------


@pytest.fixture
def json_apply(gitops: GitOpsRepo) -> Iterator[tuple[subprocess.Popen[str], queue.Queue[str | None]]]:
    proc = subprocess.Popen(
        gitops.command("apply", "--format", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    with proc:
        try:
            yield proc, lines_of(proc.stdout)
        finally:
            if proc.poll() is None:
                proc.kill()


def test_json_events_stream_while_the_step_runs(
    gitops: GitOpsRepo, json_apply: tuple[subprocess.Popen[str], queue.Queue[str | None]], tmp_path: Path
) -> None:
    go = tmp_path / "go"
    gitops.commit(
        {
            "environments/web.yaml": provisioned_by(
                f"echo first-line; while [ ! -e {go} ]; do sleep 0.05; done; echo second-line"
            )
        }
    )
    proc, found = json_apply

    early = until(found, "first-line")
    # The step is still waiting for us: what arrived so far was written as it happened.
    assert proc.poll() is None
    assert gitops.state("web")["state"] == "provisioning"
    go.touch()
    events: list[dict[str, Any]] = [json.loads(line) for line in early + rest(found)]
    assert proc.wait(timeout=60) == 0

    assert all(e["formatVersion"] == 1 for e in events)
    kinds = [(e["event"], e.get("to") or e.get("line") or e.get("outcome")) for e in events]
    assert kinds == [
        ("transition", "created"),
        ("transition", "provisioning"),
        ("step_output", "first-line"),
        ("step_output", "second-line"),
        ("transition", "provisioned"),
        ("result", "converged"),
    ]
    output = events[2]
    assert (output["environment"], output["phase"], output["step"]) == ("web", "provision", "boot")
    result = events[-1]
    assert result["environment"] == "web" and result["state"] == "provisioned"
    assert result["transitions"][-1] == {"from": "provisioning", "to": "provisioned"}
    assert result["desiredCommit"] == gitops.state("web")["desiredCommit"]


def test_a_failure_is_a_result_event_with_its_failure(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": provisioned_by("echo 'no disk left' >&2; exit 3")})
    out = gitops.reconcile("apply", "--format", "json")
    assert out.returncode == 1
    events = [json.loads(line) for line in out.stdout.splitlines()]
    assert {"event": "step_output", "line": "no disk left"}.items() <= events[2].items()
    assert events[-1]["event"] == "result" and events[-1]["outcome"] == "failed"
    assert events[-1]["failure"]["errorKind"] == "command_failed"


def test_a_reader_that_falls_behind_never_holds_a_step_up(gitops: GitOpsRepo, tmp_path: Path) -> None:
    """Nobody reads apply's stdout while the step writes far more than a pipe holds: the step still
    finishes, and the lines that could not be shown are counted, never silently lost."""
    done = tmp_path / "done"
    total = 30_000
    gitops.commit({"environments/web.yaml": provisioned_by(f"seq 1 {total}; touch {done}")})
    with subprocess.Popen(
        gitops.command("apply", "--format", "json"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    ) as proc:
        try:
            while not done.exists():  # the pytest timeout fails this if the step is held up
                assert proc.poll() is None
                threading.Event().wait(0.05)
            assert proc.stdout is not None
            events = [json.loads(line) for line in proc.stdout]
        finally:
            if proc.poll() is None:
                proc.kill()
    outputs = [e for e in events if e["event"] == "step_output"]
    lines = [int(e["line"]) for e in outputs if e["line"] is not None]
    dropped = sum(e["droppedBefore"] for e in outputs)
    assert dropped > 0 and len(lines) + dropped == total
    assert lines == sorted(lines) and lines[0] == 1
    assert events[-1]["event"] == "result" and events[-1]["outcome"] == "converged"
    # The phase log has every line, shown or not (`reconcile log web`).
    (log,) = (gitops.data / "web" / "logs").glob("*-provision.log")
    assert log.read_text().splitlines() == [str(i) for i in range(1, total + 1)]


# -- a terminal -------------------------------------------------------------------------


def test_a_terminal_sees_a_live_line_with_phase_step_and_last_output(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    gitops.commit(
        {
            "environments/web.yaml": provisioned_by(
                f"echo warming-up; while [ ! -e {go} ]; do sleep 0.05; done; echo ready"
            )
        }
    )
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "CI", "TERM")}
    env["TERM"] = "xterm-256color"
    proc = subprocess.Popen(
        gitops.command("apply"), stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True
    )
    os.close(follower)
    seen = b""
    try:
        while b"warming-up" not in seen or b"provision" not in seen:
            ready, _, _ = select.select([leader], [], [], 30)
            assert ready and proc.poll() is None, seen.decode(errors="replace")
            seen += os.read(leader, 65536)
        screen = seen.decode(errors="replace")
        # The live line: environment, phase, step, elapsed and the step's last output line.
        live = next(line for line in screen.replace("\r", "\n").splitlines() if "warming-up" in line)
        plain = _strip_ansi(live)
        assert plain.split()[:3] == ["web", "provision", "boot"], plain
        assert plain.split()[3].endswith("s")
        go.touch()
        while proc.poll() is None or select.select([leader], [], [], 0.2)[0]:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break  # the terminal closed with the process
            if not chunk:
                break
            seen += chunk
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        os.close(leader)
    assert proc.returncode == 0
    final = _strip_ansi(seen.decode(errors="replace"))
    assert "web: created → provisioning" in final
    assert "web: converged (provisioned)" in final


def _strip_ansi(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)


def test_a_reader_that_goes_away_does_not_stop_the_run(gitops: GitOpsRepo) -> None:
    """``apply --format json | head -1``: the pipe closes after the first event; every phase still runs."""
    gitops.commit({"environments/web.yaml": provisioned_by("seq 1 20000")})
    with subprocess.Popen(
        gitops.command("apply", "--format", "json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        first = json.loads(proc.stdout.readline())
        proc.stdout.close()
        errors = proc.stderr.read()
        assert proc.wait(timeout=60) == 0, errors
    assert first["event"] == "transition"
    assert gitops.state("web")["state"] == "provisioned"
    assert "Traceback" not in errors


def test_a_selector_that_matches_nothing_streams_no_event(gitops: GitOpsRepo) -> None:
    gitops.commit({"environments/web.yaml": provisioned_by("true")})
    out = gitops.reconcile("apply", "-l", "team=nobody", "--format", "json")
    assert out.returncode == 0
    assert out.stdout == ""  # an empty stream: nothing acted on
    assert "team=nobody" in out.stderr
    assert gitops.transitions() == []
