"""``plan_all`` reuses the previous call's plans only where nothing they were decided from changed."""

from __future__ import annotations

from datetime import timedelta
from types import MappingProxyType

import pytest

from reconciler.desired.models import ConfigFile
from reconciler.desired.resolved import DesiredSnapshot, ResolvedEnvironment
from reconciler.domain import AnyEnvironment, Configuring, Destroyed, Lock, Phase, ProvisionFailed, Running
from reconciler.planner import EnvironmentPlan, PlanContext, Verdict, plan_all, plan_environment
from reconciler.planner import plan as plan_module

from .builders import LONG_AGO, NOW, desired, failure, hashes, lock, observed


def snapshot(*envs: ResolvedEnvironment) -> DesiredSnapshot:
    return DesiredSnapshot(
        commit="c0ffee", config=ConfigFile(), environments=MappingProxyType({e.name: e for e in envs})
    )


def never_stale(lock: Lock) -> bool:
    return False


def fresh(snap: DesiredSnapshot, found: dict[str, AnyEnvironment], **kw: object) -> list[EnvironmentPlan]:
    """What ``plan_all`` gives with nothing remembered."""
    plan_module._Memory.plans = MappingProxyType({})
    plan_module._Memory.ordered = None
    return plan_all(snap, found, **kw)  # type: ignore[arg-type]


def test_a_repeated_plan_decides_only_what_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    web = desired("running", name="web", depends_on=("db",))
    db = desired("running", name="db")
    found = {"web": observed(Running, name="web"), "db": observed(Running, name="db")}
    kw = {"now": NOW, "prune": False, "lock_stale": never_stale}
    first = fresh(snapshot(web, db), found, **kw)

    decided: list[str] = []
    original = plan_module.plan_environment

    def counting(name: str, *args: object) -> EnvironmentPlan:
        decided.append(name)
        return original(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(plan_module, "plan_environment", counting)
    assert plan_all(snapshot(web, db), found, **kw) == first  # type: ignore[arg-type]
    assert decided == []
    # db's file changes: db is decided anew, and web, whose dependency's verdict changed.
    db2 = desired("running", name="db", phase_hashes=dict.fromkeys(db.phase_hashes, "new"))
    again = plan_all(snapshot(web, db2), found, **kw)  # type: ignore[arg-type]
    assert decided == ["db", "web"]
    monkeypatch.undo()
    assert again == fresh(snapshot(web, db2), found, **kw)
    by_name = {p.name: p for p in again}
    assert by_name["db"].verdict is Verdict.CHANGES
    assert by_name["web"].verdict is Verdict.CONVERGED  # converged itself: nothing to wait for


def test_a_dependency_that_stops_converging_holds_back_its_dependent_again() -> None:
    web = desired("running", name="web", depends_on=("db",), phase_hashes=hashes(run="new"))
    db = desired("running", name="db")
    found = {"web": observed(Running, name="web"), "db": observed(Running, name="db")}
    kw = {"now": NOW, "prune": False, "lock_stale": never_stale}
    assert {p.name: p.verdict for p in fresh(snapshot(web, db), found, **kw)}["web"] is Verdict.CHANGES
    found["db"] = observed(ProvisionFailed, name="db")
    plans = {p.name: p for p in plan_all(snapshot(web, db), found, **kw)}  # type: ignore[arg-type]
    assert plans["web"].verdict is Verdict.WAITING
    assert plans["web"].reason == "waiting for db"


def test_a_destroy_waits_again_when_a_dependent_comes_back() -> None:
    db = desired("destroyed", name="db")
    web = desired("running", name="web", depends_on=("db",))
    found = {"db": observed(Running, name="db"), "web": observed(Destroyed, name="web")}
    kw = {"now": NOW, "prune": False, "lock_stale": never_stale}
    assert {p.name: p.verdict for p in fresh(snapshot(db, web), found, **kw)}["db"] is Verdict.CHANGES
    found["web"] = observed(Running, name="web")
    plans = {p.name: p for p in plan_all(snapshot(db, web), found, **kw)}  # type: ignore[arg-type]
    assert plans["db"].verdict is Verdict.WAITING


def test_a_backoff_is_decided_at_each_call_s_time() -> None:
    web = desired("running", name="web", backoff=60)
    failed = observed(ProvisionFailed, name="web", fail=failure(Phase.PROVISION, failed_at=NOW))
    snap = snapshot(web)
    early = plan_all(snap, {"web": failed}, now=NOW, prune=False, lock_stale=never_stale)
    assert early[0].verdict is Verdict.WAITING
    late = plan_all(snap, {"web": failed}, now=NOW + timedelta(hours=1), prune=False, lock_stale=never_stale)
    assert late[0].verdict is Verdict.CHANGES


def test_a_lock_is_judged_at_each_call() -> None:
    web = desired("running", name="web")
    held = observed(Configuring, name="web", held=lock(expires_at=LONG_AGO + timedelta(hours=1)))
    snap = snapshot(web)
    waiting = plan_all(snap, {"web": held}, now=NOW, prune=False, lock_stale=never_stale)
    assert waiting[0].verdict is Verdict.WAITING
    stale = plan_all(snap, {"web": held}, now=NOW, prune=False, lock_stale=lambda _: True)
    assert stale[0].verdict is Verdict.CHANGES
    ctx = PlanContext(now=NOW, lock_stale=True)
    assert stale[0] == plan_environment("web", held, web, ctx)


def test_prune_is_part_of_what_a_plan_is_decided_from() -> None:
    gone = {"old": observed(Running, name="old")}
    snap = snapshot()
    kept = plan_all(snap, gone, now=NOW, prune=False, lock_stale=never_stale)
    assert kept[0].verdict is Verdict.UNMANAGED
    pruned = plan_all(snap, gone, now=NOW, prune=True, lock_stale=never_stale)
    assert pruned[0].verdict is Verdict.CHANGES
