"""Reading YAML safely, fast, and with positions only when something is wrong.

The C parser (ruamel.yaml.clib) composes every file into nodes, and a small
constructor here turns the common subset (mappings, sequences, strings,
null, booleans, plain decimal numbers; no tags, anchors or directives) into
Python values with ruamel's YAML 1.2 resolution rules. Anything else -- a
tag, a timestamp, a merge key, a duplicate key, a syntax error -- goes
through ruamel's C safe loader as before, so results and messages are the
same. The round-trip loader runs only to find the line and column of a node
an error points at. Before parsing, a file is refused when it is too large,
not UTF-8, or when its aliases would expand beyond a small budget (the
"billion laughs").
"""

from __future__ import annotations

import importlib
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.resolver import VersionedResolver
from ruamel.yaml.tag import Tag

_CParser: Any
try:  # the C extension is a dependency on CPython; without it every file takes ruamel's own path
    _CParser = importlib.import_module("_ruamel_yaml").CParser
except ImportError:  # pragma: no cover
    _CParser = None

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


# -- the fast path ---------------------------------------------------------------------------------

_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
# Tags our resolver hands the composer, compared by identity: an explicit tag in the file is
# another object, which the constructor below leaves to ruamel.
_PLAIN, _QUOTED, _MAP, _SEQ = (Tag(suffix=s) for s in ("?plain", "?str", "?map", "?seq"))
#: ruamel's YAML 1.2 implicit resolvers, by first character (what ``YAML(typ="safe")`` applies).
_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    str(k): list(v) for k, v in VersionedResolver(version=(1, 2)).versioned_resolver.items() if k is not None
}
_DECIMAL = re.compile(r"[-+]?[0-9]+\Z")
_SIMPLE_FLOAT = re.compile(r"[-+]?[0-9]+\.[0-9]+\Z")
# A directive (``%YAML 1.1`` changes the resolution rules): leave such files to ruamel.
_DIRECTIVE = re.compile(r"^%", re.MULTILINE)


class _Fallback(Exception):
    """Something the fast path does not construct itself; ruamel's loader decides."""


if _CParser is not None:

    class _Composer(_CParser):  # type: ignore[misc]
        """The C parser and composer, with tags left for our constructor to resolve."""

        def resolve(self, kind: Any, value: Any, implicit: Any) -> Tag:
            name = kind.__name__
            if name == "ScalarNode":
                return _PLAIN if implicit[0] else _QUOTED
            return _MAP if name == "MappingNode" else _SEQ

        def descend_resolver(self, *args: Any) -> None:
            return None

        def ascend_resolver(self, *args: Any) -> None:
            return None


def _scalar(value: str) -> Any:
    """A plain scalar, resolved as ruamel's YAML 1.2 safe loader would."""
    for tag, pattern in _RESOLVERS.get(value[:1], ()):
        if pattern.match(value):
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return value.lower() == "true"
            if tag == _INT and _DECIMAL.match(value):
                return int(value)
            if tag == _FLOAT and _SIMPLE_FLOAT.match(value):
                return float(value)
            raise _Fallback(tag)
    return value


def _construct(node: Any) -> Any:
    tag = node.ctag
    if tag is _QUOTED:
        return node.value
    if tag is _PLAIN:
        return _scalar(node.value)
    if tag is _MAP:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_tag = key_node.ctag
            if key_tag is _QUOTED:
                key = key_node.value
            elif key_tag is _PLAIN:
                key = _scalar(key_node.value)
            else:
                raise _Fallback("a key that is not a scalar")
            if key in out:
                raise _Fallback("duplicate key")
            out[key] = _construct(value_node)
        return out
    if tag is _SEQ:
        return [_construct(item) for item in node.value]
    raise _Fallback(tag)


_NOT_FAST = object()


def _fast_load(text: str) -> Any:
    """The document, or ``_NOT_FAST`` when ruamel's loader must decide (and report errors)."""
    if _CParser is None or _DIRECTIVE.search(text):
        return _NOT_FAST
    parser = _Composer(text)
    try:
        node = parser.get_single_node()
        if node is None:
            return _NOT_FAST
        return _construct(node)
    except (_Fallback, YAMLError, RecursionError):
        return _NOT_FAST
    finally:
        parser.dispose()


def load(text: str) -> Any | YamlIssue:
    """Parse one YAML document with the C parser, or say where and why it is refused."""
    try:
        if not _MAYBE_ALIAS.search(text):
            fast = _fast_load(text)
            if fast is not _NOT_FAST:
                return fast
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
