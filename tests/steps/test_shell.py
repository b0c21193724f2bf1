"""Shell steps through real /bin/sh: environment, exit codes, timeouts, cancellation, redaction."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from reconciler.domain.values import ErrorKind
from reconciler.steps import LocalStepRunner
from reconciler.steps.process import TAIL_BYTES, TAIL_LINES, Command, run_process
from tests.steps.conftest import ContextFactory, step

runner = LocalStepRunner()


def live_members(pgid: int) -> list[int]:
    """Pids of the non-zombie processes of group ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2 :].split()
        if fields[0] != "Z" and fields[2] == str(pgid):
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2 :].split()[0] != "Z"


def test_a_shell_step_sees_the_reconcile_variables(
    make_ctx: ContextFactory, checkout: Path, data_dir: Path
) -> None:
    (checkout / "scripts").mkdir()
    ctx = make_ctx(vars={"http_port": 8080, "name": "web"}, outputs={"ip": "10.0.0.5"})
    outcome = runner.run(
        step(
            {
                "shell": {
                    "run": 'echo "$RECONCILE_ENVIRONMENT $RECONCILE_DESIRED_COMMIT $RECONCILE_DATA_DIR"\n'
                    'echo "$RECONCILE_VAR_HTTP_PORT $RECONCILE_VAR_NAME $RECONCILE_OUTPUT_IP $MODE"\n'
                    "pwd\n",
                    "env": {"MODE": "fast"},
                    "cwd": "scripts",
                }
            }
        ),
        ctx,
    )
    assert outcome.ok, outcome
    assert outcome.output_tail.splitlines() == [
        f"web c0ffee {data_dir}",
        "8080 web 10.0.0.5 fast",
        str((checkout / "scripts").resolve()),
    ]
    assert outcome.exit_code == 0
    assert outcome.error_kind is None


