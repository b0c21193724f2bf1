"""A kept plan is the plan that was decided: what ``DiskKeptPlans`` writes reads back as itself."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pygit2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.cli.kept_plans import PLAIN_FIELDS, DiskKeptPlans
from reconciler.desired.models import DesiredState
from reconciler.desired.plancache import PlanCache
from reconciler.domain import ALL_STATES, ErrorKind, Phase, State
from reconciler.planner import EnvironmentPlan, PlanContext, plan_environment
from reconciler.planner.plan import KeptKey
from reconciler.store.git import GitStore

from .builders import NOW, desired, failure, observed

KEY: KeptKey = ("tree", "blob", "digest", False, (), ())


@pytest.fixture(scope="module")
def kept_plans(tmp_path_factory: pytest.TempPathFactory) -> DiskKeptPlans:
    root: Path = tmp_path_factory.mktemp("kept")
    pygit2.init_repository(str(root / "repo"), bare=True)
    tree = GitStore(root / "repo", fsync=False).read_lazily()
    return DiskKeptPlans(PlanCache(root / "plan-cache.marshal"), tree)


def test_a_kept_plan_holds_every_field_of_a_plan_but_a_time_and_a_suspension() -> None:
    # A field added to ``EnvironmentPlan`` must be kept (``PLAIN_FIELDS``) or keep the plan from being kept.
    fields = {field.name for field in dataclasses.fields(EnvironmentPlan)}
    assert fields == {"name", "retry_at", "suspended", *PLAIN_FIELDS}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    state=st.sampled_from([None, *ALL_STATES]),
    wanted=st.sampled_from(DesiredState),
    recorded=st.sets(st.sampled_from([p for p in Phase if p is not Phase.DESTROY])),
    attempt=st.integers(0, 4),
    kind=st.sampled_from(ErrorKind),
    suspend=st.booleans(),
    lock_stale=st.booleans(),
    dependency_ready=st.none() | st.booleans(),
)
def test_what_is_kept_reads_back_as_the_plan_decided(
    kept_plans: DiskKeptPlans,
    state: type[State] | None,
    wanted: DesiredState,
    recorded: set[Phase],
    attempt: int,
    kind: ErrorKind,
    suspend: bool,
    lock_stale: bool,
    dependency_ready: bool | None,
) -> None:
    env = None
    if state is not None:
        fail = None
        if state.is_error():
            assert state.phase is not None
            fail = failure(state.phase, attempt=attempt, kind=kind)
        env = observed(state, recorded={p: f"h-{p.value}" for p in recorded}, fail=fail)
    ctx = PlanContext(
        now=NOW,
        lock_stale=lock_stale,
        dependencies={} if dependency_ready is None else {"database": dependency_ready},
    )
    plan = plan_environment("web", env, desired(wanted, suspend=suspend), ctx)
    before = kept_plans.get("web", KEY)
    kept_plans.keep("web", KEY, plan)
    if plan.retry_at is None and plan.suspended is None:
        assert kept_plans.get("web", KEY) == plan
    else:  # a plan with a time or a suspension is not kept: what was kept before stays
        assert kept_plans.get("web", KEY) == before
