"""Notifications (SPEC 9) to real HTTP receivers on 127.0.0.1, from ``apply`` and from the daemon."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.kit import Daemons, state_is, wait_for
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file
from tests.events.receivers import Receiver

TOKEN = "ghp_test-token"
SECRET = "hmac-secret"


@pytest.fixture
def receivers() -> Iterator[dict[str, Receiver]]:
    started = {
        "github": Receiver("github", token=TOKEN).start(),
        "hook": Receiver("hmac", secret=SECRET.encode()).start(),
        "slack": Receiver().start(),
        "flaky": Receiver("flaky", fail_first=2).start(),
        "hang": Receiver("hang").start(),
    }
    try:
        yield started
    finally:
        for r in started.values():
            r.stop()


def _config(receivers: dict[str, Receiver], *kinds: str) -> str:
    entries = {
        "github": "  - github: {repository: acme/shop, token: {fromEnv: GH_TOKEN}, "
        f'apiUrl: "{receivers["github"].url}"}}\n',
        "hook": f"""  - webhook: {{url: "{receivers["hook"].url}/hook", secret: {{fromEnv: HOOK_SECRET}}}}
    selector: {{team: shop}}
""",
        "slack": """  - slack: {url: {fromEnv: SLACK_URL}}
    events: [failed, blocked]
""",
        "flaky": f"""  - webhook: {{url: "{receivers["flaky"].url}/flaky"}}
    events: [converged]
""",
        "hang": f"""  - webhook: {{url: "{receivers["hang"].url}/hang"}}
