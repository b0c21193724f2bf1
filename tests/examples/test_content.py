"""The shipped GitOps content is valid by the schemas, and everything it names exists."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from ruamel.yaml import YAML

from reconciler.desired.models import BlueprintFile, ConfigFile, EnvironmentFile, Step

from .conftest import ROOT

pytestmark = pytest.mark.timeout(60)

ENVIRONMENTS = sorted((ROOT / "environments").glob("*.yaml"))
BLUEPRINTS = sorted((ROOT / "blueprints").glob("*.yaml"))


def load(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text(encoding="utf-8"))


def environments() -> dict[str, EnvironmentFile]:
    return {p.stem: EnvironmentFile.model_validate(load(p)) for p in ENVIRONMENTS}


def blueprints() -> dict[str, BlueprintFile]:
    return {p.stem: BlueprintFile.model_validate(load(p)) for p in BLUEPRINTS}


def merged_steps(env: EnvironmentFile) -> tuple[dict[str, Any], list[Step]]:
    """The environment's vars and all its steps after the blueprint merge (SPEC section 2.2)."""
    bp = blueprints()[env.spec.blueprint] if env.spec.blueprint else None
    vars_ = {**(bp.spec.vars if bp else {}), **env.spec.vars}
    steps: list[Step] = []
    for phase in ("provision", "configure", "release", "run", "destroy", "check"):
        own = getattr(env.spec.phases, phase)
        steps += own if own is not None else ((getattr(bp.spec.phases, phase) if bp else None) or [])
    return vars_, steps


def test_there_are_two_running_environments_and_a_blueprint() -> None:
    assert {p.stem for p in ENVIRONMENTS} >= {"staging", "preview"}
    assert "webapp" in {p.stem for p in BLUEPRINTS}
    assert all(e.spec.desired_state == "running" for e in environments().values())


@pytest.mark.parametrize("path", ENVIRONMENTS, ids=lambda p: p.name)
def test_environment_file_is_valid_and_named_after_its_file(path: Path) -> None:
    env = EnvironmentFile.model_validate(load(path))
    assert env.metadata.name == path.stem
    if env.spec.blueprint:
        assert (ROOT / "blueprints" / f"{env.spec.blueprint}.yaml").is_file()
    for dep in env.spec.depends_on:
        assert (ROOT / "environments" / f"{dep}.yaml").is_file(), dep


@pytest.mark.parametrize("path", BLUEPRINTS, ids=lambda p: p.name)
def test_blueprint_file_is_valid_and_named_after_its_file(path: Path) -> None:
    bp = BlueprintFile.model_validate(load(path))
    assert bp.metadata.name == path.stem
    for phase in ("provision", "configure", "release", "run", "destroy", "check"):
        assert getattr(bp.spec.phases, phase), f"{path.name} declares every phase, {phase} is missing"


def test_preview_depends_on_staging_and_ports_differ() -> None:
    envs = environments()
    assert envs["preview"].spec.depends_on == ["staging"]
    ports = [merged_steps(e)[0]["http_port"] for e in envs.values()]
    assert len(set(ports)) == len(ports), ports
    assert all(1024 <= int(p) <= 65535 for p in ports)


def test_config_spells_out_the_defaults() -> None:
    raw = load(ROOT / "reconciler.yaml")
    assert ConfigFile.model_validate(raw) == ConfigFile(branch="main")
    assert raw["branch"] == "main"
    assert raw["stateRef"] == "refs/heads/reconciler/state"
    assert raw["prune"] is False
    assert "remote" not in raw


@pytest.mark.parametrize("name", ["staging", "preview"])
def test_every_templated_field_renders_and_every_path_exists(name: str) -> None:
    """What the engine will render (vars, environment.name, outputs of infra/service) is all defined,
    and every module, playbook and script the steps name is in the repository."""
    env = environments()[name]
    vars_, steps = merged_steps(env)
    jinja = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
    context = {
        "environment": {"name": name},
        "vars": vars_,
        "outputs": {"service_dir": "/x", "port": vars_["http_port"], "url": "http://127.0.0.1"},
    }

    def render(value: Any) -> Any:
        if isinstance(value, str):
            return jinja.from_string(value).render(context)
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        if isinstance(value, list):
            return [render(v) for v in value]
        return value

    for step in steps:
        body = step.body.model_dump()
        if step.shell is not None:
            body.pop("run")
            words = shlex.split(step.shell.run)
            for word in words:
                if re.fullmatch(r"[\w./-]+\.(sh|py)", word):
                    assert (ROOT / word).is_file(), word
        rendered = render(body)
        if step.tofu is not None:
            assert (ROOT / step.tofu.module / "main.tf").is_file()
            assert rendered["vars"] == {"environment": name, "port": str(vars_["http_port"])}
        if step.ansible is not None:
            assert (ROOT / step.ansible.playbook).is_file()
        if step.http is not None:
            assert rendered["url"] == f"http://127.0.0.1:{vars_['http_port']}/health"


@pytest.mark.parametrize("script", sorted((ROOT / "examples" / "scripts").glob("*.sh")), ids=lambda p: p.name)
def test_scripts_are_valid_posix_sh(script: Path) -> None:
    result = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
