"""``action.yml`` and the workflows against GitHub's schemas; the action's bash through shellcheck.

The schemas are the ones check-jsonschema vendors from SchemaStore, so this
runs offline. A negative control for each shows the check can fail.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.timeout(120)


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        pytest.skip(f"{name} is not installed (it is in the dev extras: make setup installs it)")
    return str(path)


def schema_check(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_action_yml_is_valid_action_metadata(tmp_path: Path) -> None:
    done = schema_check("vendor.github-actions", ROOT / "action.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    broken = tmp_path / "action.yml"
    broken.write_text((ROOT / "action.yml").read_text().replace("      shell: bash\n", "", 1))
    assert schema_check("vendor.github-actions", broken).returncode != 0, "a run step without shell: passed"


def test_the_workflows_are_valid_workflows() -> None:
    files = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert files
    done = schema_check("vendor.github-workflows", *files)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_bash_step_of_the_action_passes_shellcheck(tmp_path: Path) -> None:
    shellcheck = tool("shellcheck")
    steps = YAML(typ="safe").load((ROOT / "action.yml").read_text())["runs"]["steps"]
    scripts = [(s["name"], s["run"]) for s in steps if "run" in s]
    assert scripts
    for index, (name, script) in enumerate([*scripts, ("control", 'rm -rf $1/"x"\n')]):
        path = tmp_path / f"step-{index}.sh"
        path.write_text(script)
        done = subprocess.run(
            [shellcheck, "--shell=bash", str(path)], capture_output=True, text=True, check=False, timeout=60
        )
        if name == "control":
            assert "SC2086" in done.stdout, "shellcheck let an unquoted expansion through"
        else:
            assert done.returncode == 0, f"{name}:\n{done.stdout}"
