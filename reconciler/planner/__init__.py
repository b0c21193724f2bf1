"""The planner: what reconciling would do, decided from values alone (SPEC section 3, Planning)."""

from reconciler.planner.model import Action, ActionKind, EnvironmentPlan, PlanContext, Verdict
from reconciler.planner.plan import Unreadable, dependency_order, plan_all, plan_environment
from reconciler.planner.suspension import Suspension, SuspensionSource, suspension

__all__ = [
    "Action",
    "ActionKind",
    "EnvironmentPlan",
    "PlanContext",
    "Suspension",
    "SuspensionSource",
    "Unreadable",
    "Verdict",
    "dependency_order",
    "plan_all",
    "plan_environment",
    "suspension",
]