""",
    }
    return "apiVersion: reconciler/v1\nkind: Config\nnotify:\n" + "".join(entries[k] for k in kinds)


def _environ(receivers: dict[str, Receiver]) -> dict[str, str]:
    return {"GH_TOKEN": TOKEN, "HOOK_SECRET": SECRET, "SLACK_URL": receivers["slack"].url + "/slack"}


def test_apply_sets_commit_statuses_and_signs_webhooks(
    gitops: GitOpsRepo, receivers: dict[str, Receiver], tmp_path: Path
) -> None:
    good = counting_phases(tmp_path / "log")
    bad = counting_phases(tmp_path / "log", extra={"configure": "exit 4"})
    sha = gitops.commit(
        {
            "reconciler.yaml": _config(receivers, "github", "hook", "slack"),
            "environments/web.yaml": env_file("web", phases=good),
            "environments/api.yaml": env_file("api", phases=bad, retry={"limit": 0, "backoffSeconds": 60}),
        }
    )
    # Labels: only web is the shop team's, so only its events reach the selecting webhook.
    web = json.loads(env_file("web", phases=good))
    web["metadata"]["labels"] = {"team": "shop"}
    sha = gitops.commit({"environments/web.yaml": json.dumps(web)})

    out = gitops.reconcile("apply", env=_environ(receivers))
    assert out.returncode == 1, out.stderr  # api fails

    statuses = receivers["github"].wait_for(4)
    assert all(d.path == f"/repos/acme/shop/statuses/{sha}" for d in statuses)
    by_context: dict[str, list[str]] = {}
    for d in statuses:
        by_context.setdefault(d.json["context"], []).append(d.json["state"])
    assert by_context["reconcile/web"][0] == "pending" and by_context["reconcile/web"][-1] == "success"
    assert by_context["reconcile/api"][0] == "pending" and by_context["reconcile/api"][-1] == "failure"
    assert all(d.status == 201 for d in receivers["github"].deliveries)  # the token was right every time

    hooks = receivers["hook"].accepted()
    assert hooks and all(d.status == 200 for d in receivers["hook"].deliveries)  # every signature checked
    assert {d.json["environment"] for d in hooks} == {"web"}
    events = [d.json["event"] for d in hooks]
    assert "transition" in events and events[-1] == "converged"
    first = hooks[0].json
    assert (
        first["formatVersion"] == 1 and first["desiredCommit"] == sha and first["labels"] == {"team": "shop"}
    )

    slack = [d.json["text"] for d in receivers["slack"].wait_for(2)]
    assert any(t.startswith("api failed (configure_failed)") for t in slack)
    assert any(t.startswith("api blocked") for t in slack)
    assert not any("web" in t for t in slack)


def test_a_wrong_token_is_refused_and_counted_not_retried(
    gitops: GitOpsRepo, receivers: dict[str, Receiver], tmp_path: Path
) -> None:
    gitops.commit(
        {
            "reconciler.yaml": _config(receivers, "github"),
            "environments/web.yaml": env_file("web", "provisioned", phases=counting_phases(tmp_path / "l")),
        }
    )
    out = gitops.reconcile("apply", env={"GH_TOKEN": "wrong"}, check=True)
    assert gitops.state("web")["state"] == "provisioned"
    refused = receivers["github"].deliveries
    assert refused and {d.status for d in refused} == {401}
    assert [d.json["state"] for d in refused] == ["pending", "success"]  # each tried once: 401 is final
    assert "wrong" not in out.stderr
    missing = gitops.reconcile("apply", env={"GH_TOKEN": ""}, check=True)
    assert "GH_TOKEN is not set" in missing.stderr


def test_a_failing_and_a_hanging_receiver_hold_up_nothing(
    gitops: GitOpsRepo, receivers: dict[str, Receiver], tmp_path: Path
) -> None:
    gitops.commit(
        {
            "reconciler.yaml": _config(receivers, "flaky", "hang"),
            "environments/web.yaml": env_file("web", phases=counting_phases(tmp_path / "l")),
        }
    )
    out = gitops.reconcile("apply", "--notify-wait", "8s", env=_environ(receivers))
    assert out.returncode == 0, out.stderr
    assert gitops.state("web")["state"] == "running"
    flaky = receivers["flaky"].deliveries
    assert [d.status for d in flaky] == [503, 503, 200]  # retried with backoff until delivered
    assert len({d.headers["X-Reconcile-Delivery"] for d in flaky}) == 1  # one notification, delivered once
    assert receivers["hang"].deliveries  # it was tried, and never answered
    assert "undelivered" in out.stderr


def test_daemon_notifies_and_counts_in_metrics(
    gitops: GitOpsRepo, receivers: dict[str, Receiver], daemons: Daemons, tmp_path: Path
) -> None:
    gitops.commit({"reconciler.yaml": _config(receivers, "hook", "flaky")})
    daemon = daemons.start(gitops.path, env=_environ(receivers))
    web = json.loads(env_file("web", phases=counting_phases(tmp_path / "log")))
    web["metadata"]["labels"] = {"team": "shop"}
    gitops.commit({"environments/web.yaml": json.dumps(web)})
    wait_for("web running", state_is(gitops.path, "web", "running"), timeout=60)

    def counted() -> dict[tuple[str, str], float]:
        text = daemon.get("/metrics")[1]
        found = re.findall(r'reconcile_notifications_total\{result="([^"]+)",sink="([^"]+)"\} (\S+)', text)
        return {(s, r): float(v) for r, s, v in found}

    wait_for("the flaky receiver's delivery", lambda: counted().get(("webhook-1", "delivered"), 0) >= 1)
    counts = counted()
    assert counts[("webhook-1", "retried")] == 2
    assert [d.status for d in receivers["flaky"].deliveries] == [503, 503, 200]
    assert counts[("webhook-0", "delivered")] == len(receivers["hook"].accepted())
    assert {d.json["event"] for d in receivers["hook"].accepted()} >= {"transition", "converged"}


def test_a_bad_notify_entry_is_refused_by_validate(gitops: GitOpsRepo) -> None:
    gitops.commit(
        {
            "reconciler.yaml": "apiVersion: reconciler/v1\nkind: Config\nnotify:\n"
            "  - webhook: {url: 'http://127.0.0.1:1/x'}\n    slack: {url: {fromEnv: S}}\n"
            "  - github: {repository: not-a-repo, token: {fromEnv: T}}\n"
            "    events: [exploded]\n"
        }
    )
    out = gitops.reconcile("validate")
    assert out.returncode == 1
    assert "reconciler.yaml:4" in out.stdout + out.stderr
    assert "exactly one of webhook, github, slack" in out.stdout + out.stderr
    assert "repository" in out.stdout + out.stderr and "exploded" in out.stdout + out.stderr
