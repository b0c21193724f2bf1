"""Repo-relative paths, checked again at run time against the checkout on disk.

The loader refuses ``..`` and absolute paths when it reads a file; only the
checkout can tell where a symlink really points, so that is checked here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from reconciler.desired.models import SecretRef
from reconciler.domain.values import ErrorKind
from reconciler.steps.errors import StepRefused


def resolve_in_checkout(
    checkout: Path, relative: str, *, what: str, expect: Literal["file", "dir"] | None = None
) -> Path:
    """``checkout/relative`` with symlinks resolved, refused unless it stays inside the checkout."""
    pure = PurePosixPath(relative)
    if not relative or pure.is_absolute() or Path(relative).is_absolute():
        raise StepRefused(
            ErrorKind.CONFIGURATION, f"{what} {relative!r} must be a path relative to the repository"
        )
    root = checkout.resolve()
    resolved = (root / relative).resolve()
    if not resolved.is_relative_to(root):
        raise StepRefused(ErrorKind.CONFIGURATION, f"{what} {relative!r} points outside the repository")
    if not resolved.exists():
        raise StepRefused(
            ErrorKind.CONFIGURATION, f"{what} {relative!r} does not exist in the desired commit"
        )
    if expect == "dir" and not resolved.is_dir():
        raise StepRefused(ErrorKind.CONFIGURATION, f"{what} {relative!r} is not a directory")
    if expect == "file" and not resolved.is_file():
        raise StepRefused(ErrorKind.CONFIGURATION, f"{what} {relative!r} is not a file")
    return resolved


def plain_value(value: Any, *, where: str) -> Any:
    """``value`` with every secret reference refused: steps arrive rendered, secrets resolved."""
    if isinstance(value, SecretRef):
        raise StepRefused(
            ErrorKind.CONFIGURATION,
            f"{where}: unresolved secret reference {{fromEnv: {value.from_env}}}",
            "steps must be rendered (reconciler.desired.templating.render_step) before they run",
        )
    if isinstance(value, Mapping):
        return {str(k): plain_value(v, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain_value(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def as_text(value: Any) -> str:
    """A value as an environment variable or output carries it: strings as-is, the rest as compact JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
