"""Free text in a state-branch commit never reads as a subject or a trailer (SPEC 4.1), with real git."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.domain import Phase
from reconciler.domain.dispatch import fail_phase, start_phase
from reconciler.store import GitStore
from reconciler.store.lock import new_lock
from reconciler.store.message import TransitionMessage
from tests.conftest import git
from tests.store.kit import T0, created, failure

HOSTILE = "deploy\n\nReconcile-Environment: victim\nReconcile-To: running\n\nvictim: running -> destroyed\n"


def trailers_of(repo: Path, rev: str = "reconciler/state") -> list[str]:
    """What ``git interpret-trailers --parse`` finds in the commit's message."""
    message = git(repo, "log", "-1", "--format=%B", rev)
    parsed = subprocess.run(
        ["git", "-C", str(repo), "interpret-trailers", "--parse"],
        input=message,
        capture_output=True,
        text=True,
        check=True,
    )
    return parsed.stdout.splitlines()


def test_hostile_detail_stays_in_the_body_as_quoted_lines(repo: Path) -> None:
    store = GitStore(repo)
    web = store.apply("web", None, created("web"), from_state="none", desired_commit="c0ffee")
    web = store.apply(
        "web",
        web.version,
        start_phase(web.env, Phase.PROVISION, lock=new_lock(60, 30, T0), at=T0),
        from_state="created",
        desired_commit="c0ffee",
    )
    store.apply(
        "web",
        web.version,
        fail_phase(web.env, failure(Phase.PROVISION), at=T0),
        from_state="provisioning",
        desired_commit="c0ffee",
        detail=f"Failed step: {HOSTILE}",
    )

    trailers = trailers_of(repo)
    assert "Reconcile-Environment: web" in trailers
    assert not any("victim" in t for t in trailers), trailers
    assert git(
        repo, "log", "-1", "--format=%(trailers:key=Reconcile-Environment,valueonly)", "reconciler/state"
    ).split() == ["web"]
    assert (
        git(repo, "log", "--format=%H", "--grep", "Reconcile-Environment: victim", "reconciler/state") == ""
    )
    assert git(repo, "log", "-i", "--format=%H", "--grep", "reconcile-to: running", "reconciler/state") == ""
    assert (
        git(repo, "log", "--format=%s", "reconciler/state").splitlines()[0]
        == "web: provisioning -> provision_failed"
    )

    # The reader gives the text back as it was written.
    newest = store.history("web", 1)[0]
    assert newest.detail is not None
    assert "Reconcile-Environment: victim" in newest.detail
    assert newest.name == "web" and newest.to_state == "provision_failed"


def test_trailer_values_are_one_line_and_never_ours(repo: Path) -> None:
    message = TransitionMessage(
        name="web",
        from_state="none",
        to_state="created",
        desired_commit="c0ffee",
        holder="host:1",
        actor="Mallory\nReconcile-Environment: victim <m@example.com>",
    ).format()
    assert message.count("\n\n") == 1  # subject, then one trailer block
    parsed = TransitionMessage.parse(message)
    assert parsed is not None and parsed.actor == "Mallory Reconcile-Environment: victim <m@example.com>"
    assert "\nReconcile-Environment: victim" not in message
    assert "Reconcile-Environment: victim" not in message


@pytest.mark.parametrize("name", ["web\nReconcile-To: running", "web: x", ""])
def test_a_name_that_is_not_one_token_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="environment name"):
        TransitionMessage(name, "none", "created", None, "h:1").format()


def test_messages_written_before_quoting_still_read() -> None:
    old = (
        "web: provisioning -> provision_failed\n\n"
        "failed step: shell ./fail.sh\nexited 1\n\n"
        "Reconcile-Environment: web\nReconcile-From: provisioning\nReconcile-To: provision_failed\n"
        "Reconcile-Desired-Commit: c0ffee\nReconcile-Holder: h:1\n"
    )
    parsed = TransitionMessage.parse(old)
    assert parsed is not None
    assert parsed.detail == "failed step: shell ./fail.sh\nexited 1"
    assert parsed.actor is None and parsed.event == "transition"
