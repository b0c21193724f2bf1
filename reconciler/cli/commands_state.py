"""Commands of SPEC section 5 that act on or read observed state.

``apply``, ``status``, ``show``, ``history``, the imperative phase commands,
``retry`` and ``unlock``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import pygit2
import typer
from rich.markup import escape
from rich.table import Table

from reconciler.cli.app import app
from reconciler.cli.events_view import (
    WhenError,
    event_log,
    fleet_at,
    history_json,
    history_lines,
    known_names,
    parse_time,
    query_events,
    resolve_moment,
    unknown_names,
)
from reconciler.cli.options import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    AllowedSignersOption,
    OutputFormat,
    SelectorOption,
    complete_environment,
    nothing_selected,
    parse_selector_option,
    signers_path,
)
from reconciler.cli.output import console as make_console
from reconciler.cli.output import err, fail
from reconciler.desired.resolved import DesiredSnapshot
from reconciler.desired.selector import Selector, select
from reconciler.domain import ALL_STATES, Lock, Phase, can_start, format_timestamp, utcnow
from reconciler.domain.dispatch import InvalidTransition
from reconciler.engine.orphans import stop_leftovers
from reconciler.engine.progress import EnvironmentFinished
from reconciler.engine.reconcile import Engine, ReconcileResult, reset_attempts
from reconciler.engine.status import environment_rows, next_step
from reconciler.engine.workspace import StoreKind, Workspace, WorkspaceError, open_workspace
from reconciler.planner import suspension
from reconciler.store import CorruptStateError, LockIdMismatch, LostRace, Observed, StateStore, StoreError
from reconciler.store.events import EventQuery
from reconciler.store.git import GitStore
from reconciler.store.lock import holder_label
from reconciler.store.message import EVENT_KINDS, person
from reconciler.store.remote import RemoteStore
from reconciler.views import document, lock_view

if TYPE_CHECKING:
    from reconciler.notify.feed import NotificationFeed

Repo = Annotated[Path, typer.Option("--repo", help="The GitOps repository (work tree or bare).")]
DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Local data: tofu state, traces, checkouts (default: data/ at the top of the work tree).",
        show_default=False,
    ),
]
Format = Annotated[OutputFormat, typer.Option("--format", help="text or json.")]
AtOption = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="WHEN",
        help="As the state branch recorded it at WHEN: an RFC 3339 time or a state-branch revision.",
    ),
]
Store = Annotated[
    str, typer.Option("--store", help="git (the state branch) or file (<data>/<name>/state.json).")
]

#: How long ``apply`` waits at exit for notifications still being delivered (``--notify-wait``).
NOTIFY_WAIT_SECONDS = 10.0


def _fail(message: str, code: int = EXIT_FAILURE, kind: str | None = None) -> typer.Exit:
    """``message`` may hold rich markup (escape what is user-written)."""
    return fail(message, code, kind, markup=True)


def _notice(message: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {escape(message)}", markup=True)


@contextmanager
def _workspace(
    repo: Path, data_dir: Path | None, store: str, allowed_signers: str | None
) -> Iterator[Workspace]:
    if store not in ("git", "file"):
        raise _fail(f"--store must be 'git' or 'file', not '{store}'", EXIT_USAGE)
    kind: StoreKind = "git" if store == "git" else "file"
    try:
        ws = open_workspace(repo, data_dir, kind, allowed_signers=signers_path(allowed_signers))
        ws.on_notice = _notice
        yield ws
    except (WorkspaceError, StoreError) as e:
        raise _fail(str(e)) from e


@contextmanager
def _interruptible(engine: Engine) -> Iterator[None]:
    """SIGTERM/SIGINT: stop the running phases' processes and record them as ``interrupted``.

    Without this a stopped ``apply`` would leave its steps running behind a lock that looks
    stale at once (its holder is gone), so the next run could start the same phase beside them.
    """

    def stop(signum: int, _frame: object) -> None:
        if engine.cancel.is_set():
            raise KeyboardInterrupt  # a second signal: stop waiting
        err.print(f"{signal.Signals(signum).name}: stopping the running phases (recorded as interrupted)")
        engine.cancel.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _print_json_rows(data: dict[str, Any], key: str) -> None:
    """``data`` as JSON with each of ``data[key]`` on a line of its own: a fleet of 10,000 prints in
    milliseconds (an indented dump runs the pure-Python encoder) and still reads line by line."""
    rows = data[key]
    head = json.dumps({k: v for k, v in data.items() if k != key}, default=str)[:-1]
    body = ",\n  ".join(json.dumps(row, default=str) for row in rows)
    sep = ", " if len(head) > 1 else ""
    sys.stdout.write(f'{head}{sep}"{key}": [' + (f"\n  {body}\n" if rows else "") + "]}\n")


# -- apply ----------------------------------------------------------------------------------


@app.command()
def apply(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Environments to reconcile (default: all).", autocompletion=complete_environment),
    ] = None,
    repo: Repo = Path("."),
    data_dir: DataDir = None,
    workers: Annotated[int, typer.Option("--workers", min=1, help="Environments in parallel.")] = 4,
    fmt: Format = OutputFormat.TEXT,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
    lock_timeout: Annotated[
        str | None,
        typer.Option(
            "--lock-timeout",
            metavar="DURATION",
            help="How long to wait for another live reconciler's lock on an environment before "
            "reporting it, e.g. 500ms, 30s, 2m (default 0s: do not wait).",
            show_default=False,
        ),
    ] = None,
    notify_wait: Annotated[
        str | None,
        typer.Option(
            "--notify-wait",
            metavar="DURATION",
            help="How long to wait at exit for notifications still being delivered (default 10s).",
            show_default=False,
        ),
    ] = None,
    selector: SelectorOption = None,
) -> None:
    """Reconcile once until every named environment has converged, failed or is blocked."""
    # What only ``apply`` runs (worker threads, notifications, the live progress view): imported
    # here, so that ``status``, ``show`` and ``history`` start without them (decision 029).
    from reconciler.cli.progress import progress_view
    from reconciler.engine.apply import UnknownEnvironment, apply_environments, targets
    from reconciler.notify.feed import open_feed

    chosen = parse_selector_option(selector)
    wait_seconds = _lock_timeout(lock_timeout)
    wait_notify = _duration(notify_wait, "--notify-wait", NOTIFY_WAIT_SECONDS)
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        snapshot = ws.desired()
        engine = ws.engine(snapshot)
        for problem in snapshot.problems:
            err.print(str(problem), highlight=False, markup=False)
        if chosen is not None:
            try:
                known = targets(engine, snapshot, names)  # an unknown NAME is still an error
            except UnknownEnvironment as e:
                raise _fail(str(e), kind="not_found") from e
            names = _select_names(snapshot, known if names else None, chosen, fmt)

        def waiting(name: str, lock: Lock, seconds: float) -> None:
            holder = holder_label(lock.holder)
            err.print(f"{name}: locked by {holder}; waiting up to {seconds:.1f}s for it", markup=False)

        feed = open_feed(snapshot, event_log(engine.store), os.environ, on_problem=_notice)
        if feed is not None:
            pump = feed.pump

            def notify(_event: object) -> None:
                pump()

            engine.on_transition = notify
        json_lines = fmt is OutputFormat.JSON  # SPEC 5: one JSON object per line and event, as it happens
        try:
            with (
                _interruptible(engine),
                progress_view(json_lines=json_lines, desired_commit=snapshot.commit) as view,
            ):
                engine.observer = view
                results = apply_environments(
                    engine,
                    snapshot,
                    names,
                    workers=workers,
                    lock_timeout=wait_seconds,
                    on_wait=waiting,
                    on_result=lambda result: view(EnvironmentFinished(result)),
                )
        except UnknownEnvironment as e:
            raise _fail(str(e), kind="not_found") from e
        if not json_lines:
            _report(results)
        if feed is not None:
            _notify_outcomes(feed, snapshot, results, wait_notify)
        raise typer.Exit(EXIT_OK if all(r.ok for r in results) else EXIT_FAILURE)


def _select_names(
    snapshot: DesiredSnapshot, names: list[str] | None, selector: Selector, fmt: OutputFormat
) -> list[str]:
    """``apply -l``: the declared environments (of ``names``, when given) whose labels match.

    Matching nothing is not an error: it is said, and the run ends with exit 0.
    """
    labels = {name: env.labels for name, env in snapshot.environments.items()}
    picked = select(names or sorted(labels), labels, selector)
    if not picked:
        err.print(nothing_selected(selector), markup=False)  # under --format json: a stream of no events
        raise typer.Exit(EXIT_OK)
    return picked


def _notify_outcomes(
    feed: NotificationFeed, snapshot: DesiredSnapshot, results: list[ReconcileResult], wait_seconds: float
) -> None:
    """Tell the sinks how each environment ended, then wait a bounded time for the deliveries."""
    from reconciler.notify.feed import blocked

    for r in results:
        attempt = r.failure.attempt if r.failure is not None else None
        desired = snapshot.environments.get(r.name)
        feed.outcome(
            r.name,
            str(r.outcome),
            state=r.state,
            desired_commit=snapshot.commit if desired is not None else None,
            changed=bool(r.transitions),
            blocked=blocked(snapshot, r.name, attempt),
            summary=r.reason,
        )
    if not feed.notifier.close(wait_seconds):
        _notice(f"notifications still undelivered after {wait_seconds:g}s; giving up on them (see the log)")


def _lock_timeout(value: str | None) -> float:
    """``--lock-timeout`` in seconds; a bad value is a usage error saying what would be accepted."""
    return _duration(value, "--lock-timeout", 0.0)


def _duration(value: str | None, option: str, default: float) -> float:
    if value is None:
        return default
    from reconciler.daemon.durations import parse_duration  # the daemon's syntax; imported only when given

    try:
        return parse_duration(value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=f"'{option}'") from e


def _report(results: list[ReconcileResult]) -> None:
    """The text summary; ``--format json`` has streamed a ``result`` event per environment instead."""
    for r in results:
        state = r.state or "-"
        print(f"{r.name}: {r.outcome} ({state}): {r.reason}".rstrip(": "))


# -- status / show / history ----------------------------------------------------------------


@app.command()
def status(
    name: Annotated[
        str | None,
        typer.Argument(help="One environment (default: all).", autocompletion=complete_environment),
    ] = None,
    at: AtOption = None,
    repo: Repo = Path("."),
    data_dir: DataDir = None,
    fmt: Format = OutputFormat.TEXT,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
    selector: SelectorOption = None,
) -> None:
    """Table of environments: observed, desired, converged?, lock, last transition, failure."""
    chosen = parse_selector_option(selector)
    if chosen is not None and at is not None:
        raise _fail(
            "-l/--selector reads labels from the desired state now; it does not go with --at", EXIT_USAGE
        )
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        snapshot = ws.desired()
        if at is not None:
            _status_at(ws.store_for(snapshot), ws.repo, at, name, fmt)
            return
        engine = ws.engine(snapshot)
        rows = environment_rows(engine, snapshot, name, chosen)
        if name is not None and not rows:
            if chosen is not None and name in snapshot.names:
                raise _fail(f"'{name}' does not match the selector '{chosen}'")
            raise _fail(f"unknown environment '{name}'", kind="not_found")
        if fmt is OutputFormat.JSON:
            _print_json_rows(document(desiredCommit=snapshot.commit, environments=rows), "environments")
            return
        if chosen is not None and not rows:
            err.print(nothing_selected(chosen), markup=False)
            return
        table = Table(title=f"desired commit {(snapshot.commit or 'work tree')[:12]}")
        columns = (
            "environment",
            "observed",
            "desired",
            "converged",
            "drift",
            "lock",
            "last transition",
            "failure",
        )
        for col in columns:
            table.add_column(col)
        for row in rows:
            table.add_row(*(escape(cell) for cell in status_cells(row)))
        make_console(width=160).print(table)


def status_cells(row: dict[str, Any]) -> list[str]:
    """The text table's cells of one plain ``status`` row (``reconciler.views.environment_view``)."""
    corrupt = row["corrupt"]
    verdict = row["verdict"]
    observed = "corrupt" if corrupt else row["observed"] or "-"
    desired = row["desired"] or ("invalid" if verdict == "invalid" else "-")
    converged = "yes" if row["converged"] else ("corrupt" if corrupt else f"no: {verdict}")
    held = row.get("suspended")
    if held:
        mark = f"⏸ suspended by {held['by']}" if held.get("by") else "⏸ suspended by its file"
        converged = f"no: {mark}" if verdict == "suspended" else f"{converged}, {mark}"
    drift = row.get("drift")
    drift_text = "-" if not drift else str(drift["status"]).replace("_", " ")
    lock = row["lock"]
    lock_text = "-"
    if lock is not None:
        holder = f"{lock['holder']['host']}:{lock['holder']['pid']}"
        expires = datetime.fromisoformat(lock["expiresAt"])
        lock_text = (
            f"{holder} (stale: {lock['staleReason']})"
            if lock["stale"]
            else f"{holder} until {expires:%H:%M:%S}"
        )
    last = row["lastTransition"]
    last_text = "-"
    if last is not None:
        at = datetime.fromisoformat(last["at"])
        last_text = f"{last['from']} -> {last['to']} at {at:%Y-%m-%d %H:%M:%S}"
    failure = row["failure"]
    failure_text = "-"
    if corrupt:
        failure_text = corrupt["error"]
    elif failure is not None:
        failure_text = f"{failure['failedStep']}: {failure['errorSummary']} (attempt {failure['attempt']})"
    return [row["name"], observed, desired, converged, drift_text, lock_text, last_text, failure_text]


