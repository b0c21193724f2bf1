"""The state branch read as an event log: the one reader of its history.

A commit on the state branch is an event: a transition (From differs from To,
``Reconcile-Event: transition``) or an observation (``drift``, ``retry``, ...).
``history``, ``status --at``, ``show --at``, ``log`` and the notifiers all read
events through ``EventLog``.

Walking 100,000 commits to answer "web's last 20" or "the tip at 10:15" is
slow, so the log keeps a small index of the branch's first-parent chain in
SQLite under the git dir (``<gitdir>/reconciler/events-<ref hash>.sqlite``).
It is derived data only: brought up to date from the ref at every read
(walking only the new commits), rebuilt from scratch when its tip is no longer
on the branch (a rewritten branch) and when it is missing or unreadable, and
kept in memory when the git dir cannot be written. See
docs/decisions/015-event-log.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pygit2

from reconciler.store.message import TRANSITION, TransitionMessage
from reconciler.store.model import TransitionRecord

logger = logging.getLogger(__name__)

#: Bumped when the index's layout or content changes: an older index is rebuilt.
INDEX_VERSION = "1"
INDEX_DIR = "reconciler"


@dataclass(frozen=True)
class Event:
    """One state-branch commit that records something about one environment."""

    environment: str
    #: ``transition`` or the observation's kind (SPEC 4.1).
    kind: str
    from_state: str
    to_state: str
    #: ``None`` for a commit written before ``Reconcile-Actor`` existed.
    actor: str | None
    desired_commit: str | None
    at: datetime
    detail: str | None
    holder: str
    #: The state-branch commit (``None`` for the file and memory stores).
    commit: str | None

    @property
    def is_transition(self) -> bool:
        return self.kind == TRANSITION

    def to_json(self) -> dict[str, Any]:
        """SPEC 5's conventions: plain values, times in RFC 3339."""
        return {
            "environment": self.environment,
            "event": self.kind,
            "from": self.from_state,
            "to": self.to_state,
            "actor": self.actor,
            "desiredCommit": self.desired_commit,
            "at": self.at.isoformat().replace("+00:00", "Z"),
            "detail": self.detail,
            "holder": self.holder,
            "commit": self.commit,
        }

    @classmethod
    def from_message(cls, msg: TransitionMessage, at: datetime, commit: str | None) -> Event:
        return cls(
            environment=msg.name,
            kind=msg.event,
            from_state=msg.from_state,
            to_state=msg.to_state,
            actor=msg.actor,
            desired_commit=msg.desired_commit,
            at=at,
            detail=msg.detail,
            holder=msg.holder,
            commit=commit,
        )

    @classmethod
    def from_record(cls, record: TransitionRecord) -> Event:
        return cls(
            environment=record.name,
            kind=record.event,
            from_state=record.from_state,
            to_state=record.to_state,
            actor=record.actor,
            desired_commit=record.desired_commit,
            at=record.at,
            detail=record.detail,
            holder=record.holder,
            commit=record.commit_id,
        )

    def to_record(self) -> TransitionRecord:
        return TransitionRecord(
            name=self.environment,
            from_state=self.from_state,
            to_state=self.to_state,
            desired_commit=self.desired_commit,
            holder=self.holder,
            detail=self.detail,
            at=self.at,
            commit_id=self.commit,
            actor=self.actor,
            event=self.kind,
        )


@dataclass(frozen=True)
class EventQuery:
    """``history``'s filters (SPEC 5); every one optional, all of them must hold."""

    names: Sequence[str] = ()
    since: datetime | None = None
    until: datetime | None = None
    #: A case-insensitive substring of the actor.
    actor: str | None = None
    kinds: Sequence[str] = ()
    limit: int | None = None

    def matches(self, event: Event) -> bool:
        return (
            (not self.names or event.environment in self.names)
            and (self.since is None or event.at >= self.since)
            and (self.until is None or event.at <= self.until)
            and (self.actor is None or self.actor.lower() in (event.actor or "").lower())
            and (not self.kinds or event.kind in self.kinds)
        )


