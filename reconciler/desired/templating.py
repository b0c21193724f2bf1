"""Jinja2 in a sandbox for step fields, and ``{fromEnv: NAME}`` secrets (SPEC section 2.3).

Every string field of a step except ``shell.run`` may use ``{{ environment.name }}``,
``{{ vars.X }}`` and ``{{ outputs.X }}``; any other name is an error, never an
empty string. ``shell.run`` is never rendered, so no declared value can inject
shell syntax. Secrets are read from the reconciler's environment at render
time and handed back so the runner can redact them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2 import TemplateError as JinjaTemplateError
from jinja2.meta import find_undeclared_variables
from jinja2.sandbox import SandboxedEnvironment

from reconciler.desired.models import SecretRef, Step
from reconciler.desired.validation import field_path

#: The names a template may use.
TEMPLATE_NAMES = frozenset({"environment", "vars", "outputs"})
_MARKERS = ("{{", "{%", "{#")
#: ``shell.run`` and ``shell.check`` are commands: never rendered, so no value can inject shell syntax.
_NEVER_RENDERED = frozenset({("shell", "run"), ("shell", "check")})

_jinja = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)

Loc = tuple[str | int, ...]


class TemplateError(Exception):
    """A step field that cannot be rendered: the field and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True)
class RenderedStep:
    """A step ready to run, and the secret values it now holds (to redact from output)."""

    step: Step
    secrets: frozenset[str]


def is_template(value: str) -> bool:
    return any(m in value for m in _MARKERS)


def _secret_name(value: Any) -> str | None:
    if isinstance(value, SecretRef):
        return value.from_env
    if isinstance(value, dict) and set(value) == {"fromEnv"} and isinstance(value["fromEnv"], str):
        return value["fromEnv"]
    return None


def _resolve(value: Any, environ: Mapping[str, str], field: str, secrets: set[str]) -> Any:
    name = _secret_name(value)
    if name is not None:
        if name not in environ:
            raise TemplateError(
                field, f"the environment variable {name} is not set (the value is {{fromEnv: {name}}})"
            )
        secrets.add(environ[name])
        return environ[name]
    if isinstance(value, dict):
        return {k: _resolve(v, environ, f"{field}.{k}", secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, environ, f"{field}[{i}]", secrets) for i, v in enumerate(value)]
    return value


def resolve_vars(
    vars: Mapping[str, Any], environ: Mapping[str, str]
) -> tuple[dict[str, Any], frozenset[str]]:
    """Vars with every ``{fromEnv: NAME}`` replaced by its value, and the set of those values."""
    secrets: set[str] = set()
    out = {k: _resolve(v, environ, f"vars.{k}", secrets) for k, v in vars.items()}
    return out, frozenset(s for s in secrets if s)


def _render_tree(value: Any, loc: Loc, context: Mapping[str, Any]) -> Any:
    if isinstance(value, str):
        if loc in _NEVER_RENDERED or not is_template(value):
            return value
        try:
            return _jinja.from_string(value).render(context)
        except JinjaTemplateError as e:
            raise TemplateError(field_path(loc), str(e.message or e)) from e
    if isinstance(value, dict):
        return {k: _render_tree(v, (*loc, k), context) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, (*loc, i), context) for i, v in enumerate(value)]
    return value


def render_step(
    step: Step,
    *,
    environment: str,
    vars: Mapping[str, Any],
    outputs: Mapping[str, str],
    environ: Mapping[str, str],
) -> RenderedStep:
    """The step with its templates rendered and its secrets resolved."""
    resolved_vars, secrets = resolve_vars(vars, environ)
    found: set[str] = set(secrets)
    data = step.model_dump(by_alias=True, exclude_none=True)
    data = _resolve(data, environ, "step", found)
    context = {"environment": {"name": environment}, "vars": resolved_vars, "outputs": dict(outputs)}
    rendered = _render_tree(data, (), context)
    return RenderedStep(Step.model_validate(rendered), frozenset(s for s in found if s))


def _strings(value: Any, loc: Loc) -> list[tuple[Loc, str]]:
    if isinstance(value, str):
        return [] if loc in _NEVER_RENDERED else [(loc, value)]
    if isinstance(value, dict):
        return [item for k, v in value.items() for item in _strings(v, (*loc, k))]
    if isinstance(value, list):
        return [item for i, v in enumerate(value) for item in _strings(v, (*loc, i))]
    return []


def _var_refs(ast: nodes.Template, root: str) -> tuple[set[str], bool]:
    """Attributes read from ``root``, and whether ``root`` is also used some other way."""
    names: set[str] = set()
    direct = 0
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        target = getattr(node, "node", None)
        if not (isinstance(target, nodes.Name) and target.name == root):
            continue
        if isinstance(node, nodes.Getattr):
            names.add(node.attr)
            direct += 1
        elif (
            isinstance(node, nodes.Getitem)
            and isinstance(node.arg, nodes.Const)
            and isinstance(node.arg.value, str)
        ):
            names.add(node.arg.value)
            direct += 1
    total = sum(1 for n in ast.find_all(nodes.Name) if n.name == root)
    return names, total > direct


