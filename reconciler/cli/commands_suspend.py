"""``reconcile suspend NAME [--reason TEXT]`` and ``reconcile resume NAME`` (SPEC 5, decision 021).

An operator's override on the state branch: a suspended environment is
observed and reported, never acted on, whatever its file says, until resumed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from reconciler.cli.app import app
from reconciler.cli.commands_state import DataDir, Repo, Store, _fail, _workspace
from reconciler.cli.options import EXIT_USAGE, AllowedSignersOption
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.engine import suspend as override
from reconciler.engine.workspace import Workspace
from reconciler.store import CorruptStateError, LostRace, Observed, StateStore, StoreError


def _observed(ws: Workspace, snapshot: DesiredSnapshot, st: StateStore, name: str) -> Observed:
    """``name``'s recorded state; an unknown, never observed or unreadable one is an error saying which."""
    try:
        observed = st.read(name)
    except CorruptStateError as e:
        raise _fail(
            escape(
                f"{e}\nnothing was written; inspect it with "
                f"`git show {snapshot.config.state_ref}:{name}/state.json` (docs/recovery.md)"
            )
        ) from e
    if observed is not None:
        return observed
    if name in snapshot.names:
        raise _fail(
            escape(
                f"environment '{name}' has no recorded state yet, so there is nothing to suspend or resume; "
                "to keep it from being created, commit `spec.suspend: true` in its file"
            )
        )
    declared = ", ".join(sorted(snapshot.names)[:20]) or "none"
    raise _fail(
        escape(
            f"unknown environment '{name}': it is not declared and has no recorded state "
            f"(declared: {declared})"
        ),
        kind="not_found",
    )


@app.command("suspend")
def suspend_command(
    name: Annotated[str, typer.Argument(help="The environment.")],
    reason: Annotated[
        str | None,
        typer.Option("--reason", metavar="TEXT", help="Why, for whoever reads status, show or history."),
    ] = None,
    repo: Repo = Path("."),
    data_dir: DataDir = None,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """Stop the reconciler acting on NAME, whatever its file says, until `reconcile resume NAME`."""
    try:
        text = override.check_reason(reason)
    except ValueError as e:
        raise _fail(escape(str(e)), EXIT_USAGE) from e
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        snapshot = ws.desired()
        st = ws.store_for(snapshot)
        _observed(ws, snapshot, st, name)
        try:
            after = override.suspend(st, name, reason=text)
        except (override.NotSuspendable, LostRace) as e:
            raise _fail(escape(str(e))) from e
        except StoreError as e:
            raise _fail(escape(f"{e}; nothing was recorded")) from e
        record = after.env.suspended
        assert record is not None
        print(f"{name}: suspended by {record.by}" + (f" ({record.reason})" if record.reason else ""))
        if after.env.is_in_progress:
            print(
                f"its {after.env.state_name} phase runs on to its end; nothing further starts "
                f"until `reconcile resume {name}`"
            )
        else:
            print(f"nothing acts on it (apply, the daemon, checks) until `reconcile resume {name}`")


@app.command("resume")
def resume_command(
    name: Annotated[str, typer.Argument(help="The environment.")],
    repo: Repo = Path("."),
    data_dir: DataDir = None,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """Lift `reconcile suspend NAME`: the next `reconcile apply` or the daemon acts on it again."""
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        snapshot = ws.desired()
        st = ws.store_for(snapshot)
        _observed(ws, snapshot, st, name)
        try:
            _after, lifted = override.resume(st, name)
        except (override.NotSuspendable, LostRace) as e:
            raise _fail(escape(str(e))) from e
        except StoreError as e:
            raise _fail(escape(f"{e}; nothing was recorded")) from e
        print(
            f"{name}: resumed (it was suspended by {lifted.by}"
            + (f": {lifted.reason})" if lifted.reason else ")")
        )
        desired = snapshot.environments.get(name)
        if desired is not None and desired.spec.suspend:
            print("its file still says `suspend: true`: it stays suspended until a commit sets it to false")
        else:
            print(f"the next `reconcile apply {name}` or the daemon's next turn acts on it again")
