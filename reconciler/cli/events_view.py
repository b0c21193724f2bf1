"""What ``history``, ``status --at`` and ``show --at`` print, read through the one event model.

``WHEN`` is an RFC 3339 time (``2026-12-04T10:15:00Z``) or a state-branch
revision (``reconciler/state~3``, a commit id): the newest state-branch
commit written at or before it is the moment shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pygit2

from reconciler.store import StateStore
from reconciler.store.events import Event, EventLog, EventQuery, filter_events
from reconciler.store.git import GitStore
from reconciler.store.remote import RemoteStore
from reconciler.views import FORMAT_VERSION


class WhenError(ValueError):
    """``--at``/``--since``/``--until`` names no moment this command can show."""


def parse_time(value: str, option: str) -> datetime:
    """An RFC 3339 time; anything else is refused saying what would be accepted."""
    text = value.strip()
    try:
        parsed = datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in text.upper():
        raise WhenError(
            f"{option} '{value}' is not an RFC 3339 time: use e.g. 2026-12-04T10:15:00Z or "
            "2026-12-04T11:15:00+01:00 (a date, a time and a zone)"
        )
    return parsed


def event_log(store: StateStore) -> EventLog | None:
    """The state branch's event log, when ``store`` keeps state on one."""
    if isinstance(store, RemoteStore):
        return store.local.events
    if isinstance(store, GitStore):
        return store.events
    inner = getattr(store, "inner", None)  # the daemon's guarded store
    return event_log(inner) if inner is not None else None


def query_events(store: StateStore, query: EventQuery) -> list[Event]:
    log = event_log(store)
    if log is not None:
        return log.events(query)
    return filter_events((Event.from_record(r) for r in store.history(None, None)), query)


def unknown_names(store: StateStore, declared: set[str], names: Sequence[str]) -> list[str]:
    """Those of ``names`` neither declared, nor observed, nor ever in the history (asks the index first)."""
    asked = [n for n in names if n not in declared]
    if not asked:
        return []
    log = event_log(store)
    if log is not None:
        db = log.sync()
        asked = [
            n
            for n in asked
            if db.execute("SELECT 1 FROM commits WHERE env = ? LIMIT 1", (n,)).fetchone() is None
        ]
    if not asked:
        return []
    known = known_names(store, declared)
    return [n for n in asked if n not in known]


def known_names(store: StateStore, declared: set[str]) -> set[str]:
    """Every environment a person may ask about: declared, observed now, or ever in the history."""
    names = set(declared) | set(store.read_all())
    log = event_log(store)
    if log is not None:
        db = log.sync()
        names |= {row[0] for row in db.execute("SELECT DISTINCT env FROM commits WHERE env IS NOT NULL")}
    else:
        names |= {r.name for r in store.history(None, None)}
    return names


@dataclass(frozen=True)
class Moment:
    """A state-branch commit chosen by ``--at``."""

    commit: str
    at: datetime


def resolve_moment(repo: pygit2.Repository, log: EventLog, when: str) -> Moment | None:
    """The newest state-branch commit at or before ``when``; ``None`` when the branch did not exist yet."""
    try:
        moment = parse_time(when, "--at")
    except WhenError as not_time:
        try:
            obj = repo.revparse_single(when)
            commit = obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError) as e:
            raise WhenError(f"{not_time}; nor is it a revision of the state branch ({e})") from e
        db = log.sync()
        if db.execute("SELECT 1 FROM commits WHERE id = ?", (str(commit.id),)).fetchone() is None:
            raise WhenError(
                f"--at '{when}' is commit {str(commit.id)[:12]}, which is not on the state branch "
                f"{log.ref}: use a time, or a revision such as {log.ref.removeprefix('refs/heads/')}~3"
            ) from None
        return Moment(str(commit.id), datetime.fromtimestamp(commit.commit_time, UTC))
    found = log.commit_at(moment)
    return None if found is None else Moment(found, moment)


def fleet_at(store: GitStore, moment: Moment) -> dict[str, Any]:
    """``status --at``: every environment as the state branch recorded it then (SPEC 5's JSON)."""
    documents = store.documents_at(moment.commit)
    last = store.events.last_transitions(documents, before=moment.commit)
    rows = [_row(name, doc, last.get(name)) for name, doc in documents.items()]
    return {
        "formatVersion": FORMAT_VERSION,
        "at": _time(moment.at),
        "stateCommit": moment.commit,
        "environments": rows,
    }


def _row(name: str, doc: dict[str, Any] | str, last: Event | None) -> dict[str, Any]:
    row: dict[str, Any] = {"name": name, "state": None, "desiredCommit": None, "lock": None, "failure": None}
    if isinstance(doc, str):
        row.update(state="corrupt", failure={"errorSummary": doc})
    else:
        row.update(
            state=doc.get("state"),
            desiredCommit=doc.get("desiredCommit"),
            lock=doc.get("lock"),
            failure=doc.get("failure"),
            updatedAt=doc.get("updatedAt"),
            suspended=doc.get("suspended"),
        )
    row["lastTransition"] = None if last is None else last.to_json()
    return row


def _time(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def history_json(events: list[Event]) -> dict[str, Any]:
    return {"formatVersion": FORMAT_VERSION, "events": [e.to_json() for e in events]}


def history_lines(events: list[Event]) -> list[str]:
    lines: list[str] = []
    for e in events:
        commit = (e.commit or "")[:10]
        kind = "" if e.is_transition else f" [{e.kind}]"
        lines.append(
            f"{_time(e.at)} {commit} {e.environment}: {e.from_state} -> {e.to_state}{kind}".replace("  ", " ")
        )
        lines.append(f"    by {e.actor or 'unknown (written before actors were recorded)'}")
        if e.detail:
            lines += [f"    {line}" for line in e.detail.splitlines()]
    return lines
