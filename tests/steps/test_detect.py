"""Looking for drift with the step runners (SPEC 3.1): what each kind of step is asked, and how it answers."""

from __future__ import annotations

from pathlib import Path

from reconciler.desired.models import Step, TofuStep
from reconciler.steps import LocalStepRunner
from reconciler.steps.detect import changed_summary, has_probe, plan_command, plan_summary
from reconciler.steps.tofu import build_tofu_commands
from tests.steps.conftest import ContextFactory


def step(data: dict[str, object]) -> Step:
    return Step.model_validate(data)


def test_which_steps_are_looked_at() -> None:
    assert has_probe(step({"tofu": {"module": "infra/vm"}}))
    assert not has_probe(step({"tofu": {"module": "infra/vm", "action": "destroy"}}))
    assert has_probe(step({"ansible": {"playbook": "site.yml"}}))
    assert has_probe(step({"shell": {"run": "make", "check": "make -q"}}))
    assert not has_probe(step({"shell": {"run": "make"}}))  # a shell step without check is not re-run
    assert not has_probe(step({"http": {"url": "http://127.0.0.1/"}}))


def test_the_plan_runs_beside_the_apply_with_its_var_file_and_no_state_lock(make_ctx: ContextFactory) -> None:
    commands = build_tofu_commands(TofuStep(module="infra/vm", vars={"a": 1}), make_ctx(), "/bin/terraform")
    plan = plan_command(commands.action, "/bin/terraform")
    var_file = next(a for a in commands.action.argv if a.startswith("-var-file="))
    assert plan.argv == (
        "/bin/terraform",
        "plan",
        "-detailed-exitcode",
        "-input=false",
        "-lock=false",
        "-no-color",
        var_file,
    )
    assert plan.cwd == commands.action.cwd
    assert plan.files == commands.action.files
    assert plan.label == "terraform plan"


def test_summaries_name_what_would_change() -> None:
    output = (
        "Terraform will perform the following actions:\n...\nPlan: 1 to add, 0 to change, 2 to destroy.\n"
    )
    assert plan_summary(output) == "Plan: 1 to add, 0 to change, 2 to destroy."
    assert plan_summary("Changes to Outputs:\n  + x = 1\n") == "only outputs would change"
    assert changed_summary(["'a' on h"]) == "1 task would change: 'a' on h"
    many = [f"'t{i}' on h" for i in range(5)]
    assert changed_summary(many) == "5 tasks would change: 't0' on h, 't1' on h, 't2' on h and 2 more"


def test_a_shell_check_is_run_with_the_steps_environment_and_its_exit_is_the_answer(
    make_ctx: ContextFactory, tmp_path: Path
) -> None:
    runner = LocalStepRunner()
    marker = tmp_path / "marker"
    probe = step(
        {
            "shell": {
                "run": "false",
                "check": 'test -e "$MARKER" || { echo "gone: $MARKER"; exit 3; }',
                "env": {"MARKER": str(marker)},
            }
        }
    )
    missing = runner.run(probe, make_ctx(detect=True))
    assert missing.ok
    assert missing.drifted
    assert missing.summary == f"check exited 3: gone: {marker}"
    marker.touch()
    present = runner.run(probe, make_ctx(detect=True))
    assert present.ok
    assert not present.drifted


def test_a_shell_check_that_times_out_is_a_failed_look_not_drift(make_ctx: ContextFactory) -> None:
    probe = step({"shell": {"run": "true", "check": "sleep 5", "timeoutSeconds": 1}})
    outcome = LocalStepRunner().run(probe, make_ctx(detect=True))
    assert not outcome.ok
    assert not outcome.drifted
    assert "timed out" in outcome.summary