def _fleet_at(st: StateStore, repo: pygit2.Repository, at: str) -> dict[str, Any]:
    log = event_log(st)
    if log is None or not isinstance(st, GitStore | RemoteStore):
        raise _fail("--at reads the state branch's history: it needs the git store (--store git)", EXIT_USAGE)
    try:
        moment = resolve_moment(repo, log, at)
    except WhenError as e:
        raise _fail(str(e), EXIT_USAGE) from e
    if moment is None:
        raise _fail(f"the state branch {log.ref} has no commit at or before {at}: nothing was recorded yet")
    return fleet_at(st.local if isinstance(st, RemoteStore) else st, moment)


def _status_at(st: StateStore, repo: pygit2.Repository, at: str, name: str | None, fmt: OutputFormat) -> None:
    """``status --at``: the fleet as the state branch recorded it then."""
    fleet = _fleet_at(st, repo, at)
    if name is not None:
        fleet["environments"] = [r for r in fleet["environments"] if r["name"] == name]
        if not fleet["environments"]:
            raise _fail(f"environment '{name}' had no recorded state at {at}")
    if fmt is OutputFormat.JSON:
        _print_json_rows(fleet, "environments")
        return
    table = Table(title=f"as recorded at {fleet['at']} (state commit {fleet['stateCommit'][:12]})")
    for col in ("environment", "observed", "desired commit", "lock", "last transition", "failure"):
        table.add_column(col)
    for row in fleet["environments"]:
        last = row["lastTransition"]
        lock = row["lock"]
        failure = row["failure"]
        held = row.get("suspended")
        table.add_row(
            escape(row["name"]) + (escape(f"\n⏸ suspended by {held.get('by')}") if held else ""),
            row["state"] or "-",
            (row["desiredCommit"] or "-")[:12],
            "-" if not lock else escape(f"{lock['holder']['host']}:{lock['holder']['pid']}"),
            "-"
            if not last
            else escape(f"{last['from']} -> {last['to']} at {last['at']} by {last['actor'] or '?'}"),
            "-"
            if not failure
            else escape(f"{failure.get('failedStep', '')}: {failure.get('errorSummary', '')}"),
        )
    make_console(width=160).print(table)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="The environment.", autocompletion=complete_environment)],
    at: AtOption = None,
    repo: Repo = Path("."),
    data_dir: DataDir = None,
    fmt: Format = OutputFormat.TEXT,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """The state JSON, the failure and its trace, and the suggested next step."""
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        snapshot = ws.desired()
        st = ws.store_for(snapshot)
        if at is not None:
            _show_at(st, ws.repo, at, name, fmt)
            return
        try:
            observed = st.read(name)
        except CorruptStateError as e:
            raise _fail(
                f"{e}\nnext step: inspect it with `git show {snapshot.config.state_ref}:{name}/state.json`; "
                "nothing will overwrite it"
            ) from e
        if observed is None:
            if name in snapshot.names:
                hint = f"never reconciled yet; run `reconcile apply {name}`"
                if fmt is OutputFormat.JSON:
                    _print_json(document(name=name, state=None, lock=None, nextStep=hint))
                else:
                    print(f"Environment '{name}' has no recorded state.\nnext step: {hint}")
                return
            raise _fail(f"unknown environment '{name}'", kind="not_found")
        env = observed.env
        hint = next_step(env, name in snapshot.names)
        if name in snapshot.broken:
            first = snapshot.broken[name][0]
            hint = f"its file is invalid and is left alone until fixed: {first}; fix it and commit"
        if fmt is OutputFormat.JSON:
            lock = None if env.lock is None else lock_view(env.lock, utcnow())
            _print_json(document(name=name, state=json.loads(env.to_json()), lock=lock, nextStep=hint))
            return
        print(str(env))
        print(env.to_json(), end="")
        if env.suspended is not None:
            held = env.suspended
            print(f"suspended by: {held.by}\nsuspended at: {format_timestamp(held.at)}")
            print(f"reason: {held.reason or '(none given)'}")
        if env.error_details is not None:
            f = env.error_details
            print(f"failed step: {f.failed_step}\nerror kind: {f.error_kind}\nattempt: {f.attempt}")
            if f.trace_file:
                print(f"trace: {f.trace_file}")
        if env.drift is not None and env.drift.status != "in_sync":
            d = env.drift
            since = format_timestamp(d.since)
            print(f"drift: {d.status} at {d.phase} step {d.step}: {d.summary} (since {since})")
        print(f"next step: {hint}")


