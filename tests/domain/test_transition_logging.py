"""Every transition logs itself once; the CLI's formatters render the record."""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler import logfmt
from reconciler.domain import Environment, Phase
from reconciler.domain.dispatch import start_phase
from tests.domain.builders import T0, call, reach
from tests.domain.lifecycle_table import STATES, TRANSITIONS

ALLOWED = [
    (method, state) for method, (sources, _) in TRANSITIONS.items() for state in STATES if state in sources
]


@pytest.mark.parametrize(("method", "state"), ALLOWED)
def test_each_transition_logs_exactly_one_info_record(
    method: str, state: str, caplog: pytest.LogCaptureFixture
) -> None:
    env = reach(state, name="api")
    caplog.set_level(logging.DEBUG)
    caplog.clear()
    call(env, method, at=T0 + timedelta(seconds=1, microseconds=5))

    [record] = caplog.records
    assert record.levelno == logging.INFO
    assert record.name == "reconciler.domain.environment"
    assert record.getMessage() == "state transition"
    assert logfmt.record_fields(record) == {
        "environment": "api",
        "from_state": state,
        "to_state": TRANSITIONS[method][1],
        "timestamp": "2026-11-28T10:15:01.000005Z",
    }


def test_a_whole_lifecycle_logs_one_record_per_step(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="reconciler")
    env = Environment.create("web")
    assert caplog.records == [], "creating is not a transition"
    running = (
        env.start_provisioning()
        .provisioned()
        .start_configuring()
        .configured()
        .start_releasing()
        .released()
        .start_running()
        .running()
    )
    start_phase(running.into_any(), Phase.DESTROY)  # through dispatch, still logged once
    pairs = [(r.from_state, r.to_state) for r in caplog.records]  # type: ignore[attr-defined]
    assert pairs == [
        ("created", "provisioning"),
        ("provisioning", "provisioned"),
        ("provisioned", "configuring"),
        ("configuring", "configured"),
        ("configured", "releasing"),
        ("releasing", "released"),
        ("released", "starting"),
        ("starting", "running"),
        ("running", "destroying"),
    ]


def _emit(formatter: logging.Formatter, caplog: pytest.LogCaptureFixture) -> str:
    caplog.set_level(logging.INFO, logger="reconciler")
    caplog.clear()
    Environment.create("web").start_provisioning(at=T0)
    [record] = caplog.records
    return formatter.format(record)


def test_json_formatter_output_parses_back(caplog: pytest.LogCaptureFixture) -> None:
    line = _emit(logfmt.JsonFormatter(), caplog)
    assert "\n" not in line
    payload = json.loads(line)
    assert payload == {
        "time": payload["time"],
        "level": "INFO",
        "logger": "reconciler.domain.environment",
        "message": "state transition",
        "environment": "web",
        "from_state": "created",
        "to_state": "provisioning",
        "timestamp": "2026-11-28T10:15:00Z",
    }
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", payload["time"])


def test_json_formatter_keeps_exceptions_and_odd_values() -> None:
    try:
        raise RuntimeError("disk full")
    except RuntimeError:
        record = logging.LogRecord(
            "reconciler.x", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info()
        )
    record.path = Path("/tmp/a")
    payload = json.loads(logfmt.JsonFormatter().format(record))
    assert payload["message"] == "failed x"
    assert payload["path"] == "/tmp/a"
    assert "RuntimeError: disk full" in payload["exception"]


def test_text_formatter_shows_the_fields(caplog: pytest.LogCaptureFixture) -> None:
    line = _emit(logfmt.TextFormatter(), caplog)
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d INFO    state transition environment=web from_state=created "
        r"to_state=provisioning timestamp=2026-11-28T10:15:00Z",
        line,
    ), line


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configure_installs_one_handler_on_the_package_logger(
    fmt: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = logging.getLogger("reconciler")
    monkeypatch.setattr(root, "handlers", [])
    monkeypatch.setattr(root, "propagate", True)
    monkeypatch.setattr(root, "level", logging.NOTSET)
    logfmt.configure("info", fmt)
    logfmt.configure("info", fmt)  # twice is still one handler
    assert len(root.handlers) == 1
    Environment.create("web").start_provisioning(at=T0)
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    if fmt == "json":
        assert json.loads(err[0])["to_state"] == "provisioning"
    else:
        assert "to_state=provisioning" in err[0]


@pytest.mark.parametrize(
    ("level", "fmt", "message"),
    [
        ("bogus", "text", "unknown log level 'bogus' (expected one of: debug, info, warning, error)"),
        ("info", "xml", "unknown log format 'xml' (expected one of: text, json)"),
    ],
)
def test_configure_refuses_what_it_does_not_know(level: str, fmt: str, message: str) -> None:
    """A bad level used to escape as logging's bare ValueError; a bad format silently meant text."""
    before = list(logging.getLogger("reconciler").handlers)
    with pytest.raises(ValueError, match=re.escape(message)):
        logfmt.configure(level, fmt)
    assert logging.getLogger("reconciler").handlers == before
