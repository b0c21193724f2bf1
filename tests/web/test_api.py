"""The JSON API of SPEC 6.1 over real HTTP: shapes, paging, filters, one environment, its history, errors."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from tests.engine.conftest import GitOpsRepo
from tests.web.conftest import Served, rewrite_state

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]


def _time(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


def test_the_fleet_is_plain_json_with_counts_and_every_environment(served: Served) -> None:
    data = served.json("/api/v1/environments")

    assert data["formatVersion"] == 1
    assert data["total"] == 3
    assert data["counts"] == {"provision_failed": 1, "running": 2}
    assert data["converged"] == 2
    rows = {r["name"]: r for r in data["environments"]}
    assert list(rows) == ["api", "db", "web"]  # sorted by name
    web = rows["web"]
    assert (web["observed"], web["desired"], web["converged"], web["verdict"]) == (
        "running",
        "running",
        True,
        "converged",
    )
    assert web["labels"] == {"team": "a", "tier": "front"}
    assert web["lock"] is None
    last = web["lastTransition"]
    assert (last["from"], last["to"], last["event"]) == ("starting", "running", "transition")
    assert "@" in last["actor"]  # the desired commit's author, not a display string
    _time(last["at"])
    _time(web["updatedAt"])
    db = rows["db"]
    assert (db["observed"], db["converged"]) == ("provision_failed", False)
    failure = db["failure"]
    assert (failure["failedStep"], failure["errorKind"], failure["attempt"]) == (
        "make the database",
        "command_failed",
        1,
    )
    assert isinstance(failure["executionDurationSeconds"], float)


def test_pages_of_the_fleet_add_up_to_the_whole(served: Served) -> None:
    first = served.json("/api/v1/environments?limit=2")
    second = served.json("/api/v1/environments?limit=2&offset=2")

    assert [r["name"] for r in first["environments"]] == ["api", "db"]
    assert [r["name"] for r in second["environments"]] == ["web"]
    assert first["total"] == second["total"] == 3
    assert (second["offset"], second["limit"]) == (2, 2)


@pytest.mark.parametrize(
    ("query", "names", "counts"),
    [
        ("selector=team=a", ["api", "web"], {"running": 2}),
        ("selector=team%3Da,tier%3Dback", ["api"], {"running": 1}),
        ("selector=team!=a", ["db"], {"provision_failed": 1}),
        ("state=provision_failed", ["db"], {"provision_failed": 1, "running": 2}),
        ("state=running&selector=tier=back", ["api"], {"provision_failed": 1, "running": 1}),
        ("name=EB", ["web"], {"running": 1}),
        ("selector=team=nobody", [], {}),
    ],
)
def test_filters_by_selector_state_and_name(
    served: Served, query: str, names: list[str], counts: dict[str, int]
) -> None:
    data = served.json(f"/api/v1/environments?{query}")

    assert [r["name"] for r in data["environments"]] == names
    assert data["total"] == len(names)
    assert data["counts"] == counts  # by state over what selector and name chose, before the state filter


@pytest.mark.parametrize(
    ("query", "named", "accepted"),
    [
        ("selector=team", "selector: 'team' in 'team' has no '='", "use key=value"),
        ("state=runing", "state='runing' is not a state", "expected one or more of created"),
        ("limit=0", "limit=0 is out of range", "expected an integer from 1 to 10000"),
        ("limit=ten", "limit='ten' is not a number", "expected an integer"),
        ("offset=-1", "offset=-1 is out of range", "expected an integer from 0"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_parameter_and_what_is_accepted(
    served: Served, query: str, named: str, accepted: str
) -> None:
    response = served.get(f"/api/v1/environments?{query}")

    assert response.status_code == 400
    body = response.json()
    assert body["formatVersion"] == 1
    assert named in body["error"]
    assert accepted in body["error"]


def test_one_environment_in_full(served: Served) -> None:
    web = served.json("/api/v1/environments/web")["environment"]

    assert [p["phase"] for p in web["phases"]] == ["provision", "configure", "release", "run"]
    for phase in web["phases"]:
        assert len(phase["hash"]) == 64
        _time(phase["completedAt"])
    assert web["outputs"] == {}
    assert web["spec"]["desiredState"] == "running"
    assert web["state"]["state"] == "running"  # state.json as stored
    assert web["nextStep"].startswith("nothing")

    db = served.json("/api/v1/environments/db")["environment"]
    trace = db["failure"]["trace"]
    assert "disk full on /dev/db" in trace["content"]  # the trace file's content, from the data dir
    assert trace["truncated"] is False
    assert "reconcile retry db" in db["nextStep"]


def test_history_is_newest_first_and_limited(served: Served) -> None:
    data = served.json("/api/v1/environments/web/history?limit=2")

    assert data["environment"] == "web"
    assert [(e["from"], e["to"]) for e in data["events"]] == [
        ("starting", "running"),
        ("released", "starting"),
    ]
    everything = served.json("/api/v1/environments/web/history")["events"]
    assert len(everything) == 9  # none -> created, then two per phase
    assert everything[-1]["from"] == "none"


@pytest.mark.parametrize("path", ["/api/v1/environments/nope", "/api/v1/environments/nope/history"])
def test_an_unknown_environment_is_a_404_naming_it(served: Served, path: str) -> None:
    response = served.get(path)

    assert response.status_code == 404
    assert "unknown environment 'nope'" in response.json()["error"]


def test_the_api_is_read_only(served: Served) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        response = served.client.request(method, "/api/v1/environments/web")
        assert response.status_code == 405, method
    assert served.json("/api/v1/environments/web")["environment"]["observed"] == "running"


def test_a_trace_path_on_the_state_branch_cannot_read_outside_the_data_dir(
    fleet: GitOpsRepo, served: Served
) -> None:
    secret = fleet.path.parent / "elsewhere.log"
    secret.write_text("not for the dashboard\n")
    rewrite_state(fleet, "db", {"failure.traceFile": "../../../" + str(secret)})

    trace = served.json("/api/v1/environments/db")["environment"]["failure"]["trace"]

    assert trace["content"] is None
    assert "cannot read" in trace["error"]
    assert "not for the dashboard" not in json.dumps(trace)


def test_a_corrupt_state_document_is_reported_not_a_server_error(fleet: GitOpsRepo, served: Served) -> None:
    rewrite_state(fleet, "web", {"state": "flying"})

    rows = {r["name"]: r for r in served.json("/api/v1/environments")["environments"]}
    detail = served.json("/api/v1/environments/web")["environment"]

    assert rows["web"]["verdict"] == "corrupt"
    assert served.json("/api/v1/environments")["counts"] == {
        "corrupt": 1,
        "provision_failed": 1,
        "running": 1,
    }
    assert [r["name"] for r in served.json("/api/v1/environments?state=corrupt")["environments"]] == ["web"]
    assert "flying" in rows["web"]["problems"][0]
    assert rows["api"]["observed"] == "running"  # the others still shown
    assert detail["verdict"] == "corrupt"