@app.command()
def history(
    names: Annotated[
        list[str] | None,
        typer.Argument(help="Environments (default: all).", autocompletion=complete_environment),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="TIME", help="Events at or after this RFC 3339 time."),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="TIME", help="Events at or before this RFC 3339 time."),
    ] = None,
    actor: Annotated[
        str | None, typer.Option("--actor", metavar="TEXT", help="Only events whose actor contains TEXT.")
    ] = None,
    event: Annotated[
        list[str] | None,
        typer.Option("--event", metavar="KIND", help=f"Only these kinds: {', '.join(EVENT_KINDS)}."),
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many.")] = None,
    repo: Repo = Path("."),
    data_dir: DataDir = None,
    fmt: Format = OutputFormat.TEXT,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """The events of the state branch (transitions and observations), newest first, with who caused them."""
    kinds = tuple(event or ())
    unknown_kinds = [k for k in kinds if k not in EVENT_KINDS]
    if unknown_kinds:
        raise _fail(
            f"--event '{unknown_kinds[0]}' is not an event kind: use {', '.join(EVENT_KINDS)}", EXIT_USAGE
        )
    try:
        query = EventQuery(
            names=tuple(names or ()),
            since=None if since is None else parse_time(since, "--since"),
            until=None if until is None else parse_time(until, "--until"),
            actor=actor,
            kinds=kinds,
            limit=limit,
        )
    except WhenError as e:
        raise _fail(str(e), EXIT_USAGE) from e
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        snapshot = ws.desired()
        st = ws.store_for(snapshot)
        missing = unknown_names(st, set(snapshot.names), names or [])
        if missing:
            known = sorted(known_names(st, set(snapshot.names)))
            shown = ", ".join(known[:20]) + (f" and {len(known) - 20} more" if len(known) > 20 else "")
            raise _fail(
                f"unknown environment '{missing[0]}': it is not declared and has no history "
                f"(known: {shown or 'none'})",
                kind="not_found",
            )
        events = query_events(st, query)
        if fmt is OutputFormat.JSON:
            _print_json_rows(history_json(events), "events")
            return
        for line in history_lines(events):
            print(line)


def _show_at(st: StateStore, repo: pygit2.Repository, at: str, name: str, fmt: OutputFormat) -> None:
    fleet = _fleet_at(st, repo, at)
    commit = fleet["stateCommit"]
    rows = [r for r in fleet["environments"] if r["name"] == name]
    if not rows:
        raise _fail(f"environment '{name}' had no recorded state at {at} (state commit {commit[:12]})")
    local = st.local if isinstance(st, RemoteStore) else st
    assert isinstance(local, GitStore)
    item = local.read_all_at(commit)[name]
    state = json.loads(item.env.to_json()) if isinstance(item, Observed) else None
    last = rows[0]["lastTransition"]
    if fmt is OutputFormat.JSON:
        _print_json(
            {
                "formatVersion": fleet["formatVersion"],
                "at": fleet["at"],
                "stateCommit": commit,
                "state": state,
                "lastTransition": last,
            }
        )
        return
    print(f"Environment '{name}' as recorded at {fleet['at']} (state commit {commit[:12]}):")
    if isinstance(item, Observed):
        print(str(item.env))
        print(item.env.to_json(), end="")
    else:
        print(f"unreadable: {item.error}")
    if last is not None:
        print(f"last transition: {last['from']} -> {last['to']} at {last['at']} by {last['actor'] or '?'}")


# -- imperative phases ----------------------------------------------------------------------


def _phase_command(phase: Phase) -> None:
    def command(
        name: Annotated[str, typer.Argument(help="The environment.", autocompletion=complete_environment)],
        repo: Repo = Path("."),
        data_dir: DataDir = None,
        store: Store = "git",
        allowed_signers: AllowedSignersOption = None,
        ignore_dependencies: Annotated[
            bool,
            typer.Option(
                "--ignore-dependencies",
                help="Run it even though dependsOn says not now (a dependency not ready, or a "
                "dependent still alive for destroy).",
            ),
        ] = False,
        force: Annotated[
            bool,
            typer.Option("--force", help="Run it even though the environment is suspended (decision 021)."),
        ] = False,
    ) -> None:
        with _workspace(repo, data_dir, store, allowed_signers) as ws:
            snapshot = ws.desired()
            problems = snapshot.broken.get(name)
            if problems:
                raise _fail("\n".join(str(p) for p in problems))
            engine = ws.engine(snapshot)
            engine.actor = person()
            engine.on_transition = lambda e: print(
                f"{e.environment}: {e.from_state} -> {e.to_state}", flush=True
            )
            try:
                observed = engine.store.read(name)
                desired = snapshot.environments.get(name)
                if desired is None and observed is not None and phase is Phase.DESTROY:
                    desired = engine.last_definition(observed.env)  # its file is gone: as last applied
                if desired is None:
                    raise _fail(f"no environment file for '{name}' at {(snapshot.commit or '')[:12]}")
                if phase is Phase.DESTROY and desired.spec.protected:
                    raise _fail(
                        f"'{name}' is protected: it is never destroyed (set spec.protected: false first)"
                    )
                if observed is None:
                    raise _fail(f"'{name}' has no recorded state; run `reconcile apply {name}` first")
                suspended = suspension(desired, observed.env)
                if suspended is not None and not force:
                    raise _fail(
                        f"refusing to {phase} '{name}': it is {escape(suspended.describe())}. "
                        f"`reconcile resume {name}` (or its file) lifts it; --force runs {phase} anyway."
                    )
                if not can_start(observed.env.state, phase):
                    raise _fail(
                        f"cannot {phase} '{name}' from state '{observed.env.state_name}': {phase} may start "
                        f"from {', '.join(s.name for s in ALL_STATES if can_start(s, phase))}"
                    )
                blockers = [] if ignore_dependencies else engine.dependency_blockers(snapshot, name, phase)
                if blockers:
                    raise _fail(
                        f"refusing to {phase} '{name}': {'; '.join(escape(b) for b in blockers)}. "
                        "Pass --ignore-dependencies to run it anyway."
                    )
                with _interruptible(engine):
                    failure = engine.run_phase(snapshot, desired, observed, phase, attempt=1)
            except (LostRace, InvalidTransition) as e:
                raise _fail(f"{e} (another reconciler holds '{name}'; see `reconcile status`)") from e
            if failure is not None:
                raise _fail(f"{phase} failed: {failure.error_summary} (trace: {failure.trace_file})")

    command.__doc__ = f"Run the {phase} phase of NAME now, through the lock and the state branch."
    app.command(name=str(phase))(command)


for _phase in Phase:
    _phase_command(_phase)


# -- retry / unlock -------------------------------------------------------------------------


@app.command()
def retry(
    name: Annotated[str, typer.Argument(help="The environment.", autocompletion=complete_environment)],
    repo: Repo = Path("."),
    data_dir: DataDir = None,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """Clear a blocked failure so the next reconcile retries at once."""
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        snapshot = ws.desired()
        try:
            after = reset_attempts(ws.store_for(snapshot), name)
        except (LookupError, ValueError, LostRace) as e:
            raise _fail(str(e)) from e
        print(f"{after.env}: attempts reset; the next `reconcile apply` or the daemon retries it")


@app.command()
def unlock(
    name: Annotated[str, typer.Argument(help="The environment.", autocompletion=complete_environment)],
    lock_id: Annotated[str, typer.Option("--lock-id", help="The lock's id, from `reconcile show`.")],
    repo: Repo = Path("."),
    data_dir: DataDir = None,
    store: Store = "git",
    allowed_signers: AllowedSignersOption = None,
) -> None:
    """Force-unlock: end the in-progress state as interrupted. Only when its holder is surely gone."""
    try:
        uid = UUID(lock_id)
    except ValueError as e:
        raise _fail(
            f"--lock-id must be a UUID like the one `reconcile show {name}` prints", EXIT_USAGE
        ) from e
    with _workspace(repo, data_dir, store, allowed_signers) as ws:
        snapshot = ws.desired()
        st = ws.store_for(snapshot)
        try:
            current = st.read(name)
            lock = current.env.lock if current is not None else None
            if lock is not None and lock.id == uid:
                stopped = stop_leftovers(ws.data_dir, name, lock)
                if stopped:
                    print(f"stopped {stopped} process group(s) the holder left running")
            after = st.unlock(name, uid)
        except (LockIdMismatch, LostRace, CorruptStateError) as e:
            raise _fail(str(e)) from e
        print(f"{after.env}: unlocked")
