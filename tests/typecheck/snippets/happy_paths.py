"""Transitions that must type-check under mypy --strict: the SPEC's happy path,
every re-entry, every failure path and recreate. No line here may be an error."""

from typing import assert_type

from reconciler.domain import (
    AnyEnvironment,
    Configured,
    ConfigureFailed,
    Configuring,
    Created,
    Destroyed,
    DestroyFailed,
    Environment,
    FailureContext,
    Provisioned,
    ProvisionFailed,
    Provisioning,
    Released,
    ReleaseFailed,
    RunFailed,
    Running,
    Starting,
)


def happy_path() -> Environment[Running]:
    env = Environment.create("web")
    assert_type(env, Environment[Created])
    return (
        env.start_provisioning()
        .provisioned(phase_hash="p", outputs={"ip": "10.0.0.5"})
        .start_configuring()
        .configured(phase_hash="c")
        .start_releasing()
        .released(phase_hash="r")
        .start_running()
        .running(phase_hash="n")
    )


def destroy_and_recreate(env: Environment[Running]) -> Environment[Created]:
    gone = env.start_destroying().destroyed()
    assert_type(gone, Environment[Destroyed])
    return gone.recreate(desired_commit="abc")


def re_entries(env: Environment[Running]) -> None:
    # A changed spec is rolled out by starting an earlier phase again.
    assert_type(env.start_releasing().released(), Environment[Released])
    assert_type(env.start_provisioning().provisioned(), Environment[Provisioned])
    assert_type(env.start_configuring().configured(), Environment[Configured])
    assert_type(env.start_running().running(), Environment[Running])


def failure_paths(env: Environment[Created], ctx: FailureContext) -> None:
    provisioning = env.start_provisioning()
    assert_type(provisioning, Environment[Provisioning])
    failed = provisioning.provision_failed(ctx)
    assert_type(failed, Environment[ProvisionFailed])
    provisioned = failed.start_provisioning().provisioned()
    assert_type(provisioned.start_configuring().configure_failed(ctx), Environment[ConfigureFailed])
    configured = provisioned.start_configuring().configured()
    assert_type(configured.start_releasing().release_failed(ctx), Environment[ReleaseFailed])
    released = configured.start_releasing().released()
    run_failed = released.start_running().run_failed(ctx)
    assert_type(run_failed, Environment[RunFailed])
    # A failed run may go back to any phase it has completed, or be destroyed.
    assert_type(run_failed.start_configuring(), Environment[Configuring])
    assert_type(run_failed.start_destroying().destroy_failed(ctx), Environment[DestroyFailed])
    assert_type(run_failed.start_running(), Environment[Starting])


def erased(env: AnyEnvironment) -> Environment[Running]:
    return env.try_into(Running)
