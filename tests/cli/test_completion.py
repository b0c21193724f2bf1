"""Shell completion as a shell runs it: the script sourced, the words typed, the choices offered."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SCRIPT = BIN / "reconcile"
pytestmark = pytest.mark.skipif(
    not SCRIPT.exists(), reason="the console script is installed by `pip install -e .`"
)


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "HOME": str(home), "NO_COLOR": "1"}


def _bash_complete(setup: str, words: list[str], home: Path) -> list[str]:
    """What bash offers for ``words`` (the last one being completed) after running ``setup``."""
    quoted = " ".join(f"'{w}'" for w in words)
    program = (
        f"{setup}\n"
        f"COMP_WORDS=({quoted}); COMP_CWORD={len(words) - 1}\n"
        "spec=$(complete -p reconcile) || exit 3\n"
        'func=$(echo "$spec" | sed -E "s/.* -F ([^ ]+) .*/\\1/")\n'
        '"$func" reconcile "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"\n'
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        capture_output=True,
        text=True,
        env=_env(home),
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [line for line in out.stdout.splitlines() if line]


def test_bash_completes_commands_options_and_their_values(tmp_path: Path) -> None:
    setup = "source <(reconcile completion bash)"
    assert _bash_complete(setup, ["reconcile", "sta"], tmp_path) == ["status"]
    assert set(_bash_complete(setup, ["reconcile", "s"], tmp_path)) >= {"status", "show", "schema"}
    assert _bash_complete(setup, ["reconcile", "status", "--form"], tmp_path) == ["--format"]
    assert _bash_complete(setup, ["reconcile", "status", "--format", ""], tmp_path) == ["text", "json"]
    assert _bash_complete(setup, ["reconcile", "completion", ""], tmp_path) == ["bash", "zsh", "fish"]


def test_typers_install_completion_writes_a_script_bash_then_completes_with(tmp_path: Path) -> None:
    """``--install-completion`` said ``Shell bash not supported``; run from bash it now installs."""
    out = subprocess.run(
        # A lone `-c` command is exec'd in bash's place, so typer would see whatever ran the tests
        # (make's sh under `make check`) as the shell: a second command keeps bash the parent.
        ["bash", "--norc", "--noprofile", "-c", "reconcile --install-completion; exit $?"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    installed = tmp_path / ".bash_completions" / "reconcile.sh"
    assert installed.is_file() and str(installed) in (tmp_path / ".bashrc").read_text()
    assert _bash_complete(f"source {installed}", ["reconcile", "hist"], tmp_path) == ["history"]
    shown = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", "reconcile --show-completion; exit $?"],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=120,
        check=False,
    )
    assert shown.returncode == 0 and "complete -o default -F _reconcile_completion reconcile" in shown.stdout


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_zsh_and_fish_scripts_ask_reconcile_for_the_choices(shell: str, tmp_path: Path) -> None:
    script = subprocess.run(
        [str(SCRIPT), "completion", shell], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "_RECONCILE_COMPLETE=complete_" + shell in script
    if shutil.which(shell):  # the shell itself parses the script
        assert subprocess.run([shell, "-n"], input=script, text=True, timeout=60, check=False).returncode == 0
    # What the script runs when Tab is pressed after "reconcile hist":
    asked = subprocess.run(
        [str(SCRIPT)],
        capture_output=True,
        text=True,
        env={
            **_env(tmp_path),
            "_RECONCILE_COMPLETE": f"complete_{shell}",
            "_TYPER_COMPLETE_ARGS": "reconcile hist",
            "_TYPER_COMPLETE_FISH_ACTION": "get-args",
        },
        timeout=120,
        check=False,
    )
    assert asked.returncode == 0, asked.stderr
    assert "history" in asked.stdout and "status" not in asked.stdout


def test_an_unknown_shell_is_a_usage_error(tmp_path: Path) -> None:
    out = subprocess.run(
        [str(SCRIPT), "completion", "tcsh"], capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 2 and "bash" in out.stderr and "fish" in out.stderr


def test_environment_names_complete_from_the_repository(tmp_path: Path) -> None:
    repo = tmp_path / "gitops"
    subprocess.run([str(SCRIPT), "init", str(repo)], capture_output=True, timeout=120, check=True)
    (repo / "environments" / "staging.yaml").write_text("kind: Environment\n")
    (repo / "environments" / "shop.yaml").write_text("kind: Environment\n")
    setup = f"cd {repo} && source <(reconcile completion bash)"
    assert _bash_complete(setup, ["reconcile", "show", "s"], tmp_path) == ["shop", "staging"]
    assert _bash_complete(setup, ["reconcile", "apply", "web", "ex"], tmp_path) == ["example"]
    elsewhere = f"cd {tmp_path} && source <(reconcile completion bash)"
    assert _bash_complete(elsewhere, ["reconcile", "log", "--repo", str(repo), "sh"], tmp_path) == ["shop"]
    assert _bash_complete(elsewhere, ["reconcile", "show", "s"], tmp_path) == []  # no repository here
