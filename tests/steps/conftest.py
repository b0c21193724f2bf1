"""A checkout and a data dir in tmp_path, and a context factory for running steps."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from reconciler.desired.models import Step
from reconciler.steps import StepContext


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    path = tmp_path / "checkout"
    path.mkdir()
    return path


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "web"
    path.mkdir(parents=True)
    return path


ContextFactory = Callable[..., StepContext]


@pytest.fixture
def make_ctx(checkout: Path, data_dir: Path) -> ContextFactory:
    def make(**overrides: Any) -> StepContext:
        timeout = overrides.pop("timeout", 60.0)
        values: dict[str, Any] = {
            "environment": "web",
            "desired_commit": "c0ffee",
            "checkout": checkout,
            "data_dir": data_dir,
            "vars": {},
            "outputs": {},
            "secrets": frozenset(),
            "deadline": time.monotonic() + timeout,
        }
        values.update(overrides)
        return StepContext(**values)

    return make


def step(document: dict[str, Any]) -> Step:
    return Step.model_validate(document)
