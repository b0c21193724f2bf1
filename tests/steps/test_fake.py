"""The fake runner behaves like the real one: same outcome shapes, same wording, same limits."""

from __future__ import annotations

import threading
from dataclasses import fields

from reconciler.domain.values import ErrorKind
from reconciler.steps import FakeResult, FakeStepRunner, LocalStepRunner, StepOutcome, StepRunner, fails
from tests.steps.conftest import ContextFactory, step


def shape(outcome: StepOutcome) -> dict[str, object]:
    """What the engine relies on, with the values that differ run to run reduced to their types."""
    return {
        "ok": outcome.ok,
        "step": outcome.step,
        "error_kind": outcome.error_kind,
        "summary": outcome.summary,
        "exit_code": outcome.exit_code,
        "outputs": dict(outcome.outputs),
        "error_chain": outcome.error_chain,
        "types": {f.name: type(getattr(outcome, f.name)).__name__ for f in fields(outcome)},
    }


def test_the_fake_returns_outcomes_shaped_like_the_real_runners(make_ctx: ContextFactory) -> None:
    real: StepRunner = LocalStepRunner()
    fake = FakeStepRunner()
    failing = step({"shell": {"run": "echo pw=hunter2; exit 3"}})
    passing = step({"shell": {"run": "echo pw=hunter2"}})
    fake.script("web", failing.describe(), FakeResult(ok=False, exit_code=3, output="pw=hunter2"))
    fake.script("web", passing.describe(), FakeResult(output="pw=hunter2"))
    for item in (failing, passing):
        real_lines: list[str] = []
        fake_lines: list[str] = []
        secrets = frozenset({"hunter2"})
        from_real = real.run(item, make_ctx(secrets=secrets, log=real_lines.append))
        from_fake = fake.run(item, make_ctx(secrets=secrets, log=fake_lines.append))
        assert shape(from_fake) == shape(from_real)
        assert from_fake.output_tail == from_real.output_tail == "pw=[REDACTED]"
        assert fake_lines == real_lines


def test_timeouts_and_cancels_end_like_the_real_ones(make_ctx: ContextFactory) -> None:
    real = LocalStepRunner()
    fake = FakeStepRunner()
    slow = step({"shell": {"run": "sleep 30"}})
    fake.script("web", "run", FakeResult(delay=30))
    from_real = real.run(slow, make_ctx(timeout=0.3, phase="run"))
    from_fake = fake.run(slow, make_ctx(timeout=0.3, phase="run"))
    assert from_fake.error_kind is from_real.error_kind is ErrorKind.TIMEOUT
    assert from_fake.summary.split(" after ")[0] == from_real.summary.split(" after ")[0] == "shell timed out"

    cancel = threading.Event()
    cancel.set()
    fake.script("web", "run", FakeResult(delay=30))
    assert (
        fake.run(slow, make_ctx(cancel=cancel, phase="run")).summary
        == real.run(slow, make_ctx(cancel=cancel)).summary
    )


def test_scripts_are_per_environment_and_key_used_up_in_order(make_ctx: ContextFactory) -> None:
    fake = FakeStepRunner()
    tofu = step({"tofu": {"module": "infra/vm"}})
    fake.script("web", "provision", fails(1), FakeResult(outputs={"ip": "10.0.0.5"}))
    fake.script(
        "db",
        "tofu apply infra/vm",
        fails(error_kind=ErrorKind.TIMEOUT, summary="tofu apply timed out after 5.0s"),
    )

    first = fake.run(tofu, make_ctx(phase="provision"))
    assert (first.ok, first.error_kind, first.summary, first.exit_code) == (
        False,
        ErrorKind.COMMAND_FAILED,
        "tofu exited 1",
        1,
    )
    second = fake.run(tofu, make_ctx(phase="provision"))
    assert second.ok
    assert dict(second.outputs) == {"ip": "10.0.0.5"}
    assert fake.run(tofu, make_ctx(phase="provision")).ok

    other = fake.run(tofu, make_ctx(environment="db", phase="provision"))
    assert other.error_kind is ErrorKind.TIMEOUT
    assert other.summary == "tofu apply timed out after 5.0s"

    calls = fake.calls
    assert [(c.environment, c.phase, c.outcome.ok) for c in calls] == [
        ("web", "provision", False),
        ("web", "provision", True),
        ("web", "provision", True),
        ("db", "provision", False),
    ]
    assert all(c.started_monotonic <= c.finished_monotonic for c in calls)
    assert calls[0].finished_monotonic <= calls[1].started_monotonic
    assert [c.step for c in fake.calls_for("db")] == ["tofu apply infra/vm"]
