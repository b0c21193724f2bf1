"""The pure halves of the runners: commands compared by equality."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from reconciler.desired.models import AnsibleStep, HttpStep, SecretRef, ShellStep, TofuStep
from reconciler.domain.values import ErrorKind
from reconciler.steps import redact
from reconciler.steps.ansible import CALLBACK_PLUGINS, build_ansible_command
from reconciler.steps.errors import StepRefused
from reconciler.steps.http import HttpProbe, build_http_probe
from reconciler.steps.process import Command, GeneratedFile
from reconciler.steps.shell import build_shell_command, env_name
from reconciler.steps.tofu import build_tofu_commands, module_slug, parse_outputs, select_binary
from tests.steps.conftest import ContextFactory


def test_shell_command_carries_reconcile_variables_and_step_env(
    make_ctx: ContextFactory, checkout: Path, data_dir: Path
) -> None:
    ctx = make_ctx(vars={"http-port": 8080, "name": "web", "flags": {"a": True}}, outputs={"ip": "10.0.0.5"})
    command = build_shell_command(ShellStep(run="./start.sh", env={"MODE": "fast"}, cwd="scripts"), ctx)
    assert command == Command(
        label="shell",
        argv=("/bin/sh", "-c", "./start.sh"),
        cwd=checkout / "scripts",
        env={
            "RECONCILE_ENVIRONMENT": "web",
            "RECONCILE_DESIRED_COMMIT": "c0ffee",
            "RECONCILE_DATA_DIR": str(data_dir),
            "RECONCILE_VAR_FLAGS": '{"a":true}',
            "RECONCILE_VAR_HTTP_PORT": "8080",
            "RECONCILE_VAR_NAME": "web",
            "RECONCILE_OUTPUT_IP": "10.0.0.5",
            "MODE": "fast",
        },
    )


def test_env_names_are_upper_cased_with_non_alphanumerics_as_underscores() -> None:
    assert env_name("RECONCILE_VAR_", "db.host-name") == "RECONCILE_VAR_DB_HOST_NAME"


def test_an_unrendered_secret_reference_is_refused(make_ctx: ContextFactory) -> None:
    with pytest.raises(StepRefused) as refused:
        build_shell_command(ShellStep(run="true", env={"TOKEN": SecretRef(from_env="TOKEN")}), make_ctx())
    assert refused.value.kind is ErrorKind.CONFIGURATION
    assert "fromEnv: TOKEN" in refused.value.summary


def test_tofu_commands_run_in_the_per_environment_working_directory(
    make_ctx: ContextFactory, data_dir: Path
) -> None:
    body = TofuStep(module="infra/vm", vars={"name": "web", "size": 2})
    commands = build_tofu_commands(body, make_ctx(), "/usr/bin/tofu")
    workdir = data_dir / "tofu" / "infra__vm"
    env = {"TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_INPUT": "0"}
    var_file = workdir / ".reconcile.tfvars.json"
    assert commands.workdir == workdir
    assert commands.init == Command(
        label="tofu init", argv=("/usr/bin/tofu", "init", "-input=false", "-no-color"), cwd=workdir, env=env
    )
    assert commands.action == Command(
        label="tofu apply",
        argv=(
            "/usr/bin/tofu",
            "apply",
            "-input=false",
            "-auto-approve",
            "-no-color",
            f"-var-file={var_file}",
        ),
        cwd=workdir,
        env=env,
        files=(
            GeneratedFile(
                var_file, json.dumps({"name": "web", "size": 2}, indent=2, sort_keys=True) + "\n", keep=True
            ),
        ),
    )
    assert commands.action.files[0].mode == 0o600
    assert commands.output == Command(
        label="tofu output", argv=("/usr/bin/tofu", "output", "-json", "-no-color"), cwd=workdir, env=env
    )


def test_tofu_destroy_reads_no_outputs(make_ctx: ContextFactory) -> None:
    commands = build_tofu_commands(
        TofuStep(module="infra/vm", action="destroy"), make_ctx(), "/bin/terraform"
    )
    assert commands.action.argv[:3] == ("/bin/terraform", "destroy", "-input=false")
    assert commands.action.label == "terraform destroy"
    assert commands.output is None


@pytest.mark.parametrize(
    ("module", "slug"),
    [("infra/vm", "infra__vm"), ("./infra/vm/", "infra__vm"), ("net", "net"), ("a b/c", "a_b__c")],
)
def test_module_slug(module: str, slug: str) -> None:
    assert module_slug(module) == slug


def test_binary_is_the_steps_else_tofu_else_terraform() -> None:
    on_path = {"tofu": "/bin/tofu", "terraform": "/bin/terraform", "tf-1.9": "/opt/tf-1.9"}
    assert select_binary(TofuStep(module="m"), on_path.get) == "/bin/tofu"
    assert select_binary(TofuStep(module="m"), {"terraform": "/bin/terraform"}.get) == "/bin/terraform"
    assert select_binary(TofuStep(module="m", binary="tf-1.9"), on_path.get) == "/opt/tf-1.9"
    assert select_binary(TofuStep(module="m", binary="/x/tofu"), on_path.get) == "/x/tofu"
    with pytest.raises(StepRefused, match="neither tofu nor terraform"):
        select_binary(TofuStep(module="m"), {}.get)


def test_outputs_keep_the_non_sensitive_ones_as_strings() -> None:
    document = {
        "ip": {"sensitive": False, "type": "string", "value": "10.0.0.5"},
        "ports": {"sensitive": False, "type": ["list", "number"], "value": [80, 443]},
        "password": {"sensitive": True, "type": "string", "value": "hunter2"},
    }
    assert parse_outputs(document) == {"ip": "10.0.0.5", "ports": "[80,443]"}


def test_ansible_command_defaults_to_a_local_inventory(
    make_ctx: ContextFactory, checkout: Path, data_dir: Path
) -> None:
    ctx = make_ctx(vars={"greeting": "hi", "port": 1}, outputs={"ip": "10.0.0.5"})
    built = build_ansible_command(
        AnsibleStep(playbook="ansible/site.yml", extra_vars={"port": 2}),
        ctx,
        "/venv/ansible-playbook",
        "/venv/python",
    )
    base = data_dir / "ansible"
    assert built.events_file == base / "events.jsonl"
    command = built.command
    assert command.argv == (
        "/venv/ansible-playbook",
        "-i",
        str(base / "inventory.ini"),
        "--extra-vars",
        f"@{base / 'extra-vars.json'}",
        str(checkout / "ansible/site.yml"),
    )
    assert command.cwd == checkout
    extra, inventory = command.files
    assert json.loads(extra.content) == {
        "greeting": "hi",
        "port": 2,
        "reconcile_environment": "web",
        "reconcile_desired_commit": "c0ffee",
        "reconcile_data_dir": str(data_dir),
        "reconcile_outputs": {"ip": "10.0.0.5"},
    }
    assert extra.mode == 0o600
    assert not extra.keep
    assert inventory.content == "localhost ansible_connection=local ansible_python_interpreter=/venv/python\n"
    assert command.env["ANSIBLE_HOME"] == str(base / "home")
    assert command.env["ANSIBLE_LOCAL_TEMP"] == str(base / "tmp")
    assert command.env["ANSIBLE_CALLBACK_PLUGINS"] == str(CALLBACK_PLUGINS)
    assert command.env["ANSIBLE_NOCOLOR"] == "1"
    assert command.env["ANSIBLE_RETRY_FILES_ENABLED"] == "0"


def test_ansible_inventory_from_the_repository(make_ctx: ContextFactory, checkout: Path) -> None:
    built = build_ansible_command(
        AnsibleStep(playbook="site.yml", inventory="hosts.ini"),
        make_ctx(),
        "ansible-playbook",
        sys.executable,
    )
    assert built.command.argv[1:3] == ("-i", str(checkout / "hosts.ini"))
    assert len(built.command.files) == 1


def test_http_probe_refuses_other_schemes() -> None:
    assert build_http_probe(HttpStep(url="http://127.0.0.1:1/health")) == HttpProbe(
        "http://127.0.0.1:1/health", 200, 30
    )
    with pytest.raises(StepRefused, match="http:// or https://"):
        build_http_probe(HttpStep(url="file:///etc/passwd"))


def test_redact_hides_every_secret_and_each_line_of_a_multi_line_one() -> None:
    secrets = frozenset({"hunter2", "line-one\nline-two", ""})
    assert redact("pw=hunter2 x", secrets) == "pw=[REDACTED] x"
    assert redact("got line-two here", secrets) == "got [REDACTED] here"
    assert redact("nothing", frozenset()) == "nothing"
