"""``http`` steps: poll a URL until it answers with the expected status.

Plain ``urllib``, no new dependency. A check that runs out of its own
``timeoutSeconds`` fails with ``health_check``; one cut short by the phase's
deadline fails with ``timeout``, like any other step.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlsplit

from reconciler.desired.models import HttpStep, Step
from reconciler.domain.values import ErrorKind, utcnow
from reconciler.steps.errors import StepRefused
from reconciler.steps.outcome import StepContext, StepOutcome, interrupted_summary, make_outcome
from reconciler.steps.redact import redact

POLL_INTERVAL_SECONDS = 0.5
#: Longest a single request may take; a slow server is polled again rather than waited on.
REQUEST_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class HttpProbe:
    """What to ask, and until when: the pure part of an ``http`` step."""

    url: str
    expect_status: int
    timeout_seconds: float


def build_http_probe(step: HttpStep) -> HttpProbe:
    scheme = urlsplit(step.url).scheme.lower()
    if scheme not in {"http", "https"}:
        raise StepRefused(
            ErrorKind.CONFIGURATION,
            f"http step url must start with http:// or https://, not {scheme or '(none)'}:",
        )
    return HttpProbe(url=step.url, expect_status=step.expect_status, timeout_seconds=step.timeout_seconds)


def probe_once(url: str, timeout: float) -> tuple[int | None, str]:
    """One GET: the status (``None`` when there was no answer) and what to report about it."""
    request = urllib.request.Request(url, method="GET", headers={"User-Agent": "reconciler"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status = int(response.status)
            return status, f"got {status}"
    except urllib.error.HTTPError as exc:
        return exc.code, f"got {exc.code}"
    except urllib.error.URLError as exc:
        return None, str(exc.reason)
    except (TimeoutError, OSError) as exc:
        return None, str(exc) or type(exc).__name__


def run_http(step: Step, ctx: StepContext) -> StepOutcome:
    """Poll until the expected status, the step's timeout, the phase's deadline or a cancel."""
    started_at = utcnow()
    body = step.http
    assert body is not None
    probe = build_http_probe(body)
    t0 = time.monotonic()
    own_deadline = t0 + probe.timeout_seconds
    deadline = min(own_deadline, ctx.deadline)
    log = ctx.log
    attempts = 0
    last = "no answer"
    while True:
        attempts += 1
        remaining = max(0.05, deadline - time.monotonic())
        status, last = probe_once(probe.url, min(REQUEST_TIMEOUT_SECONDS, remaining))
        if log is not None:
            log(redact(f"GET {probe.url}: {last}", ctx.secrets))
        if status == probe.expect_status:
            return make_outcome(
                step.describe(), started_at, ctx.secrets, summary=f"GET {probe.url}: {last}", exit_code=None
            )
        now = time.monotonic()
        if now >= deadline:
            break
        wait = min(POLL_INTERVAL_SECONDS, deadline - now)
        if ctx.cancel is not None and ctx.cancel.wait(wait):
            summary = interrupted_summary(f"GET {probe.url}")
            return make_outcome(
                step.describe(),
                started_at,
                ctx.secrets,
                error_kind=ErrorKind.INTERRUPTED,
                summary=summary,
                error_chain=(summary,),
            )
        if ctx.cancel is None:
            time.sleep(wait)
    elapsed = time.monotonic() - t0
    expected = f"expected {probe.expect_status}"
    summary = f"GET {probe.url}: {last}, {expected} (after {elapsed:.1f}s)"
    kind = ErrorKind.HEALTH_CHECK if own_deadline <= ctx.deadline else ErrorKind.TIMEOUT
    return make_outcome(
        step.describe(),
        started_at,
        ctx.secrets,
        error_kind=kind,
        summary=summary,
        error_chain=(summary, f"{attempts} requests, the last: {last}"),
    )
