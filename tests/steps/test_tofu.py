"""Tofu steps through the real terraform/tofu binary, offline (``terraform_data`` is builtin)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from reconciler.domain.values import ErrorKind
from reconciler.steps import LocalStepRunner
from tests.steps.conftest import ContextFactory, step

BINARY = shutil.which("tofu") or shutil.which("terraform")
pytestmark = pytest.mark.skipif(BINARY is None, reason="neither tofu nor terraform is on PATH")

MODULE = """
variable "name" {
  type = string
}

variable "password" {
  type      = string
  sensitive = true
  default   = "none"
}

variable "marker" {
  type = string
}

resource "terraform_data" "marker" {
  input = var.name

  provisioner "local-exec" {
    command = "echo created $NAME >> $MARKER"
    environment = {
      NAME   = var.name
      MARKER = var.marker
    }
  }

  provisioner "local-exec" {
    when    = destroy
    command = "echo destroyed >> ${self.triggers_replace}"
  }

  triggers_replace = var.marker
}

output "name" {
  value = terraform_data.marker.output
}

output "ports" {
  value = [80, 443]
}

output "password" {
  value     = var.password
  sensitive = true
}
"""

runner = LocalStepRunner()


@pytest.fixture
def module(checkout: Path) -> Path:
    path = checkout / "infra" / "vm"
    path.mkdir(parents=True)
    (path / "main.tf").write_text(MODULE)
    return path


def test_state_persists_across_runs_and_destroy_removes(
    make_ctx: ContextFactory, module: Path, data_dir: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker.log"
    apply = step({"tofu": {"module": "infra/vm", "vars": {"name": "web", "marker": str(marker)}}})
    lines: list[str] = []

    first = runner.run(apply, make_ctx(log=lines.append))
    assert first.ok, first.output_tail
    assert first.summary.endswith(" apply succeeded")
    assert first.step == "tofu apply infra/vm"
    assert marker.read_text() == "created web\n"
    workdir = data_dir / "tofu" / "infra__vm"
    assert (workdir / "terraform.tfstate").is_file()
    # Kept (no secret in it) so that a person can run `terraform plan -var-file=...` there.
    assert (workdir / ".reconcile.tfvars.json").stat().st_mode & 0o777 == 0o600
    assert any("Apply complete! Resources: 1 added" in line for line in lines)

    second = runner.run(apply, make_ctx())
    assert second.ok, second.output_tail
    assert "No changes." in second.output_tail
    assert marker.read_text() == "created web\n"

    destroy = runner.run(
        step(
            {
                "tofu": {
                    "module": "infra/vm",
                    "action": "destroy",
                    "vars": {"name": "web", "marker": str(marker)},
                }
            }
        ),
        make_ctx(),
    )
    assert destroy.ok, destroy.output_tail
    assert destroy.step == "tofu destroy infra/vm"
    assert destroy.outputs == {}
    assert marker.read_text() == "created web\ndestroyed\n"
    assert "Resources: 1 destroyed" in destroy.output_tail


def test_non_sensitive_outputs_become_outputs_and_secrets_stay_hidden(
    make_ctx: ContextFactory, module: Path, tmp_path: Path
) -> None:
    lines: list[str] = []
    secret = "pa55-w0rd-xyz"
    outcome = runner.run(
        step(
            {
                "tofu": {
                    "module": "infra/vm",
                    "vars": {"name": "web", "marker": str(tmp_path / "m"), "password": secret},
                }
            }
        ),
        make_ctx(secrets=frozenset({secret}), log=lines.append),
    )
    assert outcome.ok, outcome.output_tail
    assert dict(outcome.outputs) == {"name": "web", "ports": "[80,443]"}
    assert secret not in outcome.output_tail
    assert all(secret not in line for line in lines)
    # A var file holding a secret is removed after the run.
    assert not (tmp_path / "data" / "web" / "tofu" / "infra__vm" / ".reconcile.tfvars.json").exists()


def test_a_failing_apply_names_the_binary_and_exit_code(make_ctx: ContextFactory, checkout: Path) -> None:
    broken = checkout / "infra" / "broken"
    broken.mkdir(parents=True)
    (broken / "main.tf").write_text(
        'resource "terraform_data" "x" {\n  provisioner "local-exec" {\n    command = "exit 7"\n  }\n}\n'
    )
    outcome = runner.run(step({"tofu": {"module": "infra/broken"}}), make_ctx())
    assert not outcome.ok
    assert outcome.error_kind is ErrorKind.COMMAND_FAILED
    assert outcome.exit_code == 1
    assert outcome.summary == f"{Path(BINARY or '').name} apply exited 1"
    assert "exit status 7" in outcome.output_tail


def test_files_removed_from_the_module_leave_the_working_directory(
    make_ctx: ContextFactory, module: Path, data_dir: Path, tmp_path: Path
) -> None:
    (module / "extra.tf").write_text('output "extra" {\n  value = "yes"\n}\n')
    apply = step({"tofu": {"module": "infra/vm", "vars": {"name": "web", "marker": str(tmp_path / "m")}}})
    assert runner.run(apply, make_ctx()).outputs["extra"] == "yes"
    (module / "extra.tf").unlink()
    outcome = runner.run(apply, make_ctx())
    assert outcome.ok, outcome.output_tail
    assert "extra" not in outcome.outputs
    assert not (data_dir / "tofu" / "infra__vm" / "extra.tf").exists()


def test_a_module_outside_the_checkout_is_refused(
    make_ctx: ContextFactory, checkout: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "main.tf").write_text("")
    (checkout / "linked").symlink_to(outside)
    for module in ("linked", "../outside", str(outside)):
        outcome = runner.run(step({"tofu": {"module": module}}), make_ctx())
        assert outcome.error_kind is ErrorKind.CONFIGURATION, module
        assert outcome.exit_code is None


def test_a_symlink_inside_the_module_pointing_out_is_refused(
    make_ctx: ContextFactory, module: Path, tmp_path: Path
) -> None:
    secret_file = tmp_path / "secret.tf"
    secret_file.write_text("")
    (module / "leak.tf").symlink_to(secret_file)
    outcome = runner.run(step({"tofu": {"module": "infra/vm"}}), make_ctx())
    assert outcome.error_kind is ErrorKind.CONFIGURATION
    assert "symlink points outside the repository" in outcome.summary


def test_a_missing_binary_is_a_configuration_error(make_ctx: ContextFactory, module: Path) -> None:
    outcome = runner.run(step({"tofu": {"module": "infra/vm", "binary": "no-such-tofu"}}), make_ctx())
    assert outcome.error_kind is ErrorKind.CONFIGURATION
    assert "no-such-tofu" in outcome.summary


def test_every_step_process_carries_the_markers_that_find_its_orphans(
    make_ctx: ContextFactory, module: Path, tmp_path: Path
) -> None:
    """Not only shell steps: a tofu process left by a killed reconciler must be findable too."""
    seen = tmp_path / "environ"
    fake = tmp_path / "fake-tofu"
    fake.write_text(f'#!/bin/sh\nenv >> {seen}\n[ "$1" = output ] && echo "{{}}"\nexit 0\n')
    fake.chmod(0o755)
    ctx = make_ctx(lock_id="5f0c3c1e-0000-4000-8000-000000000001")
    outcome = LocalStepRunner().run(step({"tofu": {"module": "infra/vm", "binary": str(fake)}}), ctx)
    assert outcome.ok, outcome.summary
    lines = seen.read_text().splitlines()
    assert "RECONCILE_LOCK_ID=5f0c3c1e-0000-4000-8000-000000000001" in lines
    assert "RECONCILE_ENVIRONMENT=web" in lines
    assert f"RECONCILE_DATA_DIR={ctx.data_dir}" in lines