def test_a_declared_value_is_never_shell_syntax(make_ctx: ContextFactory, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    ctx = make_ctx(vars={"name": f"$(touch {marker})"})
    outcome = runner.run(step({"shell": {"run": 'echo "$RECONCILE_VAR_NAME"'}}), ctx)
    assert outcome.ok
    assert outcome.output_tail == f"$(touch {marker})"
    assert not marker.exists()


def test_a_failing_command_is_a_value_with_its_exit_code(make_ctx: ContextFactory) -> None:
    outcome = runner.run(step({"shell": {"run": "echo about to fail; exit 3"}}), make_ctx())
    assert not outcome.ok
    assert outcome.error_kind is ErrorKind.COMMAND_FAILED
    assert outcome.exit_code == 3
    assert outcome.summary == "shell exited 3"
    assert outcome.step == "shell echo about to fail; exit 3"
    assert outcome.output_tail == "about to fail"
    assert outcome.error_chain == ("shell exited 3",)
    assert outcome.finished_at >= outcome.started_at


def test_a_timeout_kills_the_whole_process_group_children_included(
    make_ctx: ContextFactory, tmp_path: Path
) -> None:
    pids = tmp_path / "pids"
    script = f"echo $$ > {pids}; sleep 300 & echo $! >> {pids}; echo started; sleep 300"
    start = time.monotonic()
    outcome = runner.run(step({"shell": {"run": script}}), make_ctx(timeout=1.0))
    elapsed = time.monotonic() - start
    assert outcome.error_kind is ErrorKind.TIMEOUT
    assert outcome.summary.startswith("shell timed out after 1.")
    assert outcome.output_tail == "started"
    assert elapsed < 5
    leader, background = (int(line) for line in pids.read_text().split())
    assert not alive(background)
    assert live_members(leader) == []


def test_a_group_that_ignores_sigterm_is_killed(make_ctx: ContextFactory, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    command = Command(
        label="shell",
        argv=("/bin/sh", "-c", f"trap '' TERM; echo $$ > {pids}; sleep 300 & sleep 300"),
        cwd=tmp_path,
    )
    result = run_process(command, make_ctx(timeout=0.5), grace=0.3)
    assert result.status == "timeout"
    assert live_members(int(pids.read_text())) == []


def test_the_steps_own_timeout_applies(make_ctx: ContextFactory) -> None:
    outcome = runner.run(step({"shell": {"run": "sleep 30", "timeoutSeconds": 1}}), make_ctx(timeout=60))
    assert outcome.error_kind is ErrorKind.TIMEOUT
    assert outcome.duration_seconds < 5


def test_cancel_interrupts_promptly(make_ctx: ContextFactory, tmp_path: Path) -> None:
    cancel = threading.Event()
    pids = tmp_path / "pids"
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        outcome = runner.run(
            step({"shell": {"run": f"echo $$ > {pids}; sleep 300"}}), make_ctx(cancel=cancel)
        )
    finally:
        timer.cancel()
    assert outcome.error_kind is ErrorKind.INTERRUPTED
    assert outcome.summary == "shell was interrupted"
    assert outcome.duration_seconds < 5
    assert live_members(int(pids.read_text())) == []


def test_a_step_already_cancelled_never_starts(make_ctx: ContextFactory, tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    marker = tmp_path / "ran"
    outcome = runner.run(step({"shell": {"run": f"touch {marker}"}}), make_ctx(cancel=cancel))
    assert outcome.error_kind is ErrorKind.INTERRUPTED
    assert not marker.exists()


def test_secrets_never_reach_the_tail_nor_the_log(make_ctx: ContextFactory) -> None:
    lines: list[str] = []
    secret = "hunter2-s3cr3t"
    ctx = make_ctx(vars={"password": secret}, secrets=frozenset({secret}), log=lines.append)
    outcome = runner.run(
        step(
            {
                "shell": {
                    "run": 'echo "pw=$RECONCILE_VAR_PASSWORD"; echo "$RECONCILE_VAR_PASSWORD" >&2; exit 1'
                }
            }
        ),
        ctx,
    )
    assert not outcome.ok
    assert lines == ["pw=[REDACTED]", "[REDACTED]"]
    assert secret not in outcome.output_tail
    assert outcome.output_tail == "pw=[REDACTED]\n[REDACTED]"


def test_the_secret_in_the_command_line_is_redacted_from_the_step_description(
    make_ctx: ContextFactory,
) -> None:
    outcome = runner.run(
        step({"shell": {"run": "echo hunter2 >/dev/null; exit 1"}}), make_ctx(secrets=frozenset({"hunter2"}))
    )
    assert "hunter2" not in outcome.step
    assert "hunter2" not in outcome.summary


def test_the_output_tail_is_bounded_in_lines_and_bytes(make_ctx: ContextFactory) -> None:
    lines: list[str] = []
    outcome = runner.run(step({"shell": {"run": "seq 1 5000"}}), make_ctx(log=lines.append))
    assert outcome.ok
    assert len(lines) == 5000
    tail = outcome.output_tail.splitlines()
    assert len(tail) == TAIL_LINES
    assert tail[-1] == "5000"

    big = runner.run(
        step({"shell": {"run": "yes 0123456789abcdef0123456789abcdef | head -c 3000000"}}), make_ctx()
    )
    assert big.ok
    assert len(big.output_tail) <= TAIL_BYTES


def test_a_line_without_end_is_streamed_in_bounded_pieces(make_ctx: ContextFactory) -> None:
    lines: list[str] = []
    outcome = runner.run(
        step({"shell": {"run": "head -c 300000 /dev/zero | tr '\\0' x"}}), make_ctx(log=lines.append)
    )
    assert outcome.ok
    assert sum(len(line) for line in lines) == 300000
    assert max(len(line) for line in lines) <= 64 * 1024


def test_a_background_service_left_by_a_successful_step_keeps_running(
    make_ctx: ContextFactory, tmp_path: Path
) -> None:
    pid_file = tmp_path / "service.pid"
    outcome = runner.run(step({"shell": {"run": f"sleep 300 & echo $! > {pid_file}"}}), make_ctx())
    assert outcome.ok
    assert outcome.duration_seconds < 3
    pid = int(pid_file.read_text())
    try:
        assert alive(pid)
    finally:
        os.kill(pid, 9)


def test_a_cwd_outside_the_checkout_is_refused(
    make_ctx: ContextFactory, checkout: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (checkout / "escape").symlink_to(outside)
    for cwd in ("escape", "../outside", "/tmp", "missing"):
        outcome = runner.run(step({"shell": {"run": "true", "cwd": cwd}}), make_ctx())
        assert outcome.error_kind is ErrorKind.CONFIGURATION, cwd
        assert repr(cwd) in outcome.summary


def test_the_data_dir_is_created_when_missing(make_ctx: ContextFactory, tmp_path: Path) -> None:
    data_dir = tmp_path / "fresh" / "web"
    outcome = runner.run(
        step({"shell": {"run": 'touch "$RECONCILE_DATA_DIR/x"'}}), make_ctx(data_dir=data_dir)
    )
    assert outcome.ok, outcome.output_tail
    assert (data_dir / "x").is_file()


def test_an_unusable_data_dir_is_a_filesystem_failure(make_ctx: ContextFactory, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("")
    outcome = runner.run(step({"shell": {"run": "true"}}), make_ctx(data_dir=blocker / "web"))
    assert not outcome.ok
    assert outcome.error_kind is ErrorKind.FILESYSTEM
    assert str(blocker / "web") in outcome.summary


def test_a_step_that_closes_its_output_still_times_out(make_ctx: ContextFactory) -> None:
    # The pipes close at once; the deadline must still hold until the command exits.
    outcome = runner.run(step({"shell": {"run": "exec >/dev/null 2>&1; sleep 30"}}), make_ctx(timeout=1))
    assert outcome.error_kind is ErrorKind.TIMEOUT
    assert outcome.duration_seconds < 5


def test_a_step_that_closes_its_output_can_be_cancelled(make_ctx: ContextFactory) -> None:
    cancel = threading.Event()
    timer = threading.Timer(0.5, cancel.set)
    timer.start()
    try:
        outcome = runner.run(
            step({"shell": {"run": "exec >/dev/null 2>&1; sleep 30"}}), make_ctx(cancel=cancel)
        )
    finally:
        timer.cancel()
    assert outcome.error_kind is ErrorKind.INTERRUPTED
    assert outcome.duration_seconds < 5
