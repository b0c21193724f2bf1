"""A real daemon against hostile desired state: one bad file never stops the others (SPEC 7),
and an invalid reconciler.yaml is not acted on; the last valid desired state stays (SPEC 2.4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.daemon.kit import Daemons, Server, runs, shell_env, state_is, state_of, transitions, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def test_files_that_used_to_halt_the_repository_leave_the_others_converging(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemon = daemons.start(server.bare)
    head = (
        "apiVersion: reconciler/v1\nkind: Environment\nmetadata: {name: %s}\nspec:\n  desiredState: running\n"
    )
    server.write("environments/good.yaml", shell_env("good", log))
    server.write("environments/huge.yaml", head % "huge" + "  timeoutSeconds: " + "9" * 5000 + "\n")
    server.write("environments/tagged.yaml", head % "tagged" + "  timeoutSeconds: !!int x\n")
    server.write(
        "environments/deep.yaml",
        head % "deep"
        + "  vars: {x: "
        + "[" * 1000
        + "]" * 1000
        + "}\n  phases: {run: [{shell: {run: 'true'}}]}\n",
    )
    server.push("one good, three hostile")

    wait_for("good running", state_is(server.bare, "good", "running"), 30)
    assert {env for env, _, _ in transitions(server.bare)} == {"good"}
    for name in ("huge", "tagged", "deep"):
        assert state_of(server.bare, name) is None
    assert "Traceback" not in daemon.output()
    assert "refused: environments/deep.yaml:6:74: `spec.vars.x[0][0]" in daemon.output()
    assert "refused: environments/huge.yaml:6:19: `spec.timeoutSeconds`: the integer" in daemon.output()


def test_an_invalid_reconciler_yaml_is_not_acted_on_and_the_last_valid_desired_state_stays(
    server: Server, daemons: Daemons, tmp_path: Path
) -> None:
    log = tmp_path / "side-effects.log"
    daemon = daemons.start(server.bare)
    server.write("environments/web.yaml", shell_env("web", log))
    server.push("add web")
    wait_for("web running", state_is(server.bare, "web", "running"), 30)

    # A broken config and a new release in one commit: neither is acted on.
    server.write("reconciler.yaml", "apiVersion: reconciler/v1\nkind: Config\nstateRef: refs/heads/main\n")
    server.write("environments/web.yaml", shell_env("web", log, release="v2"))
    server.push("release v2, and a stateRef on the desired branch")
    wait_for("the refusal reported", lambda: "reconciler.yaml is invalid" in daemon.output(), 30)
    assert "web release-v2" not in runs(log)
    assert "`stateRef`: 'refs/heads/main' is the desired-state branch" in daemon.output()

    server.write("reconciler.yaml", "apiVersion: reconciler/v1\nkind: Config\n")
    server.push("fix the config")
    wait_for("v2 released", lambda: "web release-v2" in runs(log), 30)
    wait_for("web running again", state_is(server.bare, "web", "running"), 30)
    assert "Traceback" not in daemon.output()
