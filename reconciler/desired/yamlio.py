"""Reading YAML safely, fast, and with positions only when something is wrong.

Plain files (ASCII, no tags, anchors, escapes, block scalars or unusual
numbers: most environment files) are built in native code by yaml_rs, and
kept only when every value is one the path below would build the same from
that text (decision 026); anything else, and every refusal, takes that path.
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

Every value is bounded here, where it is built (SPEC section 7): no list or
mapping nested deeper than ``MAX_DEPTH``, integers within 64 bits, finite
floats, no NUL in any string or key, and no explicit tag. A document that
might nest so deep that the C parser would take quadratic time or its
recursive composer would overflow the C stack is walked event by event first,
stopping at the first level too deep.
"""

from __future__ import annotations

import functools
import importlib
import math
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
#: Whether files may be parsed by yaml_rs at all. A daemon turns it off before its first load
#: (``daemon.footprint``): the native module costs ~5 MiB of resident memory for good, against a
#: quarter of a second saved once at start-up; a one-shot command is the other way round.
native = True


@functools.cache
def _import_yaml_rs() -> Any:
    try:  # a dependency where it has a wheel; without it every file takes the C parser's path
        return importlib.import_module("yaml_rs")
    except ImportError:  # pragma: no cover
        return None


def native_parser() -> Any:
    """yaml_rs, imported on first use; ``None`` when it is turned off or has no wheel here."""
    return _import_yaml_rs() if native else None


#: SPEC section 7: larger files are refused unread.
MAX_FILE_BYTES = 1024 * 1024
#: How many nodes a document may hold once its aliases are expanded.
MAX_EXPANDED_NODES = 10_000
#: How many aliases a document may use at all.
MAX_ALIASES = 100
#: SPEC section 7: how deep lists and mappings may nest (the document itself is level 1).
MAX_DEPTH = 64
#: SPEC section 7: integers fit 64 bits.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
_INT_DIGITS = len(str(INT_MIN))
#: Past this many ``[``/``{`` a document may nest deep enough to hurt the C parser: walk it first.
_FLOW_OPENERS = 1000
# Many block indicators at a line start (``- - - x``), or a deep indentation: the same.
_DEEP_BLOCK = re.compile(r"^(?: {200}|[ \t]*(?:[-?:][ \t]+){16})", re.MULTILINE)
_TAB_HINT = "YAML is indented with spaces, never tabs: indent with spaces"
_TAG_HINT = "write the plain value (in quotes if it must stay a string)"
_NUL_HINT = "a string may not hold a NUL character (\\0); remove it"

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


