"""Options every command shares (SPEC section 5)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer


class OutputFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class PlanFormat(StrEnum):
    TEXT = "text"
    JSON = "json"
    MARKDOWN = "markdown"


RepoOption = Annotated[
    Path,
    typer.Option("--repo", help="The GitOps repository: a work tree or a bare repository."),
]
FormatOption = Annotated[OutputFormat, typer.Option("--format", help="Output format.")]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Local data: tofu working dirs, traces, logs (default: ./data)."),
]

#: Exit codes of SPEC section 5.
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
