"""The webapp blueprint's steps through the real step runners (reconciler.steps.LocalStepRunner), with
the templates rendered the way SPEC section 2.3 says: the contract between this content and the engine."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from jinja2 import StrictUndefined
from jinja2.sandbox import SandboxedEnvironment
from ruamel.yaml import YAML

from reconciler.desired.models import BlueprintFile, Step
from reconciler.steps.local import LocalStepRunner
from reconciler.steps.outcome import StepContext

from .conftest import ROOT, find_tool, kill_servers, servers_of

pytestmark = [
    pytest.mark.slow,
    pytest.mark.timeout(180),
    pytest.mark.skipif(find_tool("tofu", "terraform") is None, reason="no tofu or terraform on PATH"),
    pytest.mark.skipif(find_tool("ansible-playbook") is None, reason="ansible-playbook is not installed"),
]


def rendered(step: Step, context: dict[str, Any]) -> Step:
    jinja = SandboxedEnvironment(undefined=StrictUndefined)

    def render(value: Any) -> Any:
        if isinstance(value, str):
            return jinja.from_string(value).render(context)
        if isinstance(value, dict):
            return {k: render(v) for k, v in value.items()}
        return value

    raw = step.model_dump(by_alias=True, exclude_none=True)
    if step.shell is None:
        raw[step.kind.value] = render(raw[step.kind.value])
    return Step.model_validate(raw)


def test_every_phase_of_the_blueprint_through_the_step_runners(tmp_path: Path, unused_port: int) -> None:
    checkout = tmp_path / "checkout"
    for name in ("infra", "ansible", "examples"):
        shutil.copytree(ROOT / name, checkout / name)
    blueprint = BlueprintFile.model_validate(
        YAML(typ="safe", pure=True).load((ROOT / "blueprints" / "webapp.yaml").read_text())
    )
    vars_ = {**blueprint.spec.vars, "http_port": unused_port}
    data = tmp_path / "data" / "staging"
    outputs: dict[str, str] = {}
    runner = LocalStepRunner()
    service = data / "service"
    try:
        for phase in ("provision", "configure", "release", "run", "check", "destroy"):
            for step in getattr(blueprint.spec.phases, phase):
                ctx = StepContext(
                    environment="staging",
                    desired_commit="ab" * 20,
                    checkout=checkout,
                    data_dir=data,
                    vars=vars_,
                    outputs=dict(outputs),
                    secrets=frozenset(),
                    deadline=time.monotonic() + 120,
                    phase=phase,
                )
                context = {"environment": {"name": "staging"}, "vars": vars_, "outputs": outputs}
                outcome = runner.run(rendered(step, context), ctx)
                assert outcome.ok, f"{phase}: {step.describe()}: {outcome.summary}"
                outputs.update(outcome.outputs)
            if phase == "provision":
                assert outputs["service_dir"] == str(service)
                assert outputs["port"] == str(unused_port)
            if phase == "run":
                assert len(servers_of(service)) == 1
        assert not service.exists()
        assert servers_of(service) == []
    finally:
        kill_servers(service)