def field_path(loc: Sequence[str | int]) -> str:
    """``spec.phases.provision[0].tofu.module``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(document)"


def _too_deep() -> str:
    return (
        f"nested more than {MAX_DEPTH} levels deep; "
        f"at most {MAX_DEPTH} levels of lists and mappings are accepted"
    )


def _int_refusal(value: str) -> str:
    digits = len(value.lstrip("+-"))
    return (
        f"the integer {value[:24]}{'...' if len(value) > 24 else ''} ({digits} digits) does not fit 64 bits; "
        f"accepted: {INT_MIN} to {INT_MAX}"
    )


def _tag_refusal(tag: str) -> str:
    name = "!!" + tag[len("tag:yaml.org,2002:") :] if tag.startswith("tag:yaml.org,2002:") else tag
    return f"tags are not allowed (found `{name[:60]}`); {_TAG_HINT}"


def _issue(mark: Any, loc: Loc, message: str) -> YamlIssue:
    line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
    where = field_path(loc)
    if len(where) > 80:
        where = where[:80] + "..."
    return YamlIssue(line, col, f"`{where}`: {message}")


def _safe() -> YAML:
    yaml: YAML | None = getattr(_local, "safe", None)
    if yaml is None:
        yaml = YAML(typ="safe", pure=False)
        _local.safe = yaml
    return yaml


def _dates() -> YAML:
    """A loader of its own for one scalar, used while ``_safe()`` is in the middle of a parse."""
    yaml: YAML | None = getattr(_local, "dates", None)
    if yaml is None:
        yaml = YAML(typ="safe", pure=False)
        _local.dates = yaml
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


def _maybe_alias(text: str) -> bool:
    """Whether the text may hold an alias (``*name``); most files have no ``*`` at all (a C scan)."""
    return "*" in text and _MAYBE_ALIAS.search(text) is not None


def _may_be_deep(text: str) -> bool:
    """Whether the document might nest deep enough to hurt the C parser (cheap; false alarms are fine)."""
    return text.count("[") + text.count("{") > _FLOW_OPENERS or _DEEP_BLOCK.search(text) is not None


class _Frame:
    """One open collection while walking events: its anchor, size, and where its next child sits."""

    __slots__ = ("anchor", "index", "is_map", "key", "on_key", "size")

    def __init__(self, anchor: Any, is_map: bool) -> None:
        self.anchor = anchor
        self.is_map = is_map
        self.size = 1
        self.index = 0
        self.key: Any = None
        self.on_key = True


def _loc_of(stack: list[_Frame]) -> Loc:
    loc: list[str | int] = []
    for frame in stack:
        if frame.is_map:
            if not frame.on_key and isinstance(frame.key, str | int):
                loc.append(frame.key)
        else:
            loc.append(frame.index)
    return tuple(loc)


def _check_events(text: str) -> YamlIssue | None:
    """Walk the event stream once, without building anything, and stop at the first refusal.

    Refused: nesting past ``MAX_DEPTH`` (the walk stops there, so a document of a
    million ``[`` costs what its first 65 do), explicit tags, a date that is not
    one, and aliases that would expand past the budget (the "billion laughs").
    """
    sizes: dict[str, int] = {}
    stack: list[_Frame] = []
    aliases = 0
    total = 0
    for event in _safe().parse(text):
        name = type(event).__name__
        if name in ("MappingStartEvent", "SequenceStartEvent", "ScalarEvent", "AliasEvent"):
            tag = getattr(event, "tag", None)
            if tag is not None and tag != "!":
                return _issue(event.start_mark, _loc_of(stack), _tag_refusal(tag))
        if name in ("MappingStartEvent", "SequenceStartEvent"):
            if len(stack) >= MAX_DEPTH:
                return _issue(event.start_mark, _loc_of(stack), _too_deep())
            stack.append(_Frame(getattr(event, "anchor", None), name == "MappingStartEvent"))
            continue
        if name in ("ScalarEvent", "AliasEvent"):
            if name == "AliasEvent":
                aliases += 1
                size = sizes.get(event.anchor, 1)
            else:
                size = 1
                if event.anchor:
                    sizes[event.anchor] = 1
                if event.implicit[0]:
                    issue = _check_plain(event.value)
                    if issue is not None:
                        return _issue(event.start_mark, _loc_of(stack), issue)
        elif name in ("MappingEndEvent", "SequenceEndEvent"):
            frame = stack.pop()
            if frame.anchor:
                sizes[frame.anchor] = frame.size
            size = frame.size
        else:
            continue
        if stack:
            parent = stack[-1]
            parent.size += size
            if parent.is_map:
                if parent.on_key:
                    parent.key = event.value if name == "ScalarEvent" else None
                parent.on_key = not parent.on_key
            else:
                parent.index += 1
        else:
            total += size
        expanded = total + sum(frame.size for frame in stack)
        if aliases > MAX_ALIASES or expanded > MAX_EXPANDED_NODES:
            mark = event.start_mark
            return YamlIssue(
                mark.line + 1,
                mark.column + 1,
                f"too many YAML aliases: the document would expand to more than {MAX_EXPANDED_NODES} "
                f"nodes (or use more than {MAX_ALIASES} aliases); write the values out instead",
            )
    return None


def _check_plain(value: str) -> str | None:
    """Why a plain scalar that ruamel would construct is refused (dates that are not dates, huge ints)."""
    for tag, pattern in _RESOLVERS.get(value[:1], ()):
        if pattern.match(value):
            if tag == _INT and _DECIMAL.match(value) and len(value) > _INT_DIGITS:
                return _int_refusal(value)
            if tag == _TIMESTAMP:
                try:
                    _dates().load(value)
                except (ValueError, OverflowError, YAMLError):
                    return f"{value!r} is not a valid date; quote it to keep it a string"
            return None
    return None


def _check_value(data: Any) -> tuple[Loc, str] | None:
    """The first value out of bounds in what ruamel built (aliases may have nested it deeper)."""
    todo: list[tuple[Any, Loc]] = [(data, ())]
    while todo:
        value, loc = todo.pop()
        if isinstance(value, dict | list):
            if len(loc) >= MAX_DEPTH:
                return loc, _too_deep()
            items = list(value.items() if isinstance(value, dict) else enumerate(value))
            for key, _ in items:
                if isinstance(key, str) and "\0" in key:
                    return loc, f"key {key!r}: {_NUL_HINT}"
            # Reversed onto the stack, so the first value out of bounds in the document is the one named.
            for key, item in reversed(items):
                todo.append((item, (*loc, key if isinstance(key, str | int) else str(key))))
        else:
            problem = _check_leaf(value)
            if problem is not None:
                return loc, problem
    return None


def _check_leaf(value: Any) -> str | None:
    if isinstance(value, str):
        return _NUL_HINT if "\0" in value else None
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and not INT_MIN <= value <= INT_MAX:
        return _int_refusal(str(value))
    if isinstance(value, float) and not math.isfinite(value):
        return f"{value} is not a finite number; write a number"
    if isinstance(value, bytes | set):
        return f"tags are not allowed; {_TAG_HINT}"
    return None


# -- the fast path ---------------------------------------------------------------------------------


def _compiled(pattern: Any) -> re.Pattern[str]:
    """ruamel's resolver patterns are compiled lazily behind a proxy that costs a call per use."""
    lazy = getattr(pattern, "lazy_self", None)
    found = lazy() if callable(lazy) else pattern
    return found if isinstance(found, re.Pattern) else re.compile(found.pattern)


_NULL = "tag:yaml.org,2002:null"
_BOOL = "tag:yaml.org,2002:bool"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"
# Tags our resolver hands the composer, compared by identity: an explicit tag in the file is
# another object, which the constructor below leaves to ruamel.
_PLAIN, _QUOTED, _MAP, _SEQ = (Tag(suffix=s) for s in ("?plain", "?str", "?map", "?seq"))
#: ruamel's YAML 1.2 implicit resolvers, by first character (what ``YAML(typ="safe")`` applies).
_RESOLVERS: dict[str, list[tuple[str, re.Pattern[str]]]] = {
    str(k): [(tag, _compiled(pattern)) for tag, pattern in v]
    for k, v in VersionedResolver(version=(1, 2)).versioned_resolver.items()
    if k is not None
}
_DECIMAL = re.compile(r"[-+]?[0-9]+\Z")
#: Short plain scalars resolved so far (most repeat from file to file: keys, kinds, states), a bounded few.
_PLAIN_MEMO: dict[str, Any] = {}
_PLAIN_MEMO_SIZE = 65_536
_PLAIN_MEMO_WIDTH = 64
_MISSING = object()
_SIMPLE_FLOAT = re.compile(r"[-+]?[0-9]+\.[0-9]+\Z")
# A directive (``%YAML 1.1`` changes the resolution rules): leave such files to ruamel.
_DIRECTIVE = re.compile(r"^%", re.MULTILINE)


class _Fallback(Exception):
    """Something the fast path does not construct itself; ruamel's loader decides."""


class _Refusal(Exception):
    """A value out of bounds (SPEC section 7), at ``node``."""

    def __init__(self, node: Any, message: str) -> None:
        super().__init__(message)
        self.node = node
        self.message = message


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


def _scalar(node: Any) -> Any:
    """A plain scalar, resolved as ruamel's YAML 1.2 safe loader would."""
    value: str = node.value
    for tag, pattern in _RESOLVERS.get(value[:1], ()):
        if pattern.match(value):
            if tag == _NULL:
                return None
            if tag == _BOOL:
                return value.lower() == "true"
            if tag == _INT and _DECIMAL.match(value):
                number = int(value) if len(value) <= _INT_DIGITS else None
                if number is None or not INT_MIN <= number <= INT_MAX:
                    raise _Refusal(node, _int_refusal(value))
                return number
            if tag == _FLOAT and _SIMPLE_FLOAT.match(value):
                real = float(value)
                if not math.isfinite(real):
                    raise _Refusal(node, f"{value[:24]}... does not fit a finite number; write a smaller one")
                return real
            raise _Fallback(tag)
    return value


def _construct(node: Any, depth: int = 1) -> Any:
    tag = node.ctag
    if tag is _QUOTED:
        return node.value
    if tag is _PLAIN:
        value = _PLAIN_MEMO.get(node.value, _MISSING)
        if value is _MISSING:
            value = _scalar(node)  # a refusal raises, and is never remembered
            if len(node.value) <= _PLAIN_MEMO_WIDTH and len(_PLAIN_MEMO) < _PLAIN_MEMO_SIZE:
                _PLAIN_MEMO[node.value] = value
        return value
    if depth > MAX_DEPTH and (tag is _MAP or tag is _SEQ):
        raise _Refusal(node, _too_deep())
    if tag is _MAP:
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key_tag = key_node.ctag
            if key_tag is _QUOTED:
                key = key_node.value
            elif key_tag is _PLAIN:
                key = _PLAIN_MEMO.get(key_node.value, _MISSING)
                if key is _MISSING:
                    key = _scalar(key_node)
                    if len(key_node.value) <= _PLAIN_MEMO_WIDTH and len(_PLAIN_MEMO) < _PLAIN_MEMO_SIZE:
                        _PLAIN_MEMO[key_node.value] = key
            else:
                raise _Fallback("a key that is not a scalar")
            if key in out:
                raise _Fallback("duplicate key")
            out[key] = _construct(value_node, depth + 1)
        return out
    if tag is _SEQ:
        return [_construct(item, depth + 1) for item in node.value]
    raise _Refusal(node, _tag_refusal(str(node.tag)))


def _path_to(root: Any, target: Any) -> Loc:
    """Where ``target`` sits under ``root``: mapping keys (as written) and sequence indexes."""
    todo: list[tuple[Any, Loc]] = [(root, ())]
    while todo:
        node, loc = todo.pop()
        if node is target:
            return loc
        value = node.value
        if node.ctag is _MAP:
            for key_node, value_node in value:
                if key_node is target:
                    return loc
                todo.append((value_node, (*loc, key_node.value)))
        elif node.ctag is _SEQ:
            todo.extend((item, (*loc, i)) for i, item in enumerate(value))
    return ()


_NOT_FAST = object()


def _fast_load(text: str) -> Any:
    """The document (or its refusal), or ``_NOT_FAST`` when ruamel's loader must decide."""
    if _CParser is None or _DIRECTIVE.search(text):
        return _NOT_FAST
    parser = _Composer(text)
    try:
        node = parser.get_single_node()
        if node is None:
            return _NOT_FAST
        data = _construct(node)
        # A NUL reaches a string only through an escape (or raw, which the parser refuses).
        if "\\" in text or "\0" in text:
            found = _check_value(data)
            if found is not None:
                loc, message = found
                line, col, _ = locate(text, loc)
                return YamlIssue(line, col, f"`{field_path(loc)}`: {message}")
        return data
    except _Refusal as e:
        return _issue(e.node.start_mark, _path_to(node, e.node), e.message)
    except (_Fallback, YAMLError, RecursionError):
        return _NOT_FAST
    finally:
        parser.dispose()


# -- the fastest path: a parser that builds Python values in native code -----------------------------

# What yaml_rs is never asked about, so that it only sees text whose every value the checks below can
# judge. Besides text that is not ASCII (YAML 1.1, and so libyaml, breaks lines at U+0085 and U+2028;
# 1.2 does not): control characters (tabs, CR), tags, anchors, aliases, directives, escapes, complex
# and merge keys, block scalars, several documents; numbers that its YAML 1.2 core schema reads and
# ruamel's does not (an underscore next to a digit, an exponent after a fraction) or that the C path
# refuses for their length alone (leading zeros); a `:` not followed by a space, or one that starts a
# key (YAML 1.2 accepts `[a:b]`, `[: x]` and ` : 1`; libyaml, and so the C path, refuses them). Each
# is its own search: a pattern that starts with one literal or class is scanned for in C.
_RS_SCREENS = tuple(
    re.compile(pattern)
    for pattern in (
        r"[!&*%\\?|<>\x00-\x09\x0b-\x1f\x7f]",
        r":[^ \n]",
        r"\n[ -]*:",
        r"[\[{,] *:",
        r"_(?:[0-9.]|(?<=[0-9._]_))",
        r"\.[0-9]+[eE]",
        r"0[0-9]{19}",
        r"---",
        r"\.\.\.",
    )
)
_FLOW_LINE = re.compile(r"^.*[\[{\]}].*$", re.MULTILINE)
#: Strings known to be what the C path would build whether they were quoted or plain.
_STR_MEMO: dict[str, bool] = {}


def _rs_load(text: str) -> Any:
    """The document as yaml_rs builds it, when the C path would provably build the same, else ``_NOT_FAST``.

    yaml_rs returns values, not nodes: it cannot say whether ``8080`` was quoted. So a
    string that a plain scalar could resolve to something else (a number, a date, a
    boolean), a value out of bounds, or anything that is not a plain JSON-like value
    sends the file to the C path, which decides (and places any refusal). Every
    refusal therefore comes from the C path, with its position and message.
    """
    rs = native_parser()
    if rs is None or not text.isascii() or text.lstrip(" -").startswith(":"):
        return _NOT_FAST
    for screen in _RS_SCREENS:
        if screen.search(text):
            return _NOT_FAST
    if "{" in text or "[" in text:
        # A flow collection spanning lines: YAML 1.2 takes a key there over two lines, libyaml refuses.
        for line in _FLOW_LINE.findall(text):
            if line.count("{") + line.count("[") != line.count("}") + line.count("]"):
                return _NOT_FAST
    try:
        data = rs.loads(text, parse_datetime=False)
    except Exception:  # a syntax error, a duplicate key, anything: the C path says what it is
        return _NOT_FAST
    # The schema wants a mapping; any other document takes the C path.
    return data if type(data) is dict and _rs_plain(data, 1) else _NOT_FAST


def _rs_plain(collection: Any, depth: int) -> bool:
    """Whether every key and value under ``collection`` is what the C path builds, within bounds.

    ``_rs_scalar`` inlined for the common values (a known string, a small int): this walk
    runs over every value of every file the native parser reads.
    """
    if depth > MAX_DEPTH:
        return False
    known = _STR_MEMO
    values = collection.values() if type(collection) is dict else collection
    if type(collection) is dict:
        for key in collection:
            if (type(key) is not str or known.get(key) is not True) and not _rs_scalar(key):
                return False
    for value in values:
        kind = type(value)
        if kind is str:
            if known.get(value) is not True and not _rs_scalar(value):
                return False
        elif kind is dict or kind is list:
            if not _rs_plain(value, depth + 1):
                return False
        elif kind is int:
            if not INT_MIN <= value <= INT_MAX:
                return False
        elif not _rs_scalar(value):
            return False
    return True


def _rs_scalar(value: Any) -> bool:
    """Whether a scalar yaml_rs built is the one the C path builds from the same text."""
    kind = type(value)
    if kind is str:
        known = _STR_MEMO.get(value)
        if known is None:
            known = "\0" not in value and not any(
                pattern.match(value) for _, pattern in _RESOLVERS.get(value[:1], ())
            )
            if len(value) <= _PLAIN_MEMO_WIDTH and len(_STR_MEMO) < _PLAIN_MEMO_SIZE:
                _STR_MEMO[value] = known
        return known
    if kind is int:
        return bool(INT_MIN <= value <= INT_MAX)
    if kind is float:
        return math.isfinite(value)
    return kind is bool or value is None


def load(text: str) -> Any | YamlIssue:
    """Parse one YAML document with the C parser, or say where and why it is refused."""
    try:
        deep = _may_be_deep(text)
        if not deep and not _maybe_alias(text):
            fast = _rs_load(text)
            if fast is not _NOT_FAST:
                return fast
            fast = _fast_load(text)
            if fast is not _NOT_FAST:
                return fast
        issue = _check_events(text)
        if issue is not None:
            return issue
        data = _safe().load(text)
        found = _check_value(data)
        if found is not None:
            loc, message = found
            line, col, _ = locate(text, loc)
            return YamlIssue(line, col, f"`{field_path(loc)}`: {message}")
        return data
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        problem = (e.problem or "invalid YAML").strip()
        if type(e).__name__ == "DuplicateKeyError":
            return YamlIssue(line, col, f"{problem}; each key may appear once in a mapping")
        context = f" ({e.context.strip()})" if e.context else ""
        hint = f"; {_TAB_HINT}" if _tab_at(text, line, col) or "tab" in problem else ""
        return YamlIssue(line, col, f"YAML syntax error: {problem}{context}{hint}")
    except YAMLError as e:
        return YamlIssue(1, 1, f"YAML error: {str(e).splitlines()[0]}")
    except (ValueError, OverflowError, RecursionError) as e:
        # Whatever ruamel's constructor raises on a value it cannot build is that file's refusal.
        why = f"{type(e).__name__}: {str(e)[:200]}"
        return YamlIssue(1, 1, f"a value cannot be read ({why}); write plain values")


def _tab_at(text: str, line: int, col: int) -> bool:
    """Whether the refused position is a tab, or a line indented with one."""
    lines = text.split("\n", line)
    if line > len(lines):
        return False
    row = lines[line - 1]
    return row[col - 1 : col] == "\t" or row[: len(row) - len(row.lstrip(" \t"))].count("\t") > 0


def locate(text: str, loc: Sequence[str | int], *, key: bool = False) -> tuple[int, int, Loc]:
    """Line and column (1-based) of the node at ``loc``, and the part of ``loc`` that was found.

    ``key`` points at a mapping key rather than its value (for unknown fields).
    Elements of ``loc`` that are not in the document (pydantic's union tags)
    are skipped; the deepest node found is returned.

    The nodes come from the C composer (kept for the last few texts, so ten
    thousand files refused for one reason, or one blueprint located once per
    environment, cost one composition each); a document the fast path leaves
    to ruamel (tags, anchors, merge keys, directives, duplicate keys) is read
    by the round-trip loader instead. Both give the same positions.
    """
    root = _composed(text)
    if root is not None:
        found = _locate_node(root, loc, key)
        if found is not None:
            return found
    return _locate_round_trip(text, loc, key)


@functools.lru_cache(maxsize=8)
def _composed(text: str) -> Any:
    """The C composer's nodes of ``text``, or ``None`` when the round-trip loader must locate."""
    if _CParser is None or _DIRECTIVE.search(text) or _may_be_deep(text) or _maybe_alias(text):
        return None
    if "&" in text or "<<" in text:  # anchors and merge keys: the round-trip loader's business
        return None
    parser = _Composer(text)
    try:
        return parser.get_single_node()
    except (YAMLError, RecursionError):
        return None
    finally:
        parser.dispose()


def _locate_node(root: Any, loc: Sequence[str | int], key: bool) -> tuple[int, int, Loc] | None:
    """``locate`` over composed nodes; ``None`` when a key on the way cannot be resolved here."""
    node = root
    line, col = 1, 1
    found: list[str | int] = []
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if node.ctag is _MAP:
            match = None
            seen: set[Any] = set()
            for key_node, value_node in node.value:
                if key_node.ctag is _QUOTED:
                    name = key_node.value
                elif key_node.ctag is _PLAIN:
                    try:
                        name = _scalar(key_node)
                    except (_Fallback, _Refusal):
                        return None
                else:
                    return None
                if name in seen:
                    return None  # a duplicate key: ruamel refuses the document
                seen.add(name)
                if match is None and name == part:
                    match = (key_node, value_node)
            if match is None:
                continue
            key_node, value_node = match
            tag = value_node.ctag
            if tag is _PLAIN and value_node.value == "":
                return None  # an empty value: ruamel places it at the next token
            if tag is not _PLAIN and tag is not _QUOTED and tag is not _MAP and tag is not _SEQ:
                return None  # an explicit tag
            scalar = tag is _PLAIN or tag is _QUOTED
            mark = value_node.start_mark if scalar and not (key and last) else key_node.start_mark
            node = value_node
        elif node.ctag is _SEQ and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            mark = node.start_mark
        else:
            continue
        line, col = mark.line + 1, mark.column + 1
        found.append(part)
    return line, col, tuple(found)


def _locate_round_trip(text: str, loc: Sequence[str | int], key: bool) -> tuple[int, int, Loc]:
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