@dataclass(frozen=True)
class _Analysis:
    """What a template reads, found once per distinct template text."""

    syntax_error: str | None = None
    unknown: tuple[str, ...] = ()
    environment_attrs: frozenset[str] = frozenset()
    vars_used: frozenset[str] = frozenset()
    vars_whole: bool = False
    #: Attribute names the sandbox refuses (``__class__``, ``_private``): an escape attempt or a typo.
    unsafe: tuple[str, ...] = ()


@lru_cache(maxsize=4096)
def _analyse(text: str) -> _Analysis:
    try:
        ast = _jinja.parse(text)
    except TemplateSyntaxError as e:
        return _Analysis(syntax_error=f"invalid template syntax: {e.message} (template line {e.lineno})")
    env_attrs, _ = _var_refs(ast, "environment")
    used, whole = _var_refs(ast, "vars")
    unknown = tuple(sorted(find_undeclared_variables(ast) - TEMPLATE_NAMES))
    return _Analysis(None, unknown, frozenset(env_attrs), frozenset(used), whole, _unsafe_names(ast))


def _unsafe_names(ast: nodes.Template) -> tuple[str, ...]:
    """Names read as ``.x``, ``["x"]`` or ``|attr("x")`` that start with ``_`` (refused when rendered)."""
    found: set[str] = set()
    for node in ast.find_all((nodes.Getattr, nodes.Getitem, nodes.Filter)):
        if isinstance(node, nodes.Getattr):
            names = [node.attr]
        elif isinstance(node, nodes.Getitem):
            names = [node.arg.value] if isinstance(node.arg, nodes.Const) else []
        elif isinstance(node, nodes.Filter) and node.name == "attr":
            names = [a.value for a in node.args if isinstance(a, nodes.Const)]
        else:
            names = []
        found.update(n for n in names if isinstance(n, str) and n.startswith("_"))
    return tuple(sorted(found))


def _templates(step: Step) -> list[tuple[Loc, _Analysis]]:
    """Each templated field of the step with what its template reads."""
    data = step.model_dump(by_alias=True, exclude_none=True)
    return [(loc, _analyse(text)) for loc, text in _strings(data, ()) if is_template(text)]


def step_templates(step: Step) -> tuple[tuple[Loc, _Analysis], ...]:
    """Each templated field of the step with what its template reads (the loader keeps it per step)."""
    return tuple(_templates(step))


def template_issues(step: Step, declared_vars: Collection[str] | None = None) -> list[tuple[Loc, str]]:
    """Static checks of a step's templates, each with the field it is about (relative to the step)."""
    return issues_of(_templates(step), declared_vars)


def issues_of(
    templates: Collection[tuple[Loc, _Analysis]], declared_vars: Collection[str] | None = None
) -> list[tuple[Loc, str]]:
    """``template_issues`` from the step's ``step_templates``."""
    issues: list[tuple[Loc, str]] = []
    for loc, found in templates:
        where = f"`{field_path(loc)}`"
        if found.syntax_error is not None:
            issues.append((loc, f"{where}: {found.syntax_error}"))
            continue
        if found.unknown:
            issues.append(
                (
                    loc,
                    f"{where}: the template uses {', '.join(found.unknown)}; only environment.name, "
                    "vars.NAME and outputs.NAME are available",
                )
            )
        if found.unsafe:
            issues.append(
                (
                    loc,
                    f"{where}: the template reads {', '.join(found.unsafe)}, which the sandbox refuses; "
                    "only environment.name, vars.NAME and outputs.NAME are available",
                )
            )
        if found.environment_attrs - {"name"}:
            bad = ", ".join(f"environment.{a}" for a in sorted(found.environment_attrs - {"name"}))
            issues.append((loc, f"{where}: {bad} is not defined; environment has only `name`"))
        if declared_vars is not None:
            missing = sorted(found.vars_used - set(declared_vars))
            if missing:
                have = ", ".join(sorted(declared_vars)) or "none"
                issues.append(
                    (
                        loc,
                        f"{where}: {', '.join('vars.' + m for m in missing)} is not declared in "
                        f"spec.vars of the environment or its blueprint (declared: {have})",
                    )
                )
    return issues


def template_problems(step: Step, declared_vars: Collection[str] | None = None) -> list[str]:
    """What ``validate`` reports about a step's templates before anything runs."""
    return [message for _, message in template_issues(step, declared_vars)]


def referenced_vars(steps: Collection[Step]) -> frozenset[str] | None:
    """The vars the steps' templates read, or ``None`` when they may read any (``vars`` used whole)."""
    return vars_of([step_templates(step) for step in steps])


def vars_of(templates: Collection[Collection[tuple[Loc, _Analysis]]]) -> frozenset[str] | None:
    """``referenced_vars`` from each step's ``step_templates``."""
    names: set[str] = set()
    for step in templates:
        for _, found in step:
            if found.syntax_error is not None:
                continue
            if found.vars_whole:
                return None
            names |= found.vars_used
    return frozenset(names)
