"""SPEC section 3's lifecycle table, written out independently of ``reconciler.domain``.

Both the type-level and the run-time tests check the domain against it, so a
wrong capability in the domain fails them rather than being copied into them.
"""

from __future__ import annotations

STATES = (
    "created",
    "provisioning",
    "provisioned",
    "configuring",
    "configured",
    "releasing",
    "released",
    "starting",
    "running",
    "destroying",
    "destroyed",
    "provision_failed",
    "configure_failed",
    "release_failed",
    "run_failed",
    "destroy_failed",
)
FAILED = frozenset(s for s in STATES if s.endswith("_failed"))
IN_PROGRESS = frozenset({"provisioning", "configuring", "releasing", "starting", "destroying"})

#: method -> (the states it may be called on, the state it leads to)
TRANSITIONS: dict[str, tuple[frozenset[str], str]] = {
    "start_provisioning": (
        frozenset({"created", "provisioned", "configured", "released", "running"}) | FAILED,
        "provisioning",
    ),
    "start_configuring": (
        frozenset(
            {
                "provisioned",
                "configured",
                "released",
                "running",
                "configure_failed",
                "release_failed",
                "run_failed",
            }
        ),
        "configuring",
    ),
    "start_releasing": (
        frozenset({"configured", "released", "running", "release_failed", "run_failed"}),
        "releasing",
    ),
    "start_running": (frozenset({"released", "running", "run_failed"}), "starting"),
    "start_destroying": (frozenset(STATES) - {"destroyed"} - IN_PROGRESS, "destroying"),
    "provisioned": (frozenset({"provisioning"}), "provisioned"),
    "provision_failed": (frozenset({"provisioning"}), "provision_failed"),
    "configured": (frozenset({"configuring"}), "configured"),
    "configure_failed": (frozenset({"configuring"}), "configure_failed"),
    "released": (frozenset({"releasing"}), "released"),
    "release_failed": (frozenset({"releasing"}), "release_failed"),
    "running": (frozenset({"starting"}), "running"),
    "run_failed": (frozenset({"starting"}), "run_failed"),
    "destroyed": (frozenset({"destroying"}), "destroyed"),
    "destroy_failed": (frozenset({"destroying"}), "destroy_failed"),
    "recreate": (frozenset({"destroyed"}), "created"),
}
START_METHODS = tuple(m for m in TRANSITIONS if m.startswith("start_"))


def class_name(state: str) -> str:
    return "".join(part.capitalize() for part in state.split("_"))


#: "Success states: created, provisioning, ... destroyed. Error states: the five *_failed.
#: Terminal: running, destroyed and every *_failed."
SUCCESS = frozenset(STATES) - FAILED
TERMINAL = frozenset({"running", "destroyed"}) | FAILED

#: The phase each ``start_*`` method starts, by its SPEC name.
STARTS = {
    "start_provisioning": "provision",
    "start_configuring": "configure",
    "start_releasing": "release",
    "start_running": "run",
    "start_destroying": "destroy",
}
