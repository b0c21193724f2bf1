"""The native parser (yaml_rs) is used only where it builds what the C path builds (decision 026).

Each document is loaded twice: as ``yamlio.load`` does, and with yaml_rs switched off
(the C parser and ruamel). Whatever the first path returns, values or a refusal with
its position, must be what the second returns.
"""

from __future__ import annotations

import math
import random
from typing import Any

import pytest

from reconciler.desired import yamlio
from tests.desired.helpers import BLUEPRINT, env_yaml
from tests.desired.test_incremental import DOCUMENTS

pytestmark = pytest.mark.skipif(yamlio.native_parser() is None, reason="yaml_rs has no wheel here")


@pytest.fixture(autouse=True)
def native_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """On, whatever ran before (a daemon started in this process turns it off for good)."""
    monkeypatch.setattr(yamlio, "native", True)


TRICKY = [
    # Where YAML 1.2 (yaml_rs) and libyaml (the C path) part: each must take the C path.
    "a: [a:b, x]\n",
    "a: [: x]\n",
    " : 1\n",
    "a: {x y\n  b: }\n",
    "a: |\n",
    "a: >\n  folded\n",
    "a: 'x\x85y'\n",
    "a: x\u2028y\n",
    "a: 1_000\n",
    "a: .1e3\n",
    "a: 0000000000000000000001\n",
    "a: 2020-01-01\n",
    "a: '2020-01-01'\n",
    "a: '8080'\n",
    "a: 8080\n",
    "a: 1e400\n",
    "a: 9223372036854775808\n",
    "a: -9223372036854775808\n",
    "a: !!int 5\n",
    "a: &x 1\nb: *x\n",
    "a: 1\na: 2\n",
    "a: 1\r\nb: 2\r\n",
    "a:\tb\n",
    'a: "\\0"\n',
    "a: 1\n---\nb: 2\n",
    "<<: {a: 1}\n",
    "a: " + "[" * 70 + "]" * 70 + "\n",
    "a:\n" + "".join("  " * i + f"k{i}:\n" for i in range(1, 70)) + "  " * 70 + "v: 1\n",
]

TOKENS = [
    *("a", "b", "key", "1", "0", "-1", "1.5", "1e5", "0x1F", "0o17", "+5", "true", "Yes", "null", "~"),
    *(":", ": ", "- ", "\n", "\n  ", "\n    ", "\n- ", "\n  - ", "\n  a: ", "  ", " ", "#c", " #"),
    *("'q'", '"d"', "'", '"', "{", "}", "[", "]", ", ", ",", "=", "@", "`", "...", "--", "-", "x y"),
]


def _without_rs(text: str) -> Any:
    saved = yamlio.native
    yamlio.native = False
    try:
        return yamlio.load(text)
    finally:
        yamlio.native = saved


def _typed(value: Any) -> Any:
    """Equal only when values, their types and key order are all equal (``1 == 1.0 == True``)."""
    if isinstance(value, dict):
        return [(_typed(k), _typed(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    return (type(value).__name__, value)


def test_plain_environment_files_take_the_native_parser() -> None:
    # The path this decision is for: without it, a cold plan parses as slowly as before.
    # (A URL, `http://host:port`, has a `:` before a non-space: such a file takes the C path.)
    blueprint = BLUEPRINT.replace("http://", "").replace(":{{ vars.http_port }}", "")
    for text in (env_yaml("web", extra="  vars: {http_port: 8080, index: 7}\n"), blueprint):
        fast = yamlio._rs_load(text)
        assert fast is not yamlio._NOT_FAST
        assert _typed(fast) == _typed(yamlio._safe().load(text))


@pytest.mark.parametrize("text", DOCUMENTS + TRICKY)
def test_the_native_parser_builds_what_the_c_path_builds_or_leaves_the_file_to_it(text: str) -> None:
    assert _typed(yamlio.load(text)) == _typed(_without_rs(text))


def test_random_documents_load_alike_with_and_without_the_native_parser() -> None:
    rng = random.Random(11)
    taken = 0
    for _ in range(4000):
        body = "".join(rng.choice(TOKENS) for _ in range(rng.randint(1, 25)))
        for text in (body, f"a: {body}\n", f"a:\n  {body}\n"):
            if yamlio._rs_load(text) is not yamlio._NOT_FAST:
                taken += 1
            assert _typed(yamlio.load(text)) == _typed(_without_rs(text)), text
    assert taken > 200  # the comparison means something only if the native parser took some
