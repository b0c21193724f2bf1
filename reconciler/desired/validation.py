"""Pydantic's errors, translated into ``path:line:col: message`` refusals.

Each message names the field as the YAML spells it and, where the set is
finite, what would have been accepted.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from reconciler.desired import yamlio
from reconciler.desired.models import ENV_NAME_PATTERN, MAX_SECONDS, NAME_PATTERN, Phases, Step
from reconciler.desired.resolved import Problem
from reconciler.desired.yamlio import field_path

M = TypeVar("M", bound=BaseModel)
__all__ = ["field_path", "validate"]


def _real_loc(data: Any, loc: Sequence[str | int]) -> tuple[str | int, ...]:
    """The part of pydantic's ``loc`` that exists in the document (union tags dropped)."""
    node = data
    found: list[str | int] = []
    for part in loc:
        in_map = isinstance(node, dict) and not isinstance(part, int) and part in node
        if in_map or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
            found.append(part)
    return tuple(found)


def _candidates(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin is Union or origin is types.UnionType:
        out: list[Any] = []
        for arg in get_args(annotation):
            out.extend(_candidates(arg))
        return out
    if origin is not None and str(origin).endswith("Annotated"):
        return _candidates(get_args(annotation)[0])
    return [annotation]


def _model_at(root: type[BaseModel], loc: Sequence[str | int]) -> type[BaseModel] | None:
    """The model class describing the mapping at ``loc``, if it is one."""
    current: list[Any] = [root]
    for part in loc:
        nxt: list[Any] = []
        for t in current:
            for cand in _candidates(t):
                origin = get_origin(cand)
                if isinstance(part, int) and origin is list:
                    nxt.extend(_candidates(get_args(cand)[0]))
                elif isinstance(part, str) and isinstance(cand, type) and issubclass(cand, BaseModel):
                    for name, info in cand.model_fields.items():
                        if (info.alias or name) == part:
                            nxt.extend(_candidates(info.annotation))
                elif isinstance(part, str) and origin is dict:
                    nxt.extend(_candidates(get_args(cand)[1]))
        current = nxt
    for t in current:
        for cand in _candidates(t):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                return cand
    return None


def _aliases(model: type[BaseModel]) -> list[str]:
    return [info.alias or name for name, info in model.model_fields.items()]


def _describe_error(root: type[BaseModel], data: Any, error: Any) -> tuple[tuple[str | int, ...], bool, str]:
    """(where, points-at-key, message) for one pydantic error."""
    loc: tuple[str | int, ...] = tuple(error["loc"])
    kind = error["type"]
    real = _real_loc(data, loc)
    if kind == "extra_forbidden":
        parent = _model_at(root, real[:-1])
        name = str(real[-1]) if real else str(loc[-1])
        accepted = ", ".join(_aliases(parent)) if parent else ""
        if parent is Phases:
            return real, True, f"unknown phase `{name}` in `{field_path(real[:-1])}`; accepted: {accepted}"
        if parent is Step:
            return (
                real,
                True,
                f"unknown step type `{name}` in `{field_path(real[:-1])}`; a step is one of: "
                "shell, tofu, ansible, http (optionally with name, reapply)",
            )
        return real, True, f"unknown field `{field_path(real)}`; accepted here: {accepted}"
    if kind == "missing":
        return real, False, f"missing required field `{field_path(loc)}`"
    msg = str(error["msg"]).replace("a valid dictionary or instance of SecretRef", "a secret {fromEnv: NAME}")
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "string_pattern_mismatch" and NAME_PATTERN in msg:
        msg = (
            "a name is 2-63 lowercase letters, digits and '-', starting with a letter and not ending with '-'"
        )
    if kind == "string_pattern_mismatch" and ENV_NAME_PATTERN in msg:
        msg = (
            "an environment variable name is letters, digits and '_', not starting with a digit "
            "(no '=', space or empty name)"
        )
    if kind == "int_parsing_size":
        msg = "Input should be an integer that fits 64 bits"
    if real and isinstance(real[-1], str) and real[-1].endswith("Seconds") and kind != "missing":
        msg += f"; accepted: a duration in seconds, at most {MAX_SECONDS} (7 days)"
    got = error.get("input")
    if kind not in ("model_type", "dict_type", "list_type") and not isinstance(got, dict | list):
        shown = repr(got)
        msg += f" (got {shown[:80]}{'...' if len(shown) > 80 else ''})"
    return real, False, f"`{field_path(real)}`: {msg}"


def _merge_messages(messages: Iterable[str]) -> str:
    """Join the errors of one union field: ``should be a valid string, or a valid integer``."""
    distinct = list(dict.fromkeys(messages))
    if len(distinct) == 1:
        return distinct[0]
    head = distinct[0]
    rest = [m.split("`: ", 1)[-1].removeprefix("Input should be ") for m in distinct[1:]]
    return head + ", or " + ", or ".join(rest)


def validate(
    model: type[M], data: Any, text: str, path: str, *, environment: str | None = None
) -> M | list[Problem]:
    """The model, or every refusal located in ``text``."""
    if not isinstance(data, dict):
        fields = ", ".join(_aliases(model))
        return [
            Problem(path, 1, 1, f"the file must be a YAML mapping with the fields: {fields}", environment)
        ]
    try:
        return model.model_validate(data)
    except ValidationError as e:
        groups: dict[tuple[tuple[str | int, ...], bool], list[str]] = {}
        for error in e.errors(include_url=False):
            real, key, message = _describe_error(model, data, error)
            groups.setdefault((real, key), []).append(message)
        problems = []
        for (real, key), messages in groups.items():
            line, col, _ = yamlio.locate(text, real, key=key)
            problems.append(Problem(path, line, col, _merge_messages(messages), environment))
        return sorted(problems, key=lambda p: (p.line, p.col))
