"""Label selectors of SPEC section 5: ``-l team=tracker,tier!=db``, as kubectl reads them.

A selector is a conjunction of requirements on ``metadata.labels``. ``key=value``
(or ``key==value``) wants the label with that value; ``key!=value`` wants it
absent or different. Only equality is offered: set-based forms (``in``,
``notin``, ``!key``) are refused by name rather than misread.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

#: What ``-l`` accepts, said in every refusal.
SELECTOR_SYNTAX = "key=value[,key=value...] (also key==value and key!=value)"

#: Labels are free-form strings (SPEC 2.1): a key only may not hold blanks or the selector's own signs.
_KEY = re.compile(r"^[^\s=!,]+$")


class SelectorError(ValueError):
    """A selector that is not ``key=value[,key=value...]``; the message says what would be accepted."""


@dataclass(frozen=True)
class Requirement:
    key: str
    value: str
    #: ``True`` for ``key=value``, ``False`` for ``key!=value``.
    equal: bool = True

    def matches(self, labels: Mapping[str, str]) -> bool:
        return (labels.get(self.key) == self.value) is self.equal

    def __str__(self) -> str:
        return f"{self.key}{'=' if self.equal else '!='}{self.value}"


@dataclass(frozen=True)
class Selector:
    """Every requirement must hold; the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def parse_selector(text: str) -> Selector:
    """``team=tracker,tier!=db`` as a :class:`Selector`; anything else raises :class:`SelectorError`."""
    if not text.strip():
        raise SelectorError(f"the selector is empty: use {SELECTOR_SYNTAX}")
    requirements: list[Requirement] = []
    for raw in text.split(","):
        part = raw.strip()
        if "!=" in part:
            key, _, value = part.partition("!=")
            equal = False
        elif "=" in part:
            key, _, value = part.partition("==" if "==" in part else "=")
            equal = True
        else:
            hint = " (set-based selectors are not supported)" if " " in part or part.startswith("!") else ""
            raise SelectorError(f"'{part}' in '{text}' has no '=': use {SELECTOR_SYNTAX}{hint}")
        key, value = key.strip(), value.strip()
        if not _KEY.match(key):
            shown = (
                f"the label key '{key}' may not hold blanks, '=' or '!'" if key else "the label key is empty"
            )
            raise SelectorError(f"'{part}' in '{text}': {shown}; use {SELECTOR_SYNTAX}")
        if "=" in value:
            raise SelectorError(f"'{part}' in '{text}' has more than one '=': use {SELECTOR_SYNTAX}")
        requirements.append(Requirement(key, value, equal))
    return Selector(tuple(requirements))


def select(
    names: Iterable[str], labels_of: Mapping[str, Mapping[str, str]], selector: Selector | None
) -> list[str]:
    """Those of ``names`` whose labels match, in order; a name without labels (no valid file) has none.

    ``None`` selects every name, labelled or not.
    """
    if selector is None:
        return list(names)
    return [n for n in names if selector.matches(labels_of.get(n, {}))]
