"""Step templates: a sandbox, undefined names are errors, secrets come from the environment."""

from __future__ import annotations

import pytest

from reconciler.desired.models import Step
from reconciler.desired.templating import TemplateError, render_step, resolve_vars, template_problems


def step(data: dict[str, object]) -> Step:
    return Step.model_validate(data)


def test_fields_are_rendered_with_environment_vars_and_outputs() -> None:
    rendered = render_step(
        step({"http": {"url": "http://{{ outputs.ip }}:{{ vars.port }}/{{ environment.name }}"}}),
        environment="web",
        vars={"port": 8080},
        outputs={"ip": "10.0.0.5"},
        environ={},
    )
    assert rendered.step.http is not None
    assert rendered.step.http.url == "http://10.0.0.5:8080/web"
    assert rendered.secrets == frozenset()


def test_undefined_name_is_an_error_naming_the_field() -> None:
    with pytest.raises(TemplateError) as info:
        render_step(
            step({"tofu": {"module": "infra/vm", "vars": {"ip": "{{ outputs.ip }}"}}}),
            environment="web",
            vars={},
            outputs={},
            environ={},
        )
    assert info.value.field == "tofu.vars.ip"
    assert "ip" in info.value.message


def test_shell_run_is_never_templated() -> None:
    rendered = render_step(
        step({"shell": {"run": "echo {{ vars.x }}", "cwd": "{{ vars.x }}"}}),
        environment="web",
        vars={"x": "app"},
        outputs={},
        environ={},
    )
    assert rendered.step.shell is not None
    assert rendered.step.shell.run == "echo {{ vars.x }}"
    assert rendered.step.shell.cwd == "app"


def test_secrets_are_resolved_and_reported_for_redaction() -> None:
    rendered = render_step(
        step({"tofu": {"module": "m", "vars": {"token": {"fromEnv": "TOKEN"}, "db": "{{ vars.password }}"}}}),
        environment="web",
        vars={"password": {"fromEnv": "DB_PASSWORD"}},
        outputs={},
        environ={"TOKEN": "t0k3n", "DB_PASSWORD": "hunter2"},
    )
    assert rendered.step.tofu is not None
    assert rendered.step.tofu.vars == {"token": "t0k3n", "db": "hunter2"}
    assert rendered.secrets == {"t0k3n", "hunter2"}


def test_missing_secret_names_the_variable() -> None:
    with pytest.raises(TemplateError, match="environment variable DB_PASSWORD is not set"):
        resolve_vars({"password": {"fromEnv": "DB_PASSWORD"}}, {})


def test_shell_env_secret_is_resolved() -> None:
    rendered = render_step(
        step({"shell": {"run": "deploy", "env": {"TOKEN": {"fromEnv": "CI_TOKEN"}}}}),
        environment="web",
        vars={},
        outputs={},
        environ={"CI_TOKEN": "s3cr3t"},
    )
    assert rendered.step.shell is not None
    assert rendered.step.shell.env == {"TOKEN": "s3cr3t"}
    assert rendered.secrets == {"s3cr3t"}


def test_sandbox_refuses_unsafe_attribute_access() -> None:
    with pytest.raises(TemplateError):
        render_step(
            step({"http": {"url": "{{ vars.__class__.__mro__ }}"}}),
            environment="web",
            vars={},
            outputs={},
            environ={},
        )


def test_static_checks_report_syntax_unknown_names_and_undeclared_vars() -> None:
    assert template_problems(step({"http": {"url": "{{ outputs.ip "}}))[0].startswith(
        "`http.url`: invalid template syntax"
    )
    assert "the template uses env" in template_problems(step({"http": {"url": "{{ env.HOME }}"}}))[0]
    assert (
        "environment.region is not defined"
        in template_problems(step({"http": {"url": "{{ environment.region }}"}}))[0]
    )
    assert (
        "vars.port is not declared"
        in template_problems(step({"http": {"url": "{{ vars.port }}"}}), declared_vars={"http_port"})[0]
    )
    assert template_problems(step({"http": {"url": "{{ vars.port }}"}}), declared_vars={"port"}) == []


@pytest.mark.parametrize(
    "template",
    [
        '{{ environment.name | attr("__class__") }}',
        "{{ vars.__class__ }}",
        '{{ outputs["__init__"] }}',
    ],
)
def test_validate_names_a_sandbox_escape_before_anything_runs(template: str) -> None:
    problems = template_problems(step({"http": {"url": template}}))
    assert len(problems) == 1
    assert problems[0].startswith("`http.url`: the template reads __")
    assert "which the sandbox refuses" in problems[0]


def test_ordinary_templates_are_not_taken_for_escapes() -> None:
    assert template_problems(step({"http": {"url": "http://{{ outputs.ip }}:{{ vars['port'] }}/"}})) == []
