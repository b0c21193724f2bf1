"""Transitions that must NOT type-check.

Every line ending in an E-marker comment must be a mypy error whose message
contains the marker's text; no other line may be an error.
"""

from reconciler.domain import (
    Configured,
    Configuring,
    Created,
    Destroyed,
    Destroying,
    Environment,
    FailureContext,
    Provisioning,
    Running,
    Starting,
)


def skipping_phases(created: Environment[Created]) -> None:
    Environment.create("web").configured()  # E: Invalid self argument "Environment[Created]"
    created.start_configuring()  # E: Invalid self argument "Environment[Created]"
    created.start_running()  # E: Invalid self argument "Environment[Created]"


def finishing_the_wrong_phase(configuring: Environment[Configuring], ctx: FailureContext) -> None:
    configuring.released()  # E: Invalid self argument "Environment[Configuring]"
    configuring.provision_failed(ctx)  # E: Invalid self argument "Environment[Configuring]"


def not_yet(configured: Environment[Configured], running: Environment[Running]) -> None:
    configured.start_running()  # E: Invalid self argument "Environment[Configured]"
    running.recreate()  # E: Invalid self argument "Environment[Running]"


def after_destroy(destroyed: Environment[Destroyed]) -> None:
    destroyed.start_provisioning()  # E: Invalid self argument "Environment[Destroyed]"
    destroyed.start_destroying()  # E: Invalid self argument "Environment[Destroyed]"


def while_in_progress(provisioning: Environment[Provisioning], destroying: Environment[Destroying]) -> None:
    provisioning.start_destroying()  # E: Invalid self argument "Environment[Provisioning]"
    destroying.start_destroying()  # E: Invalid self argument "Environment[Destroying]"
    provisioning.start_provisioning()  # E: Invalid self argument "Environment[Provisioning]"


def failing_without_a_context(provisioning: Environment[Provisioning], starting: Environment[Starting]) -> None:
    provisioning.provision_failed()  # E: Missing positional argument "ctx"
    starting.run_failed()  # E: Missing positional argument "ctx"


def wrong_result_type(created: Environment[Created]) -> None:
    provisioned: Environment[Running] = created.start_provisioning()  # E: Incompatible types in assignment
