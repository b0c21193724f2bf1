"""The typer application every command module registers on, and which module holds each command.

A command's module is imported only when that command runs, completes or
shows its own help (decision 029): ``reconcile plan`` does not pay for the
engine, the daemon, HTTP or Jinja2. ``COMMANDS`` names each command's module
and the one line ``reconcile --help`` lists for it, so the listing needs no
module; ``tests/cli/test_lazy_commands.py`` checks those lines against the
commands' own help.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator, MutableMapping
from typing import Any

import typer
import typer.main
from typer import _click  # typer's vendored click: the types its groups are written in
from typer.core import TyperCommand, TyperGroup

#: Every command, in the order ``reconcile --help`` lists them: its module and its one-line help.
COMMANDS: dict[str, tuple[str, str]] = {
    "apply": (
        "commands_state",
        "Reconcile once until every named environment has converged, failed or is blocked.",
    ),
    "status": (
        "commands_state",
        "Table of environments: observed, desired, converged?, lock, last transition, failure.",
    ),
    "show": (
        "commands_state",
        "The state JSON, the failure and its trace, and the suggested next step.",
    ),
    "history": (
        "commands_state",
        "The events of the state branch (transitions and observations), newest first, with who caused them.",
    ),
    **{
        phase: (
            "commands_state",
            f"Run the {phase} phase of NAME now, through the lock and the state branch.",
        )
        for phase in ("provision", "configure", "release", "run", "destroy")
    },
    "retry": ("commands_state", "Clear a blocked failure so the next reconcile retries at once."),
    "unlock": (
        "commands_state",
        "Force-unlock: end the in-progress state as interrupted. Only when its holder is surely gone.",
    ),
    "check": (
        "commands_check",
        "Drift and health now: exit 0 all in sync, 2 drift or failing checks found, 1 error.",
    ),
    "daemon": (
        "commands_daemon",
        "Reconcile continuously: on every push, fetch, webhook and resync (SPEC section 6).",
    ),
    "validate": (
        "commands_desired",
        "Check every environment, blueprint and config file; print each problem as path:line:col: message.",
    ),
    "schema": ("commands_desired", "Print the JSON Schema of an Environment file, for editors."),
    "init": (
        "commands_desired",
        "Scaffold a GitOps repository: reconciler.yaml, an example environment and blueprint, .gitignore.",
    ),
    "log": (
        "commands_log",
        "A phase run's kept (redacted) output: the newest run, or the runs newest first.",
    ),
    "version": ("commands_meta", "Print the version of reconcile and of what it runs on."),
    "completion": ("commands_meta", "Print the shell completion script for bash, zsh or fish."),
    "plan": (
        "commands_plan",
        "Per environment: observed state, desired state, the transitions that would run and why.",
    ),
    "serve": (
        "commands_serve",
        "Serve the dashboard and the JSON API from the state branch, without reconciling (SPEC 6.1).",
    ),
    "suspend": (
        "commands_suspend",
        "Stop the reconciler acting on NAME, whatever its file says, until `reconcile resume NAME`.",
    ),
    "resume": (
        "commands_suspend",
        "Lift `reconcile suspend NAME`: the next `reconcile apply` or the daemon acts on it again.",
    ),
}


def load_command(name: str) -> _click.Command:
    """The real command ``name``: its module imported (it registers on ``app``), then built by typer."""
    importlib.import_module(f"reconciler.cli.{COMMANDS[name][0]}")
    for info in app.registered_commands:
        if (
            info.callback is not None
            and (info.name or typer.main.get_command_name(info.callback.__name__)) == name
        ):
            return typer.main.get_command_from_info(
                info,
                pretty_exceptions_short=app.pretty_exceptions_short,
                rich_markup_mode=app.rich_markup_mode,
            )
    raise LookupError(f"reconciler.cli.{COMMANDS[name][0]} registers no command {name!r}")


class _Commands(MutableMapping[str, _click.Command]):
    """A group's commands by name, every command of ``COMMANDS`` among them: reading one loads it.

    What a caller reads from ``group.commands`` (click's own attribute) is the
    real command, as with an eager group; ``LazyGroup.get_command`` alone hands
    out summaries, for listings.
    """

    def __init__(self, loaded: MutableMapping[str, _click.Command]) -> None:
        self.loaded = dict(loaded)

    def __getitem__(self, name: str) -> _click.Command:
        if name not in self.loaded:
            if name not in COMMANDS:
                raise KeyError(name)
            self.loaded[name] = load_command(name)
        return self.loaded[name]

    def __setitem__(self, name: str, command: _click.Command) -> None:
        self.loaded[name] = command

    def __delitem__(self, name: str) -> None:
        del self.loaded[name]

    def __iter__(self) -> Iterator[str]:
        yield from COMMANDS
        yield from (name for name in self.loaded if name not in COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS.keys() | self.loaded.keys())

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS or name in self.loaded


class LazyGroup(TyperGroup):
    """The root group: lists every command from ``COMMANDS``, imports one only to run or complete it."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.commands = _Commands(self.commands)

    def get_command(self, ctx: _click.Context, cmd_name: str) -> _click.Command | None:
        """A loaded command, else a summary that only names it (for ``--help`` and completing names)."""
        commands = self.commands
        assert isinstance(commands, _Commands)
        if cmd_name in commands.loaded:
            return commands.loaded[cmd_name]
        if cmd_name in COMMANDS:
            return TyperCommand(cmd_name, help=COMMANDS[cmd_name][1], rich_markup_mode=self.rich_markup_mode)
        return None

    def list_commands(self, ctx: _click.Context) -> list[str]:
        return list(self.commands)  # names only: typer's own reads every command to list them

    def resolve_command(
        self, ctx: _click.Context, args: list[str]
    ) -> tuple[str | None, _click.Command | None, list[str]]:
        """The command about to run, or whose options are being completed: the real one."""
        if args and args[0] in COMMANDS:
            _ = self.commands[args[0]]  # reading it loads it
        return super().resolve_command(ctx, args)


app = typer.Typer(
    name="reconcile",
    help="Reconcile environments declared in git, recording every transition on a state branch.",
    cls=LazyGroup,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion/--show-completion; registers the completion classes
)
