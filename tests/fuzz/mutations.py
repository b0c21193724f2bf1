"""Random mutations of valid environment, blueprint and reconciler.yaml files, for the fuzz suite.

A document is a plain value (dicts, lists, scalars) plus ``Raw`` snippets of YAML
that no Python value produces (tags, huge numbers, dates, aliases). It is
mutated at one place (a value replaced, a key added or removed, a value nested
deep), written as YAML (block style on top, flow style inside), and then the
text itself may be mutated (tabs, bytes, encodings, truncation).
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st


@dataclass(frozen=True)
class Raw:
    """YAML text written as is."""

    text: str


GOOD_ENV: dict[str, Any] = {
    "apiVersion": "reconciler/v1",
    "kind": "Environment",
    "metadata": {"name": "good"},
    "spec": {"desiredState": "running", "phases": {"run": [{"shell": {"run": "true"}}]}},
}

ENVIRONMENT: dict[str, Any] = {
    "apiVersion": "reconciler/v1",
    "kind": "Environment",
    "metadata": {"name": "fuzz", "labels": {"team": "a"}},
    "spec": {
        "desiredState": "running",
        "blueprint": "bp",
        "vars": {"port": 8080, "name": "x", "list": [1, "two"], "secret": {"fromEnv": "HOME"}},
        "dependsOn": ["good"],
        "suspend": False,
        "protected": False,
        "retry": {"limit": 2, "backoffSeconds": 1},
        "timeoutSeconds": 60,
        "phases": {
            "provision": [
                {"name": "p", "shell": {"run": "true", "env": {"A_1": "b"}, "cwd": ".", "timeoutSeconds": 5}}
            ],
            "run": [{"shell": {"run": "true"}}],
            "check": [
                {
                    "http": {
                        "url": "http://127.0.0.1:9/{{ vars.port }}",
                        "expectStatus": 200,
                        "timeoutSeconds": 1,
                    },
                    "reapply": "run",
                }
            ],
        },
    },
}

BLUEPRINT: dict[str, Any] = {
    "apiVersion": "reconciler/v1",
    "kind": "Blueprint",
    "metadata": {"name": "bp"},
    "spec": {
        "vars": {"port": 1, "region": "eu"},
        "phases": {
            "configure": [{"shell": {"run": "true", "env": {"B": {"fromEnv": "HOME"}}}}],
            "release": [
                {"tofu": {"module": "infra", "vars": {"n": "{{ environment.name }}"}, "action": "apply"}}
            ],
            "destroy": [{"ansible": {"playbook": "site.yml", "extraVars": {"x": "{{ vars.region }}"}}}],
        },
    },
}

CONFIG: dict[str, Any] = {
    "apiVersion": "reconciler/v1",
    "kind": "Config",
    "stateRef": "refs/heads/reconciler/state",
    "prune": False,
    "identity": {"name": "reconciler", "email": "reconciler@localhost"},
}

RAW = [
    "!!int x",
    "!!python/object/apply:os.system ['true']",
    "!!str 5",
    "!!binary aGk=",
    "!!set {a, b}",
    "!custom v",
    "9" * 5000,
    "-" + "9" * 30,
    "1e20",
    "-1e400",
    ".inf",
    ".nan",
    "0x" + "f" * 30,
    "0o777777777777777777777777",
    "1_000_000_000_000_000_000_000",
    "2024-13-45",
    "2024-01-01",
    "2024-01-01T10:00:00Z",
    "&anchor [1, 2]",
    "*nope",
    "'unterminated",
    '"\\0"',
    '"\\x00"',
    '"\\u0000 hidden"',
    '"\\ud800"',
    "{a: 1, a: 2}",
    "[" * 100 + "]" * 100,
    "[" * 2000 + "]" * 2000,
    "~",
    "yes",
    "=",
    "|\n  block\n",
    "<<: {a: 1}",
    "? complex\n",
    "%YAML 1.1",
]

_KEYS = st.one_of(
    st.sampled_from(["", "A=B", "a b", "\x00", "run", "shell", "name", "x" * 300, "ü", "1", "$X", "-"]),
    st.text(max_size=8),
)
_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)
_SCALARS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    _TEXT,
    st.booleans(),
    st.none(),
    st.sampled_from(RAW).map(Raw),
)
VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_KEYS, inner, max_size=3)),
    max_leaves=8,
)


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            out.extend(_paths(item, (*here, key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out.extend(_paths(item, (*here, i)))
    return out


def _get(value: Any, path: tuple[Any, ...]) -> Any:
    for part in path:
        value = value[part]
    return value


@st.composite
def mutated(draw: st.DrawFn, document: dict[str, Any]) -> dict[str, Any] | Raw:
    """``document`` with one random change; sometimes replaced by a random value altogether."""
    doc = copy.deepcopy(document)
    paths = _paths(doc)
    path = draw(st.sampled_from(paths))
    op = draw(st.sampled_from(["replace", "replace", "add", "delete", "nest", "whole"]))
    if op == "whole":
        value = draw(VALUES)
        return value if isinstance(value, dict) else Raw(emit_flow(value))
    if op == "nest":
        depth = draw(st.sampled_from([2, 63, 64, 65, 66, 300, 1200]))
        # Written as text: a Python value this deep would not survive being written out recursively.
        opens, closes = [], []
        for _ in range(depth):
            as_list = depth > 100 or draw(st.booleans())
            opens.append("[" if as_list else "{k: ")
            closes.append("]" if as_list else "}")
        value: Any = Raw("".join(opens) + emit_flow(_get(doc, path)) + "".join(reversed(closes)))
    elif op == "add":
        target = _get(doc, path)
        if isinstance(target, dict):
            target[draw(_KEYS)] = draw(VALUES)
            return doc
        value = draw(VALUES)
    elif op == "delete":
        if not path:
            return doc
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
        return doc
    else:
        value = draw(VALUES)
    if not path:
        return value if isinstance(value, dict) else Raw(emit_flow(value))
    _get(doc, path[:-1])[path[-1]] = value
    return doc


def emit_flow(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(emit_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return (
            "{"
            + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {emit_flow(v)}" for k, v in value.items())
            + "}"
        )
    raise TypeError(type(value))


def emit(value: Any, indent: int = 0) -> str:
    """Block style for the top levels of mappings, flow style inside."""
    if isinstance(value, dict) and value and indent < 6:
        lines = []
        for key, item in value.items():
            key_text = (
                key
                if isinstance(key, str) and key.isidentifier()
                else json.dumps(str(key), ensure_ascii=False)
            )
            if isinstance(item, dict) and item:
                lines.append(" " * indent + f"{key_text}:\n" + emit(item, indent + 2))
            else:
                lines.append(" " * indent + f"{key_text}: {emit_flow(item)}\n")
        return "".join(lines)
    return " " * indent + emit_flow(value) + "\n"


@st.composite
def text_mutated(draw: st.DrawFn, text: str) -> bytes:
    """The YAML text, sometimes changed as bytes: a tab, an insertion, a cut, an encoding."""
    op = draw(
        st.sampled_from(
            [
                "none",
                "none",
                "none",
                "tab",
                "insert",
                "cut",
                "dupline",
                "utf16",
                "latin1",
                "bom",
                "crlf",
                "flip",
                "truncate",
                "big",
            ]
        )
    )
    lines = text.splitlines(keepends=True) or [""]
    if op == "tab":
        i = draw(st.integers(0, len(lines) - 1))
        stripped = lines[i].lstrip(" ")
        lines[i] = "\t" * max(1, (len(lines[i]) - len(stripped)) // 2) + stripped
        return "".join(lines).encode()
    if op == "insert":
        at = draw(st.integers(0, len(text)))
        return (
            text[:at]
            + draw(
                _TEXT
                | st.sampled_from(["\t", "\x00", "\x85", "\u2028", "\ufeff", ": ", "- ", "{", "&a ", "*a"])
            )
            + text[at:]
        ).encode()
    if op == "cut":
        a = draw(st.integers(0, len(text)))
        b = draw(st.integers(a, min(len(text), a + 40)))
        return (text[:a] + text[b:]).encode()
    if op == "dupline":
        i = draw(st.integers(0, len(lines) - 1))
        lines.insert(i, lines[i])
        return "".join(lines).encode()
    if op == "utf16":
        return text.encode("utf-16")
    if op == "latin1":
        return text.encode("latin-1", errors="replace") + b"\xe9\xff"
    if op == "bom":
        return b"\xef\xbb\xbf" + text.encode()
    if op == "crlf":
        return text.replace("\n", "\r\n").encode()
    if op == "flip":
        data = bytearray(text.encode())
        if data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.integers(0, 255))
        return bytes(data)
    if op == "truncate":
        return text.encode()[: draw(st.integers(0, len(text.encode())))]
    if op == "big":
        return text.encode() + b"#" * (1024 * 1024)
    return text.encode()


@st.composite
def files(draw: st.DrawFn) -> dict[str, bytes]:
    """One repository's files: ``good`` always valid, the others each perhaps mutated."""
    out = {"environments/good.yaml": emit(GOOD_ENV).encode()}
    for path, document in (
        ("environments/fuzz.yaml", ENVIRONMENT),
        ("blueprints/bp.yaml", BLUEPRINT),
        ("reconciler.yaml", CONFIG),
    ):
        # The environment file is mutated most often; the others now and then.
        chance = 0.9 if path.startswith("environments/") else 0.3
        if draw(st.floats(0, 1)) < chance:
            value = draw(mutated(document))
            text = emit(value) if not isinstance(value, Raw) else value.text + "\n"
            out[path] = draw(text_mutated(text))
        else:
            out[path] = emit(document).encode()
    return out
