"""``plan_all``: every environment with a file or a state, in dependency order, without git."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from reconciler.desired.models import ConfigFile
from reconciler.desired.resolved import DesiredSnapshot, Problem, ResolvedEnvironment
from reconciler.domain import AnyEnvironment, Configuring, Lock, Running
from reconciler.planner import Verdict, plan_all

from .builders import NOW, desired, observed


@dataclass(frozen=True)
class Corrupt:
    name: str
    path: str
    error: str


def snapshot(
    *envs: ResolvedEnvironment, broken: dict[str, tuple[Problem, ...]] | None = None
) -> DesiredSnapshot:
    return DesiredSnapshot(
        commit="c0ffee",
        config=ConfigFile(),
        environments=MappingProxyType({e.name: e for e in envs}),
        broken=MappingProxyType(broken or {}),
        problems=tuple(p for ps in (broken or {}).values() for p in ps),
    )


def never_stale(lock: Lock) -> bool:
    return False


def test_dependencies_come_first_and_gate_their_dependents() -> None:
    snap = snapshot(
        desired("running", name="web", depends_on=("api",)),
        desired("running", name="api", depends_on=("database",)),
        desired("running", name="database"),
        desired("running", name="docs"),
    )
    found: dict[str, AnyEnvironment | Corrupt] = {"database": observed(Running, name="database")}
    plans = plan_all(snap, found, now=NOW, prune=False, lock_stale=never_stale)
    assert [p.name for p in plans] == ["database", "api", "docs", "web"]
    verdicts = {p.name: p.verdict for p in plans}
    assert verdicts == {
        "database": Verdict.CONVERGED,
        "docs": Verdict.CHANGES,
        "api": Verdict.CHANGES,  # its dependency has converged
        "web": Verdict.WAITING,  # api has not, yet
    }
    assert next(p for p in plans if p.name == "web").reason == "waiting for api"


def test_a_cycle_is_planned_last_and_waits() -> None:
    snap = snapshot(
        desired("running", name="aa", depends_on=("bb",)),
        desired("running", name="bb", depends_on=("aa",)),
        desired("running", name="cc"),
    )
    plans = plan_all(snap, {}, now=NOW, prune=False, lock_stale=never_stale)
    assert [p.name for p in plans] == ["cc", "aa", "bb"]
    assert [p.verdict for p in plans] == [Verdict.CHANGES, Verdict.WAITING, Verdict.WAITING]


def test_invalid_file_and_corrupt_state_are_left_alone_and_others_planned() -> None:
    problem = Problem("environments/web.yaml", 3, 7, "`spec.desiredState`: unknown state", "web")
    snap = snapshot(desired("running", name="api"), desired("running", name="db"), broken={"web": (problem,)})
    found: dict[str, AnyEnvironment | Corrupt] = {
        "web": observed(Running, name="web"),
        "db": Corrupt("db", "refs/heads/reconciler/state:db/state.json", "invalid state document"),
    }
    plans = {p.name: p for p in plan_all(snap, found, now=NOW, prune=False, lock_stale=never_stale)}
    assert plans["web"].verdict is Verdict.INVALID
    assert plans["web"].observed_state == "running"
    assert "environments/web.yaml:3:7: `spec.desiredState`: unknown state" in plans["web"].reason
    assert plans["db"].verdict is Verdict.CORRUPT
    assert plans["db"].reason == (
        "state cannot be read, left alone: refs/heads/reconciler/state:db/state.json: invalid state document"
    )
    assert plans["api"].verdict is Verdict.CHANGES


def test_state_without_a_file_is_planned_and_lock_staleness_is_asked() -> None:
    asked: list[Lock] = []

    def stale(lock: Lock) -> bool:
        asked.append(lock)
        return True

    env = observed(Configuring, name="old")
    plans = plan_all(snapshot(), {"old": env}, now=NOW, prune=True, lock_stale=stale)
    assert asked == [env.lock]
    assert [(a.kind.value, str(a.phase)) for a in plans[0].actions] == [
        ("recover", "configure"),
        ("phase", "destroy"),
    ]


def test_destroying_a_dependency_waits_for_its_running_dependent() -> None:
    snap = snapshot(
        desired("destroyed", name="database"), desired("running", name="web", depends_on=("database",))
    )
    found: dict[str, AnyEnvironment | Corrupt] = {
        "database": observed(Running, name="database"),
        "web": observed(Running, name="web"),
    }
    plans = {p.name: p for p in plan_all(snap, found, now=NOW, prune=False, lock_stale=never_stale)}
    assert plans["database"].verdict is Verdict.WAITING
    assert plans["database"].reason == "waiting for web to be destroyed first"
