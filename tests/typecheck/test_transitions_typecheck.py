"""The type-state, checked by mypy itself.

Invalid transitions must be ``mypy --strict`` errors and valid ones must not
(SPEC section 3). The allowed (state, method) pairs come from the SPEC's table
as written out in ``tests/domain/lifecycle_table.py``, not from
``reconciler.domain``, so a wrong capability in the domain fails this test.
Everything runs in one mypy invocation.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import mypy.api
import pytest

from tests.domain.lifecycle_table import STATES, TRANSITIONS, class_name

ROOT = Path(__file__).resolve().parents[2]
SNIPPETS = Path(__file__).resolve().parent / "snippets"


def call(state: str, method: str) -> str:
    args = "ctx" if method.endswith("_failed") else ""
    return f"env_{state}.{method}({args})"


# -- snippet generation ------------------------------------------------------------

HEADER = (
    "from typing import assert_type\n\n"
    "from reconciler.domain import (\n"
    + "".join(f"    {class_name(s)},\n" for s in STATES)
    + "    Environment,\n    FailureContext,\n)\n\n\n"
    "def transitions(\n"
    + "".join(f"    env_{s}: Environment[{class_name(s)}],\n" for s in STATES)
    + "    ctx: FailureContext,\n) -> None:\n"
)


def allowed_snippet() -> str:
    """Every allowed call, with its exact result type asserted."""
    lines = [
        f"    assert_type({call(state, method)}, Environment[{class_name(target)}])"
        for method, (sources, target) in TRANSITIONS.items()
        for state in STATES
        if state in sources
    ]
    return HEADER + "\n".join(lines) + "\n"


def rejected_snippet() -> str:
    """Every forbidden call, one per line, each marked with the error it must raise."""
    lines = [
        f'    {call(state, method)}  # E: Invalid self argument "Environment[{class_name(state)}]"'
        for method, (sources, _) in TRANSITIONS.items()
        for state in STATES
        if state not in sources
    ]
    lines += [
        f'    env_{state}.{method}()  # E: Missing positional argument "ctx"'
        for method, (sources, _) in TRANSITIONS.items()
        if method.endswith("_failed")
        for state in sources
    ]
    return HEADER.replace("from typing import assert_type\n\n", "") + "\n".join(lines) + "\n"


# -- running mypy once -------------------------------------------------------------

_ERROR = re.compile(r"^(?P<path>.+?):(?P<line>\d+): error: (?P<message>.*)$")
_MARKER = re.compile(r"#\s*E(?::\s*(?P<text>.*))?$")


@dataclass(frozen=True)
class MypyRun:
    errors: dict[tuple[Path, int], list[str]]
    output: str


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("typecheck")
    files = {"allowed": out / "gen_allowed.py", "rejected": out / "gen_rejected.py"}
    files["allowed"].write_text(allowed_snippet())
    files["rejected"].write_text(rejected_snippet())
    return files


@pytest.fixture(scope="module")
def mypy_run(generated: dict[str, Path]) -> MypyRun:
    paths = [*sorted(SNIPPETS.glob("*.py")), *generated.values()]
    stdout, stderr, _ = mypy.api.run(
        [
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            "--no-error-summary",
            "--show-error-codes",
            "--hide-error-context",
            "--no-pretty",
            # No incremental cache: mypy replays cached errors under a module's old path,
            # and every run writes these snippets to a new tmp_path.
            "--cache-dir",
            os.devnull,
            *map(str, paths),
        ]
    )
    assert not stderr, stderr
    errors: dict[tuple[Path, int], list[str]] = {}
    for line in stdout.splitlines():
        m = _ERROR.match(line)
        if m:
            key = ((ROOT / m["path"]).resolve(), int(m["line"]))
            errors.setdefault(key, []).append(m["message"])
    return MypyRun(errors, stdout)


def expected_errors(path: Path) -> dict[int, str]:
    """Line number -> expected message fragment ('' for any error), from ``# E`` markers."""
    marks: dict[int, str] = {}
    for number, text in enumerate(path.read_text().splitlines(), start=1):
        m = _MARKER.search(text)
        if m:
            marks[number] = (m["text"] or "").strip()
    return marks


def assert_errors_match(path: Path, run: MypyRun) -> None:
    expected = expected_errors(path)
    actual = {line: msgs for (p, line), msgs in run.errors.items() if p == path.resolve()}
    source = path.read_text().splitlines()
    missing = [f"{n}: {source[n - 1].strip()}" for n in sorted(expected) if n not in actual]
    unexpected = [
        f"{n}: {source[n - 1].strip()} -> {msgs}" for n, msgs in sorted(actual.items()) if n not in expected
    ]
    wrong = [
        f"{n}: expected {fragment!r}, got {actual[n]}"
        for n, fragment in sorted(expected.items())
        if n in actual and not any(fragment in msg for msg in actual[n])
    ]
    assert not missing, "accepted by mypy but must be rejected:\n" + "\n".join(missing)
    assert not unexpected, "rejected by mypy but must type-check:\n" + "\n".join(unexpected)
    assert not wrong, "rejected for the wrong reason:\n" + "\n".join(wrong)


# -- the tests ---------------------------------------------------------------------


def test_the_table_covers_every_state_and_method() -> None:
    """A guard on the table itself: 16 states, 16 methods, the SPEC's counts."""
    assert len(STATES) == 16
    assert len(TRANSITIONS) == 16
    allowed = {m: len(sources) for m, (sources, _) in TRANSITIONS.items()}
    assert allowed["start_provisioning"] == 10
    assert allowed["start_configuring"] == 7
    assert allowed["start_releasing"] == 5
    assert allowed["start_running"] == 3
    assert allowed["start_destroying"] == 10


def test_every_allowed_transition_type_checks_with_its_exact_result(
    mypy_run: MypyRun, generated: dict[str, Path]
) -> None:
    text = generated["allowed"].read_text()
    assert text.count("assert_type(") == sum(len(s) for s, _ in TRANSITIONS.values())
    assert_errors_match(generated["allowed"], mypy_run)


def test_every_forbidden_transition_is_a_type_error(mypy_run: MypyRun, generated: dict[str, Path]) -> None:
    marks = expected_errors(generated["rejected"])
    forbidden = 16 * 16 - sum(len(s) for s, _ in TRANSITIONS.values())
    assert len(marks) == forbidden + 5  # plus the five *_failed() calls without a context
    assert_errors_match(generated["rejected"], mypy_run)


@pytest.mark.parametrize("snippet", sorted(p.name for p in SNIPPETS.glob("*.py")))
def test_hand_written_snippets(snippet: str, mypy_run: MypyRun) -> None:
    path = SNIPPETS / snippet
    assert_errors_match(path, mypy_run)
    if snippet.startswith("invalid"):
        assert expected_errors(path), "an invalid-transitions snippet must mark its errors"


def test_the_parser_sees_mypy_errors(mypy_run: MypyRun) -> None:
    """If mypy silently checked nothing, every 'must be rejected' test would be vacuous."""
    assert len(mypy_run.errors) > 100, mypy_run.output[:2000]