def filter_events(events: Iterable[Event], query: EventQuery) -> list[Event]:
    """``query`` over events already in memory, newest first (the file and memory stores)."""
    found: list[Event] = []
    for event in events:
        if query.limit is not None and len(found) >= query.limit:
            break
        if query.matches(event):
            found.append(event)
    return found


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commits (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    at INTEGER NOT NULL,
    env TEXT,
    kind TEXT,
    from_state TEXT,
    to_state TEXT,
    actor TEXT,
    desired TEXT,
    holder TEXT,
    detail TEXT
);
CREATE INDEX IF NOT EXISTS commits_by_env ON commits (env, seq);
CREATE INDEX IF NOT EXISTS commits_by_at ON commits (at, seq);
"""
_COLUMNS = "id, at, env, kind, from_state, to_state, actor, desired, holder, detail"


def _row_of(commit: pygit2.Commit) -> tuple[Any, ...]:
    """A commit as an index row; a commit that is no event (a hand edit) has no environment."""
    msg = TransitionMessage.parse(commit.message)
    if msg is None:
        return (str(commit.id), commit.commit_time, None, None, None, None, None, None, None, None)
    return (
        str(commit.id),
        commit.commit_time,
        msg.name,
        msg.event,
        msg.from_state,
        msg.to_state,
        msg.actor,
        msg.desired_commit,
        msg.holder,
        msg.detail,
    )


def _event_of(row: Sequence[Any]) -> Event:
    commit, at, env, kind, from_state, to_state, actor, desired, holder, detail = row
    return Event(
        environment=env,
        kind=kind,
        from_state=from_state,
        to_state=to_state,
        actor=actor,
        desired_commit=desired,
        at=datetime.fromtimestamp(at, UTC),
        detail=detail,
        holder=holder or "",
        commit=commit,
    )


class EventLog:
    """The events of one state branch, newest first, through the index."""

    def __init__(self, repo: pygit2.Repository, ref: str) -> None:
        self._repo = repo
        self.ref = ref
        digest = hashlib.sha256(ref.encode()).hexdigest()[:16]
        self.index_path = Path(repo.path) / INDEX_DIR / f"events-{digest}.sqlite"
        self._mutex = threading.RLock()
        self._db: sqlite3.Connection | None = None

    # -- the index --------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if self._db is not None:
            return self._db
        try:
            self.index_path.parent.mkdir(exist_ok=True)
            if not os.access(self.index_path.parent, os.W_OK):
                raise PermissionError(f"{self.index_path.parent} is not writable")
            db = sqlite3.connect(self.index_path, timeout=30, check_same_thread=False, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # derived data: consistent after a crash, maybe behind
            db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as e:
            logger.warning(
                "event index unreadable; rebuilding it", extra={"path": str(self.index_path), "error": str(e)}
            )
            self._remove_index()
            try:
                db = sqlite3.connect(
                    self.index_path, timeout=30, check_same_thread=False, isolation_level=None
                )
                db.executescript(_SCHEMA)
            except sqlite3.DatabaseError:
                db = self._memory()
        except OSError:
            db = self._memory()  # a read-only git dir: an index for this process only
        self._db = db
        return db

    def _memory(self) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:", check_same_thread=False, isolation_level=None)
        db.executescript(_SCHEMA)
        return db

    def _remove_index(self) -> None:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(OSError):
                os.unlink(f"{self.index_path}{suffix}")

    def tip(self) -> pygit2.Commit | None:
        reference = self._repo.references.get(self.ref)
        if reference is None:
            return None
        obj = self._repo.get(reference.resolve().target)
        return obj if isinstance(obj, pygit2.Commit) else None

    def sync(self) -> sqlite3.Connection:
        """Bring the index up to the branch's tip; return the connection to query."""
        with self._mutex:
            try:
                return self._sync()
            except sqlite3.DatabaseError as e:
                logger.warning("event index corrupt; rebuilding it", extra={"error": str(e)})
                if self._db is not None:
                    self._db.close()
                self._db = None
                self._remove_index()
                try:
                    return self._sync()
                except sqlite3.DatabaseError:
                    self._db = self._memory()  # cannot write it here (another user's file): keep it in memory
                    return self._sync()

    def _sync(self) -> sqlite3.Connection:
        db = self._connect()
        tip = self.tip()
        tip_id = "" if tip is None else str(tip.id)
        if self._indexed_tip(db) == tip_id and self._version_ok(db):
            return db
        db.execute("BEGIN IMMEDIATE")
        try:
            if not self._version_ok(db):
                db.execute("DELETE FROM commits")
            if self._indexed_tip(db) != tip_id:
                self._extend(db, tip)
                db.execute("INSERT OR REPLACE INTO meta VALUES ('tip', ?)", (tip_id,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('version', ?)", (INDEX_VERSION,))
            db.execute("INSERT OR REPLACE INTO meta VALUES ('ref', ?)", (self.ref,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return db

    @staticmethod
    def _indexed_tip(db: sqlite3.Connection) -> str | None:
        row = db.execute("SELECT value FROM meta WHERE key = 'tip'").fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _version_ok(db: sqlite3.Connection) -> bool:
        row = db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
        return row is not None and row[0] == INDEX_VERSION

    def _extend(self, db: sqlite3.Connection, tip: pygit2.Commit | None) -> None:
        """Index the commits after the newest one already indexed (first parents only)."""
        if tip is None:
            db.execute("DELETE FROM commits")
            return
        empty = db.execute("SELECT 1 FROM commits LIMIT 1").fetchone() is None
        new: list[pygit2.Commit] = []
        known_seq = 0
        walker = self._repo.walk(tip.id, pygit2.enums.SortMode.NONE)
        walker.simplify_first_parent()
        for commit in walker:
            if not empty:
                row = db.execute("SELECT seq FROM commits WHERE id = ?", (str(commit.id),)).fetchone()
                if row is not None:
                    known_seq = int(row[0])
                    break
            new.append(commit)
        # Whatever was indexed past the commit found is no longer on the branch.
        db.execute("DELETE FROM commits WHERE seq > ?", (known_seq,))
        rows = ((known_seq + i + 1, *_row_of(c)) for i, c in enumerate(reversed(new)))
        insert = f"INSERT INTO commits (seq, {_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"  # noqa: S608
        db.executemany(insert, rows)

    # -- queries ----------------------------------------------------------------------

    def events(self, query: EventQuery = EventQuery()) -> list[Event]:
        """The events ``query`` selects, newest first."""
        where = ["env IS NOT NULL"]
        args: list[Any] = []
        if query.names:
            where.append(f"env IN ({','.join('?' * len(query.names))})")
            args += list(query.names)
        if query.since is not None:
            where.append("at >= ?")
            args.append(int(query.since.timestamp()))
        if query.until is not None:
            where.append("at <= ?")
            args.append(int(query.until.timestamp()))
        if query.actor is not None:
            where.append("instr(lower(coalesce(actor, '')), ?) > 0")
            args.append(query.actor.lower())
        if query.kinds:
            where.append(f"kind IN ({','.join('?' * len(query.kinds))})")
            args += list(query.kinds)
        # Only fixed column names and placeholders are spliced in; every value is a parameter.
        sql = f"SELECT {_COLUMNS} FROM commits WHERE {' AND '.join(where)} ORDER BY seq DESC"  # noqa: S608
        if query.limit is not None:
            sql += " LIMIT ?"
            args.append(query.limit)
        with self._mutex:
            db = self.sync()
            rows = db.execute(sql, args).fetchall()
        return [_event_of(row) for row in rows]

    def after(self, commit: str | None) -> tuple[list[Event], str | None]:
        """The events after state-branch commit ``commit`` (all of them for ``None``), oldest first,
        and the tip they reach (the cursor to pass next time).

        A ``commit`` no longer on the branch (it was rewritten) yields every event.
        """
        with self._mutex:
            db = self.sync()
            tip = self._indexed_tip(db) or None
            seq = 0
            if commit is not None:
                row = db.execute("SELECT seq FROM commits WHERE id = ?", (commit,)).fetchone()
                seq = 0 if row is None else int(row[0])
            sql = f"SELECT {_COLUMNS} FROM commits WHERE seq > ? AND env IS NOT NULL ORDER BY seq"  # noqa: S608
            rows = db.execute(sql, (seq,)).fetchall()
        return [_event_of(row) for row in rows], tip

    def tip_id(self) -> str | None:
        tip = self.tip()
        return None if tip is None else str(tip.id)

    def commit_at(self, when: datetime) -> str | None:
        """The newest state-branch commit written at or before ``when`` (``None``: the branch was empty)."""
        with self._mutex:
            db = self.sync()
            row = db.execute(
                "SELECT id FROM commits WHERE at <= ? ORDER BY seq DESC LIMIT 1", (int(when.timestamp()),)
            ).fetchone()
        return None if row is None else str(row[0])

    def last_transitions(self, names: Iterable[str], before: str | None = None) -> dict[str, Event]:
        """Each named environment's newest transition (at or before commit ``before``), in one query."""
        wanted = set(names)
        with self._mutex:
            db = self.sync()
            limit = 1 << 62
            if before is not None:
                row = db.execute("SELECT seq FROM commits WHERE id = ?", (before,)).fetchone()
                limit = 0 if row is None else int(row[0])
            sql = (
                f"SELECT {_COLUMNS} FROM commits WHERE seq IN ("  # noqa: S608 - fixed column names
                "SELECT max(seq) FROM commits WHERE kind = ? AND seq <= ? GROUP BY env)"
            )
            rows = db.execute(sql, (TRANSITION, limit)).fetchall()
        found = (_event_of(row) for row in rows)
        return {e.environment: e for e in found if e.environment in wanted}

    def close(self) -> None:
        with self._mutex:
            if self._db is not None:
                self._db.close()
                self._db = None
