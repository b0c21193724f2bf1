"""Reading YAML safely, fast, and with positions only when something is wrong.

The C safe loader parses every file; the round-trip loader runs only to find
the line and column of a node an error points at. Before parsing, a file is
refused when it is too large, not UTF-8, or when its aliases would expand
beyond a small budget (the "billion laughs").
"""

from __future__ import annotations

import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

#: SPEC section 7: larger files are refused unread.
MAX_FILE_BYTES = 1024 * 1024
#: How many nodes a document may hold once its aliases are expanded.
MAX_EXPANDED_NODES = 10_000
#: How many aliases a document may use at all.
MAX_ALIASES = 100

#: A path into a document: mapping keys and sequence indexes.
Loc = tuple[str | int, ...]

_local = threading.local()
# A "*" that may start an alias: after a space, a flow indicator or at a line start.
_MAYBE_ALIAS = re.compile(r"(?:^|[\s\[\{,:-])\*", re.MULTILINE)


@dataclass(frozen=True)
class YamlIssue:
    """A refusal before any schema is applied; ``line`` and ``col`` are 1-based."""

    line: int
    col: int
    message: str


def _safe() -> YAML:
    yaml: YAML | None = getattr(_local, "safe", None)
    if yaml is None:
        yaml = YAML(typ="safe", pure=False)
        _local.safe = yaml
    return yaml


def _round_trip() -> YAML:
    yaml: YAML | None = getattr(_local, "rt", None)
    if yaml is None:
        yaml = YAML(typ="rt")
        _local.rt = yaml
    return yaml


def decode(data: bytes) -> str | YamlIssue:
    """The text of a file, or why it is refused (size, encoding)."""
    if len(data) > MAX_FILE_BYTES:
        return YamlIssue(
            1, 1, f"file is {len(data)} bytes; at most {MAX_FILE_BYTES} bytes (1 MiB) are accepted"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start]
        line = before.count(b"\n") + 1
        col = len(before) - (before.rfind(b"\n") + 1) + 1
        return YamlIssue(
            line, col, f"byte 0x{data[e.start]:02x} is not UTF-8; files must be UTF-8 encoded text"
        )


def _check_aliases(text: str) -> YamlIssue | None:
    """Refuse documents whose aliases expand past the budget, without expanding them."""
    if not _MAYBE_ALIAS.search(text):
        return None
    sizes: dict[str, int] = {}
    # Each open collection: [anchor, node count so far].
    stack: list[list[Any]] = []
    aliases = 0
    total = 0
    for event in _safe().parse(text):
        name = type(event).__name__
        if name in ("MappingStartEvent", "SequenceStartEvent"):
            stack.append([getattr(event, "anchor", None), 1])
            continue
        if name in ("ScalarEvent", "AliasEvent"):
            if name == "AliasEvent":
                aliases += 1
                size = sizes.get(event.anchor, 1)
            else:
                size = 1
                if event.anchor:
                    sizes[event.anchor] = 1
        elif name in ("MappingEndEvent", "SequenceEndEvent"):
            anchor, size = stack.pop()
            if anchor:
                sizes[anchor] = size
        else:
            continue
        if stack:
            stack[-1][1] += size
        else:
            total += size
        expanded = total + sum(entry[1] for entry in stack)
        if aliases > MAX_ALIASES or expanded > MAX_EXPANDED_NODES:
            mark = event.start_mark
            return YamlIssue(
                mark.line + 1,
                mark.column + 1,
                f"too many YAML aliases: the document would expand to more than {MAX_EXPANDED_NODES} "
                f"nodes (or use more than {MAX_ALIASES} aliases); write the values out instead",
            )
    return None


def load(text: str) -> Any | YamlIssue:
    """Parse one YAML document with the C loader, or say where and why it is refused."""
    try:
        issue = _check_aliases(text)
        if issue is not None:
            return issue
        return _safe().load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = (e.problem or "invalid YAML").strip()
        if type(e).__name__ == "DuplicateKeyError":
            return YamlIssue(line, col, f"{problem}; each key may appear once in a mapping")
        context = f" ({e.context.strip()})" if e.context else ""
        return YamlIssue(line, col, f"YAML syntax error: {problem}{context}")
    except YAMLError as e:
        return YamlIssue(1, 1, f"YAML error: {str(e).splitlines()[0]}")


def locate(text: str, loc: Sequence[str | int], *, key: bool = False) -> tuple[int, int, Loc]:
    """Line and column (1-based) of the node at ``loc``, and the part of ``loc`` that was found.

    ``key`` points at a mapping key rather than its value (for unknown fields).
    Elements of ``loc`` that are not in the document (pydantic's union tags)
    are skipped; the deepest node found is returned.
    """
    try:
        node = _round_trip().load(text)
    except YAMLError:
        return 1, 1, ()
    line, col = 1, 1
    found: list[str | int] = []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        lc = getattr(node, "lc", None)
        if isinstance(node, dict) and part in node and lc is not None:
            value = node[part]
            scalar = not isinstance(value, dict | list)
            pos = lc.value(part) if scalar and not (key and last) else lc.key(part)
            line, col = pos[0] + 1, pos[1] + 1
            node = value
            found.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node) and lc is not None:
            pos = lc.item(part)
            line, col = pos[0] + 1, pos[1] + 1
            node = node[part]
            found.append(part)
    return line, col, tuple(found)
