"""The contract every StateStore keeps, run against the git, file and memory stores alike."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from reconciler.domain import ErrorKind, Lock, LockHolder, Phase
from reconciler.domain.dispatch import fail_phase, start_phase, succeed_phase
from reconciler.store import (
    CorruptState,
    CorruptStateError,
    LockIdMismatch,
    LostRace,
    Observed,
    recover_stale,
)
from reconciler.store.lock import new_lock
from tests.store.conftest import StoreKit
from tests.store.kit import T0, created, failure


def _create(kit: StoreKit, name: str) -> Observed:
    return kit.store.apply(name, None, created(name), from_state="none", desired_commit="c0ffee")


def _start(
    kit: StoreKit, obs: Observed, phase: Phase = Phase.PROVISION, lock: Lock | None = None
) -> Observed:
    lock = lock or new_lock(60, 30, T0)
    after = start_phase(obs.env, phase, lock=lock, at=T0)
    return kit.store.apply(
        obs.env.name, obs.version, after, from_state=obs.env.state_name, desired_commit="c0ffee"
    )


def test_an_environment_never_observed_reads_as_none(kit: StoreKit) -> None:
    assert kit.store.read("web") is None
    assert kit.store.read_all() == {}
    assert kit.store.history() == []


def test_applied_transition_is_read_back(kit: StoreKit) -> None:
    written = _start(kit, _create(kit, "web"))
    again = kit.store.read("web")
    assert again == written
    assert again is not None
    assert again.env.state_name == "provisioning"
    assert again.env.lock is not None
    assert again.env.lock.holder.pid == os.getpid()
    assert kit.store.read_all() == {"web": written}


def test_stale_version_loses_the_race_and_writes_nothing(kit: StoreKit) -> None:
    first = _create(kit, "web")
    winner = _start(kit, first)
    with pytest.raises(LostRace):
        _start(kit, first)  # decided from the state before the winner's commit
    assert kit.store.read("web") == winner
    assert len(kit.store.history("web")) == 2


def test_creating_an_existing_environment_loses_the_race(kit: StoreKit) -> None:
    _create(kit, "web")
    with pytest.raises(LostRace):
        _create(kit, "web")


def test_other_environments_changing_is_not_a_lost_race(kit: StoreKit) -> None:
    web = _create(kit, "web")
    db = _create(kit, "db")
    _start(kit, db)  # the branch moved, but not for web
    started = _start(kit, web)
    assert started.env.state_name == "provisioning"
    assert set(kit.store.read_all()) == {"web", "db"}


def test_history_is_newest_first_filtered_and_limited(kit: StoreKit) -> None:
    web = _create(kit, "web")
    _create(kit, "db")
    web = _start(kit, web)
    after = succeed_phase(web.env, phase_hash="h1", at=T0)
    kit.store.apply(
        "web", web.version, after, from_state="provisioning", desired_commit="c0ffee", detail="ok"
    )

    every = kit.store.history()
    assert [(r.name, r.from_state, r.to_state) for r in every] == [
        ("web", "provisioning", "provisioned"),
        ("web", "created", "provisioning"),
        ("db", "none", "created"),
        ("web", "none", "created"),
    ]
    assert every[0].detail == "ok"
    assert every[0].desired_commit == "c0ffee"
    assert every[0].holder == f"{socket.gethostname()}:{os.getpid()}"
    assert [r.to_state for r in kit.store.history("web", limit=2)] == ["provisioned", "provisioning"]
    assert [r.to_state for r in kit.store.history("db")] == ["created"]
    assert kit.store.history(limit=1) == every[:1]


def test_unlock_with_the_lock_id_ends_the_phase_as_interrupted(kit: StoreKit) -> None:
    started = _start(kit, _create(kit, "web"))
    assert started.env.lock is not None
    with pytest.raises(LockIdMismatch):
        kit.store.unlock("web", uuid4())
    assert kit.store.read("web") == started  # a wrong id changes nothing

    ended = kit.store.unlock("web", started.env.lock.id)
    assert ended.env.state_name == "provision_failed"
    assert ended.env.lock is None
    details = ended.env.error_details
    assert details is not None
    assert details.error_kind is ErrorKind.INTERRUPTED
    assert kit.store.history("web")[0].to_state == "provision_failed"
    with pytest.raises(LockIdMismatch):  # no longer locked
        kit.store.unlock("web", started.env.lock.id)


def test_unlock_of_an_unknown_environment_is_refused(kit: StoreKit) -> None:
    with pytest.raises(LockIdMismatch):
        kit.store.unlock("ghost", uuid4())


def test_corrupt_state_is_reported_and_never_overwritten(kit: StoreKit) -> None:
    web = _create(kit, "web")
    _create(kit, "db")
    kit.corrupt("web", '{"schema": 1, "name": "web", "state": "flying"')

    with pytest.raises(CorruptStateError) as caught:
        kit.store.read("web")
    assert "web" in str(caught.value)
    assert "Tip:" in str(caught.value)
    everything = kit.store.read_all()
    assert isinstance(everything["web"], CorruptState)
    assert "state.json" in everything["web"].path
    assert isinstance(everything["db"], Observed)  # the others are unaffected

    for version in (web.version, None):
        with pytest.raises(CorruptStateError):
            _start(kit, Observed(env=web.env, version=version))
    corrupt = kit.store.read_all()["web"]
    assert isinstance(corrupt, CorruptState)
    assert corrupt == everything["web"]


def test_recovery_ends_a_dead_holders_phase_as_interrupted(kit: StoreKit) -> None:
    dead = LockHolder(
        host=socket.gethostname(), pid=999_999, process_started_at=datetime(2001, 1, 1, tzinfo=UTC)
    )
    lock = Lock(holder=dead, acquired_at=T0, expires_at=T0 + timedelta(hours=1))
    _start(kit, _create(kit, "web"), lock=lock)
    alive = _start(kit, _create(kit, "db"))  # held by this very process

    assert recover_stale(kit.store, T0 + timedelta(minutes=1)) == ["web"]
    web = kit.store.read("web")
    assert web is not None
    assert web.env.state_name == "provision_failed"
    details = web.env.error_details
    assert details is not None
    assert details.error_kind is ErrorKind.INTERRUPTED
    assert details.error_summary == f"interrupted: holder {socket.gethostname()}:999999 is gone"
    assert details.attempt == 0
    assert kit.store.read("db") == alive
    assert recover_stale(kit.store, T0 + timedelta(minutes=1)) == []  # nothing left to recover


def test_recovery_of_an_expired_lock_keeps_the_attempt_it_was_retrying(kit: StoreKit) -> None:
    obs = _start(kit, _create(kit, "web"))
    failed = fail_phase(obs.env, failure(Phase.PROVISION, attempt=2), at=T0)
    obs = kit.store.apply("web", obs.version, failed, from_state="provisioning", desired_commit=None)
    _start(kit, obs)  # the retry; its holder (this process) lives, but the lock runs out

    assert recover_stale(kit.store, T0 + timedelta(hours=2), names=["other"]) == []
    assert recover_stale(kit.store, T0 + timedelta(hours=2)) == ["web"]
    web = kit.store.read("web")
    assert web is not None
    assert web.env.error_details is not None
    assert web.env.error_details.error_summary == "interrupted: lock expired"
    assert web.env.error_details.attempt == 2  # an interruption is not an attempt
