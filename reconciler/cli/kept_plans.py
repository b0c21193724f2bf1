"""``reconcile plan``'s plans, kept in the plan cache for the next run (docs/decisions/025).

A plan that depends neither on the clock nor on a lock is a function of
content: the observed state (fixed by the id of its ``<name>/`` tree on the
state branch) and the desired one (fixed by the file's blob id and the phase
hashes). So after a one-file change the next run decides, and reads the
``state.json`` of, only the environments whose key changed; the others get
their plan back from the file, without their state being read or parsed.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

from reconciler.desired import helper
from reconciler.desired.plancache import PlanCache
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.domain import AnyEnvironment, Lock
from reconciler.domain.states import Phase
from reconciler.planner.model import Action, ActionKind, EnvironmentPlan, Verdict
from reconciler.planner.plan import KeptKey, Unreadable, plan_all
from reconciler.store import Observed
from reconciler.store.git import StateTree


class ObservedView(Mapping[str, AnyEnvironment | Unreadable]):
    """The state branch's environments as the planner reads them, each parsed on first use."""

    def __init__(self, tree: StateTree) -> None:
        self.tree = tree

    def __getitem__(self, name: str) -> AnyEnvironment | Unreadable:
        item = self.tree[name]
        return item.env if isinstance(item, Observed) else item

    def __iter__(self) -> Iterator[str]:
        return iter(self.tree)

    def __len__(self) -> int:
        return len(self.tree)


class _Only(Mapping[str, AnyEnvironment | Unreadable]):
    """``observed`` with only the names of a helper's share."""

    def __init__(self, observed: Mapping[str, AnyEnvironment | Unreadable], names: Collection[str]) -> None:
        self._observed = observed
        self._names = names

    def __getitem__(self, name: str) -> AnyEnvironment | Unreadable:
        if name not in self._names:
            raise KeyError(name)
        return self._observed[name]

    def __iter__(self) -> Iterator[str]:
        return (name for name in self._observed if name in self._names)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class DiskKeptPlans:
    """``planner.plan.KeptPlans`` in the plan cache: one entry per environment, the latest plan."""

    def __init__(self, disk: PlanCache, tree: StateTree, helper_next: helper.Helper | None = None) -> None:
        self._disk = disk
        self._tree = tree
        #: Kept actions and verdicts, rebuilt once each: most plans share them.
        self._actions: dict[Any, tuple[Action, ...]] = {}
        #: A forked process deciding part of a cold plan: the load's helper (``decide``), whose
        #: next message is its half's plans, or one of its own (``share_with_helper``).
        self._helper = helper_next

    def share_with_helper(
        self,
        snapshot: DesiredSnapshot,
        observed: Mapping[str, AnyEnvironment | Unreadable],
        *,
        now: datetime,
        prune: bool,
        lock_stale: Callable[[Lock], bool],
        protected_before: Callable[[AnyEnvironment], bool] | None,
    ) -> None:
        """Fork a helper that decides the second half of a cold plan of many environments (decision 026).

        It plans its half alone, as ``plan_all`` over only those environments, and
        hands its plans over as kept plans. Each is used only where its key (content
        ids, the dependencies' verdicts, the dependents' gone-ness) is the one this
        process computes, so a plan that depends on the other half is decided here.
        """
        names = sorted(snapshot.names | frozenset(observed))
        if self._helper is not None or len(names) < helper.MIN_FILES or self._disk.has_plans():
            return
        share = frozenset(names[len(names) // 2 :])

        def work() -> bytes:
            half = DesiredSnapshot(
                commit=snapshot.commit,
                config=snapshot.config,
                environments=MappingProxyType({n: e for n, e in snapshot.environments.items() if n in share}),
                broken=MappingProxyType({n: p for n, p in snapshot.broken.items() if n in share}),
            )
            return self.decide(
                half, observed, now=now, prune=prune, lock_stale=lock_stale, protected_before=protected_before
            )

        self._helper = helper.start(share, work)

    def decide(
        self,
        half: DesiredSnapshot,
        observed: Mapping[str, AnyEnvironment | Unreadable],
        *,
        now: datetime,
        prune: bool,
        lock_stale: Callable[[Lock], bool],
        protected_before: Callable[[AnyEnvironment], bool] | None,
    ) -> bytes:
        """In a helper: the plans of its half (``half``'s names), decided alone, for ``merge_plans``."""
        plan_all(
            half,
            _Only(observed, half.names),
            now=now,
            prune=prune,
            lock_stale=lock_stale,
            protected_before=protected_before,
            kept=self,
        )
        return self._disk.learned_plans()

    def finish(self) -> None:
        """Stop a helper whose plans were never asked for (its half was all refused files, say)."""
        if self._helper is not None:
            self._helper.cancel()
            self._helper = None

    def observed_version(self, name: str) -> str | None:
        return self._tree.version(name)

    def get(self, name: str, key: KeptKey) -> EnvironmentPlan | None:
        if self._helper is not None and name in self._helper.share:
            payload = self._helper.receive()  # its half is next: take its plans (waiting if need be)
            self._helper = None
            if payload is not None:
                self._disk.merge_plans(payload)
        found = self._disk.plan(name)
        if not isinstance(found, tuple) or len(found) != 2 or found[0] != key:
            return None
        try:
            plan = self._plan(name, found[1])
        except Exception:  # a damaged entry: decided again, and replaced
            return None
        self._disk.keep_plan(name, found)
        return plan

    def keep(self, name: str, key: KeptKey, plan: EnvironmentPlan) -> None:
        # Only a plan the plain values hold whole: one with a time in it (none is, today) or a
        # suspension is decided every time. ``_plain`` holds every other field (``PLAIN_FIELDS``;
        # a test fails when ``EnvironmentPlan`` gains one), so the plan reads back as itself
        # without being rebuilt here to check (issue 11: that was half the cost of keeping it).
        if plan.retry_at is None and plan.suspended is None:
            self._disk.keep_plan(name, (key, _plain(plan)))

    def _plan(self, name: str, plain: Any) -> EnvironmentPlan:
        verdict, actions, reason, observed_state, desired_state, next_attempt = plain
        built = self._actions.get(actions)
        if built is None:
            built = self._actions[actions] = tuple(
                Action(ActionKind(kind), Phase(phase) if phase is not None else None, str(why))
                for kind, phase, why in actions
            )
        return EnvironmentPlan(
            name=name,
            verdict=_VERDICTS[verdict],
            actions=built,
            reason=str(reason),
            observed_state=_optional_str(observed_state),
            desired_state=_optional_str(desired_state),
            next_attempt=int(next_attempt),
        )


#: The fields of ``EnvironmentPlan`` a kept plan holds (with ``name``, its key in the cache); the
#: others (``retry_at``, ``suspended``) must be ``None`` for a plan to be kept.
PLAIN_FIELDS = ("verdict", "actions", "reason", "observed_state", "desired_state", "next_attempt")


def _plain(plan: EnvironmentPlan) -> tuple[Any, ...]:
    actions = tuple(
        (str(a.kind), str(a.phase) if a.phase is not None else None, a.reason) for a in plan.actions
    )
    return (
        str(plan.verdict),
        actions,
        plan.reason,
        plan.observed_state,
        plan.desired_state,
        plan.next_attempt,
    )


_VERDICTS = {str(verdict): verdict for verdict in Verdict}


def _optional_str(value: object) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError("not a string")
    return value
