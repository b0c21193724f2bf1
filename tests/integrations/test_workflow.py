"""The pull-request workflow users copy (`.github/workflows/reconcile-plan.yml`) runs the action."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = ROOT / ".github" / "workflows" / "reconcile-plan.yml"


def load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = YAML(typ="safe").load(path.read_text())
    return data


def test_workflow_checks_out_the_head_with_history_and_runs_the_action_at_a_tag() -> None:
    workflow = load(WORKFLOW)
    assert "pull_request" in workflow["on"]
    assert workflow["permissions"]["pull-requests"] == "write"
    checkout, action = workflow["jobs"]["plan"]["steps"]
    assert checkout["uses"].startswith("actions/checkout@")
    assert checkout["with"]["fetch-depth"] == 0
    assert checkout["with"]["ref"] == "${{ github.event.pull_request.head.sha }}"
    name, _, ref = action["uses"].partition("@")
    assert name.endswith("/reconciler")
    assert ref.startswith("v"), "the action is pinned to a tag"
    declared = load(ROOT / "action.yml")["inputs"]
    assert set(action.get("with", {})) <= set(declared), "the workflow passes an input the action lacks"
