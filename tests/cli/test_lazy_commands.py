"""Each command imports what it needs and no more (decision 029): start-up is paid on every command.

The processes are real ``reconcile`` runs (``reconciler.cli.main``, the
console script's entry point); what they imported is their ``sys.modules`` as
they exit, written to a file by a few lines run before ``main``.
"""

from __future__ import annotations

import importlib
import inspect
import os
import subprocess
import sys
from pathlib import Path

import typer.main

from reconciler.cli.app import COMMANDS, app, load_command
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file

#: What a plan never runs: the engine, the daemon, its web server, steps, notifications, the
#: other commands, HTTP clients, rich (a plan prints plain text; rich only draws errors and tables).
NOT_FOR_PLAN = (
    "reconciler.engine",
    "reconciler.daemon",
    "reconciler.web",
    "reconciler.steps",
    "reconciler.notify",
    "reconciler.cli.commands_state",
    "reconciler.cli.commands_check",
    "reconciler.cli.progress",
    "http.client",
    "urllib.request",
    "rich",
)

#: ``reconcile ARGS``, writing the names in ``sys.modules`` to ``$MODULES_OUT`` as it exits (a command
#: that loaded a fleet ends with ``os._exit``, which runs no exit handler).
ENTRY = """\
import atexit, os, sys
PID = os.getpid()
def dump():
    if os.getpid() == PID:
        with open(os.environ["MODULES_OUT"], "w") as f:
            f.write("\\n".join(sorted(sys.modules)))
_exit = os._exit
def dumping_exit(code):
    dump()
    _exit(code)
os._exit = dumping_exit
atexit.register(dump)
from reconciler.cli import main
main()
"""


def _reconcile(*args: str, cwd: Path) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``reconcile ARGS``: what it did, and every module it imported."""
    modules = cwd / "modules.txt"
    env = {**os.environ, "MODULES_OUT": str(modules), "NO_COLOR": "1", "COLUMNS": "250"}
    out = subprocess.run(
        [sys.executable, "-c", ENTRY, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    return out, set(modules.read_text().split())


def _among(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_plan_imports_neither_the_engine_nor_http_nor_other_commands(
    gitops: GitOpsRepo, tmp_path: Path
) -> None:
    phases = counting_phases(tmp_path / "effects.log")
    gitops.commit({"environments/web.yaml": env_file("web", phases=phases)})
    gitops.reconcile("apply", check=True)
    checked = {**phases, "check": [{"http": {"url": "http://127.0.0.1:9/{{ environment.name }}"}}]}
    gitops.commit({"environments/web.yaml": env_file("web", phases=checked, vars={"port": 8080})})

    out, imported = _reconcile("plan", "--repo", str(gitops.path), cwd=tmp_path)

    assert out.returncode in (0, 2), out.stderr[-3000:]
    assert "web" in out.stdout
    assert "reconciler.cli.commands_plan" in imported  # the report is real, and complete
    assert _among(imported, NOT_FOR_PLAN) == []


def test_status_imports_nothing_only_apply_runs(gitops: GitOpsRepo, tmp_path: Path) -> None:
    gitops.commit({"environments/web.yaml": env_file("web", phases=counting_phases(tmp_path / "log"))})
    gitops.reconcile("apply", check=True)

    out, imported = _reconcile(
        "status", "--repo", str(gitops.path), "--data-dir", str(gitops.data), cwd=tmp_path
    )

    assert out.returncode == 0, out.stderr[-3000:]
    assert "web" in out.stdout and "running" in out.stdout
    assert "reconciler.engine.status" in imported
    only_apply = ("reconciler.engine.apply", "reconciler.notify", "reconciler.cli.progress", "rich.live")
    assert _among(imported, only_apply) == []


def test_help_lists_every_command_with_its_line_and_imports_none(tmp_path: Path) -> None:
    out, imported = _reconcile("--help", cwd=tmp_path)

    assert out.returncode == 0, out.stderr[-3000:]
    listed = [line.split()[1] for line in out.stdout.splitlines() if line.startswith("│ ") and "  " in line]
    assert [name for name in listed if name in COMMANDS] == list(COMMANDS)
    for name, (_, summary) in COMMANDS.items():
        assert summary in out.stdout, name
    assert [m for m in imported if m.startswith("reconciler.cli.commands_")] == []
    # Nor git, the planner or the store: ``--help``, ``--version`` and completing a command's name
    # read none of them.
    assert _among(imported, ("pygit2", "reconciler.views", "reconciler.planner", "reconciler.store")) == []


def test_a_commands_own_help_imports_its_module_only(tmp_path: Path) -> None:
    out, imported = _reconcile("plan", "--help", cwd=tmp_path)

    assert out.returncode == 0, out.stderr[-3000:]
    assert "--base" in out.stdout  # plan's own options, from its module
    assert "reconciler.cli.commands_plan" in imported
    assert _among(imported, ("reconciler.cli.commands_state", "reconciler.engine")) == []


def test_the_table_names_every_command_its_module_and_its_first_line() -> None:
    """``COMMANDS`` is what ``--help`` lists without importing: it must say what the modules do."""
    for module in sorted({module for module, _ in COMMANDS.values()}):
        importlib.import_module(f"reconciler.cli.{module}")
    registered = {
        info.name or typer.main.get_command_name(info.callback.__name__ if info.callback else ""): info
        for info in app.registered_commands
    }
    assert set(registered) == set(COMMANDS)
    for name, (module, summary) in COMMANDS.items():
        command = load_command(name)
        assert command.name == name
        callback = registered[name].callback
        assert callback is not None and callback.__module__ == f"reconciler.cli.{module}", name
        first = inspect.cleandoc(command.help or "").split("\n\n")[0].replace("\n", " ")
        assert first == summary, name
