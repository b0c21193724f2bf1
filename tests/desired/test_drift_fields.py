"""``shell.check`` and ``spec.drift`` (SPEC 2.3, 3.1): accepted, refused naming file and line."""

from __future__ import annotations

from pathlib import Path

from reconciler.cli.commands_desired import environment_schema
from reconciler.desired.models import Step
from reconciler.desired.templating import render_step, template_problems
from tests.desired.helpers import load, make_repo
from tests.desired.test_refusals import ENV_HEAD, refusal

CHECKED = (
    ENV_HEAD
    + "  desiredState: running\n"
    + "  drift: {detect: true, heal: false}\n"
    + "  phases:\n"
    + "    provision: [{shell: {run: ./scripts/release.sh, check: test -e /tmp/x}}]\n"
)


def test_a_shell_check_and_spec_drift_load(tmp_path: Path) -> None:
    snapshot = load(make_repo(tmp_path, {"environments/ok.yaml": CHECKED.replace("name: bad", "name: ok")}))
    env = snapshot.environments["ok"]
    (step,) = env.steps("provision")
    assert step.shell is not None
    assert step.shell.check == "test -e /tmp/x"
    assert (env.spec.drift.detect, env.spec.drift.heal) == (True, False)
    assert snapshot.environments["web"].spec.drift.heal  # the default


def test_a_check_that_is_not_a_string_is_refused_at_its_line(tmp_path: Path) -> None:
    found = refusal(tmp_path, CHECKED.replace("check: test -e /tmp/x", "check: [1]"))
    assert len(found) == 1
    assert found[0].startswith("environments/bad.yaml:9:53:")
    assert "`spec.phases.provision[0].shell.check`" in found[0]
    assert "valid string" in found[0]


def test_an_unknown_drift_field_lists_the_accepted_ones(tmp_path: Path) -> None:
    found = refusal(tmp_path, CHECKED.replace("heal: false", "heel: false"))
    assert found[0].startswith("environments/bad.yaml:7:")
    assert "unknown field `spec.drift.heel`" in found[0]
    assert "heal" in found[0]


def test_a_check_is_never_templated_nor_reported_as_a_template() -> None:
    step = Step.model_validate({"shell": {"run": "true", "check": "test {{ vars.x }} = app"}})
    rendered = render_step(step, environment="web", vars={"x": "app"}, outputs={}, environ={})
    assert rendered.step.shell is not None
    assert rendered.step.shell.check == "test {{ vars.x }} = app"
    assert template_problems(step, declared_vars=set()) == []


def test_the_schema_offers_check_and_drift_for_editors() -> None:
    schema = environment_schema()
    defs = schema["$defs"]
    assert "check" in defs["ShellStep"]["properties"]
    assert set(defs["DriftSpec"]["properties"]) == {"detect", "heal"}
