"""docs/conventions.md: every reconcile command and option its table names exists, and every row is filled."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from reconciler.cli import app

ROOT = Path(__file__).resolve().parent.parent
CONVENTIONS = ROOT / "docs" / "conventions.md"


def rows() -> list[tuple[list[str], list[str]]]:
    """(header, cells) of every table row."""
    out: list[tuple[list[str], list[str]]] = []
    header: list[str] = []
    for line in CONVENTIONS.read_text().splitlines():
        if not line.startswith("|"):
            header = []
            continue
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
        if not header:
            header = cells
        elif not set("".join(cells)) <= set("-: "):
            out.append((header, cells))
    return out


def test_every_row_names_ours_and_the_others() -> None:
    found = rows()
    assert len(found) > 40
    for header, cells in found:
        assert len(cells) == len(header), cells
        ours = header.index("reconcile")
        assert cells[0] and cells[ours], cells
        assert any(cells[i] for i in range(1, ours)), f"{cells[0]}: no convention to compare with"


def test_every_command_and_option_it_names_exists() -> None:
    root = typer.main.get_command(app)
    assert hasattr(root, "commands")
    named = 0
    everywhere = {o for c in [root, *root.commands.values()] for p in c.params for o in p.opts}
    for header, cells in rows():
        ours = cells[header.index("reconcile")]
        for span in re.findall(r"`([^`]+)`", ours):
            words = span.replace("\\|", "|").split()
            explicit = words[0] == "reconcile"
            words = words[1:] if explicit else words
            if not words:
                continue
            if re.match(r"^\[?--?[a-z]", words[0]):
                # An option named on its own: the root's, or one some command takes.
                for option in words[0].strip("[]").split("=")[0].split("/"):
                    assert option in everywhere, f"`{span}`: no command takes {option}"
                    named += 1
                command_names: list[str] = []
            elif explicit:
                command_names = words[0].split("|")
                missing = [c for c in command_names if c not in root.commands]
                assert not missing, f"`{span}`: no command {missing}"
            elif words[0] in root.commands:
                command_names = [words[0]]
            else:
                continue
            commands = [root.commands[c] for c in command_names] if command_names else []
            for command in commands:
                options = {o for p in command.params for o in p.opts}
                for word in words[1:]:
                    option = word.strip("[]").split("=")[0]
                    if re.match(r"^--?[a-z]", option):
                        assert option in options, f"`{span}`: {command.name} has no {option}"
                        named += 1
    assert named > 10
