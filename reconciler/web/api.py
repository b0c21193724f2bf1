"""``/api/v1``: the fleet, one environment, its history (SPEC 6.1, JSON by SPEC 5's conventions)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from reconciler.desired.selector import Selector, SelectorError, parse_selector
from reconciler.domain.states import STATES_BY_NAME
from reconciler.engine.fleet import environment_detail, history
from reconciler.views import FORMAT_VERSION
from reconciler.web.fleet import FleetView

DEFAULT_LIMIT = 100
MAX_LIMIT = 10_000
DEFAULT_HISTORY = 50
MAX_HISTORY = 1_000


class BadQuery(ValueError):
    """A query parameter that cannot be understood: 400, naming it and what is accepted."""


def _json(data: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse({"formatVersion": FORMAT_VERSION, **data}, status_code=status)


def error(status: int, message: str) -> JSONResponse:
    return _json({"error": message}, status)


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadQuery(f"{name}={raw!r} is not a number: expected an integer from {low} to {high}") from None
    if not low <= value <= high:
        raise BadQuery(f"{name}={value} is out of range: expected an integer from {low} to {high}")
    return value


def _state(row: dict[str, Any]) -> str:
    """The row's observed state for counts and the state filter: ``none`` never observed, ``corrupt``."""
    if row["observed"] is not None:
        return str(row["observed"])
    return "corrupt" if row["verdict"] == "corrupt" else "none"


def _states(text: str | None) -> set[str] | None:
    if not text:
        return None
    wanted = {s.strip() for s in text.split(",") if s.strip()}
    unknown = sorted(wanted - set(STATES_BY_NAME) - {"none", "corrupt"})
    if unknown:
        raise BadQuery(
            f"state={unknown[0]!r} is not a state: expected one or more of {', '.join(STATES_BY_NAME)} "
            "none (never observed) or corrupt (unreadable state.json), comma-separated"
        )
    return wanted


def _matcher(request: Request) -> tuple[Callable[[dict[str, Any]], bool], set[str] | None]:
    text = request.query_params.get("selector", "")
    try:
        selector = parse_selector(text) if text.strip() else Selector()
    except SelectorError as e:
        raise BadQuery(f"selector: {e}") from None
    name = request.query_params.get("name", "").lower()

    def matches(row: dict[str, Any]) -> bool:
        if name and name not in row["name"]:
            return False
        return selector.matches(row["labels"])

    return matches, _states(request.query_params.get("state"))


def list_environments(view: FleetView, request: Request) -> JSONResponse:
    try:
        matches, states = _matcher(request)
        limit = _int(request, "limit", DEFAULT_LIMIT, 1, MAX_LIMIT)
        offset = _int(request, "offset", 0, 0, 10**9)
    except BadQuery as e:
        return error(400, str(e))
    rows, tip, snapshot = view.rows()
    selected = [r for r in rows if matches(r)]
    counts = Counter(_state(r) for r in selected)
    if states is not None:
        selected = [r for r in selected if _state(r) in states]
    return _json(
        {
            "stateCommit": tip,
            "desiredCommit": snapshot.commit if snapshot is not None else None,
            "total": len(selected),
            "offset": offset,
            "limit": limit,
            "counts": dict(sorted(counts.items())),
            "converged": sum(1 for r in selected if r["converged"]),
            "environments": selected[offset : offset + limit],
        }
    )


def get_environment(view: FleetView, request: Request) -> JSONResponse:
    name = request.path_params["name"]
    current = view.source.current()
    if current is None:
        return error(503, "no desired state has been read yet")
    snapshot, engine = current
    detail = environment_detail(engine, snapshot, name, view.source.data_dir)
    if detail is None:
        return error(
            404, f"unknown environment '{name}': it is not declared, not observed and has no history"
        )
    return _json({"environment": detail})


def get_history(view: FleetView, request: Request) -> JSONResponse:
    name = request.path_params["name"]
    try:
        limit = _int(request, "limit", DEFAULT_HISTORY, 1, MAX_HISTORY)
    except BadQuery as e:
        return error(400, str(e))
    current = view.source.current()
    if current is None:
        return error(503, "no desired state has been read yet")
    snapshot, engine = current
    events = history(engine.store, name, limit)
    if not events and name not in snapshot.names and engine.store.read(name) is None:
        return error(
            404, f"unknown environment '{name}': it is not declared, not observed and has no history"
        )
    return _json({"environment": name, "events": [e.to_json() for e in events]})
