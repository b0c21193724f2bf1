"""Ansible steps through the real ansible-playbook on localhost."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest

from reconciler.domain.values import ErrorKind
from reconciler.steps import LocalStepRunner
from tests.steps.conftest import ContextFactory, step

BESIDE_PYTHON = Path(sys.executable).parent / "ansible-playbook"
pytestmark = pytest.mark.skipif(
    not BESIDE_PYTHON.exists() and shutil.which("ansible-playbook") is None,
    reason="ansible-playbook is neither next to Python nor on PATH",
)

WRITE = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Write the greeting
      ansible.builtin.copy:
        dest: "{{ reconcile_data_dir }}/greeting.txt"
        content: >
          {{ greeting }} {{ reconcile_environment }} {{ reconcile_outputs.ip }} {{ port }} {{ token }}
        mode: "0600"
"""

FAIL = """
- hosts: localhost
  gather_facts: false
  tasks:
    - name: Succeed first
      ansible.builtin.debug:
        msg: fine
    - name: Fail on purpose
      ansible.builtin.fail:
        msg: "the disk is full ({{ token }})"
"""

runner = LocalStepRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A HOME of its own, to prove nothing is written to ``~``."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


def test_a_playbook_runs_on_localhost_with_the_environments_vars(
    make_ctx: ContextFactory, checkout: Path, data_dir: Path, home: Path
) -> None:
    (checkout / "ansible").mkdir()
    (checkout / "ansible" / "site.yml").write_text(WRITE)
    lines: list[str] = []
    ctx = make_ctx(
        vars={"greeting": "hello", "port": 1, "token": "t0k3n-value"},
        outputs={"ip": "10.0.0.5"},
        secrets=frozenset({"t0k3n-value"}),
        log=lines.append,
    )
    outcome = runner.run(step({"ansible": {"playbook": "ansible/site.yml", "extraVars": {"port": 2}}}), ctx)
    assert outcome.ok, outcome.output_tail
    assert outcome.summary == "ansible-playbook exited 0"
    assert outcome.step == "ansible ansible/site.yml"
    assert (data_dir / "greeting.txt").read_text() == "hello web 10.0.0.5 2 t0k3n-value\n"
    assert any("TASK [Write the greeting]" in line for line in lines)
    assert "PLAY RECAP" in outcome.output_tail
    results = [e for e in outcome.events if e["event"] != "stats"]
    assert results == [
        {
            "event": "ok",
            "play": "localhost",
            "task": "Write the greeting",
            "action": "ansible.builtin.copy",
            "host": "localhost",
            "changed": True,
            "msg": "",
        }
    ]
    assert outcome.events[-1]["event"] == "stats"
    assert outcome.events[-1]["hosts"]["localhost"]["changed"] == 1
    assert list(home.iterdir()) == []
    assert sorted(p.name for p in (data_dir / "ansible").iterdir()) == ["home", "tmp", "tmp-remote"]


def test_a_failing_playbook_reports_the_task_that_failed(
    make_ctx: ContextFactory, checkout: Path, home: Path
) -> None:
    (checkout / "fail.yml").write_text(FAIL)
    secret = "t0k3n-value"
    lines: list[str] = []
    ctx = make_ctx(vars={"token": secret}, secrets=frozenset({secret}), log=lines.append)
    outcome = runner.run(step({"ansible": {"playbook": "fail.yml"}}), ctx)
    assert not outcome.ok
    assert outcome.error_kind is ErrorKind.COMMAND_FAILED
    assert outcome.exit_code == 2
    assert outcome.summary == (
        "ansible-playbook exited 2: task 'Fail on purpose' failed on localhost: the disk is full ([REDACTED])"
    )
    assert [e["event"] for e in outcome.events] == ["ok", "failed", "stats"]
    assert secret not in outcome.output_tail
    assert secret not in json.dumps(list(outcome.events))
    assert all(secret not in line for line in lines)
    assert "the disk is full ([REDACTED])" in outcome.output_tail


def test_a_playbook_outside_the_checkout_is_refused(
    make_ctx: ContextFactory, checkout: Path, tmp_path: Path
) -> None:
    (tmp_path / "evil.yml").write_text(FAIL)
    (checkout / "evil.yml").symlink_to(tmp_path / "evil.yml")
    for playbook in ("evil.yml", "../evil.yml", str(tmp_path / "evil.yml"), "absent.yml"):
        outcome = runner.run(step({"ansible": {"playbook": playbook}}), make_ctx())
        assert outcome.error_kind is ErrorKind.CONFIGURATION, playbook
    (checkout / "site.yml").write_text(WRITE)
    (checkout / "hosts").symlink_to(tmp_path / "evil.yml")
    outcome = runner.run(step({"ansible": {"playbook": "site.yml", "inventory": "hosts"}}), make_ctx())
    assert outcome.error_kind is ErrorKind.CONFIGURATION
    assert "inventory" in outcome.summary
