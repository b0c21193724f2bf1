"""``validate``'s warning for ``tofu`` modules without a remote backend (SPEC section 8).

A ``tofu`` step keeps its OpenTofu state in the environment's working
directory under the data dir of the host that ran it. With one daemon that is
enough; with several (each on its own clone, sharing ``remote``), a phase may
run on any of them, and each host would hold its own state of the same
resources. So when ``reconciler.yaml`` sets ``remote``, ``validate`` warns for
every ``tofu`` step whose module declares no backend other than ``local``: no
``terraform { backend "TYPE" {...} }`` (nor ``terraform { cloud {...} }``) in
any ``*.tf`` or ``*.tf.json`` file directly in the module's directory at the
commit checked. A warning never fails ``validate`` (docs/scale-out.md).

The ``*.tf`` reader is a small scanner, not an HCL parser: it skips comments,
strings (with their ``${...}`` templates) and heredocs, and follows block
nesting, which is all it takes to find a ``backend`` block's type.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reconciler.desired import yamlio
from reconciler.desired.models import TofuStep
from reconciler.desired.resolved import DesiredSnapshot, PhaseOrCheck, Problem, ResolvedEnvironment
from reconciler.desired.sources import FileEntry, PathEscape, TreeSource, check_repo_path, normalize
from reconciler.desired.templating import is_template
from reconciler.domain.states import Phase

#: The backend that keeps state on the host running tofu: not shared between daemons.
LOCAL_BACKEND = "local"
#: ``terraform { cloud {...} }``: HCP Terraform / Terraform Enterprise, a remote state store.
CLOUD_BLOCK = "cloud"

_PHASES: tuple[PhaseOrCheck, ...] = (*Phase, "check")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_HEREDOC = re.compile(r"<<(-?)([A-Za-z_][A-Za-z0-9_-]*)[ \t]*\r?\n")


# -- reading a module --------------------------------------------------------------------


@dataclass(frozen=True)
class _Token:
    kind: str  # "ident", "string", "{", "}", "(", ")", "[", "]", "\n", "="
    value: str = ""


def _skip_template(text: str, i: int) -> int:
    """From just after ``${`` or ``%{``: the index after the matching ``}`` (nested strings skipped)."""
    depth = 1
    while i < len(text) and depth:
        c = text[i]
        if c == '"':
            _, i = _string(text, i)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        i += 1
    return i


def _string(text: str, i: int) -> tuple[str, int]:
    """From an opening quote: the literal text (templates left out) and the index after the closing one."""
    out: list[str] = []
    i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            out.append(text[i + 1 : i + 2])
            i += 2
            continue
        if c in {'"', "\n"}:
            return "".join(out), i + 1
        if c in "$%" and text.startswith("{", i + 1):
            if text.startswith(c, i - 1) and out and out[-1] == c:  # $${ and %%{ are literal
                out.append("{")
                i += 2
                continue
            i = _skip_template(text, i + 2)
            continue
        out.append(c)
        i += 1
    return "".join(out), i


def _tokens(text: str) -> Iterator[_Token]:
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "#" or text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        elif c == '"':
            value, i = _string(text, i)
            yield _Token("string", value)
        elif c == "<" and (heredoc := _HEREDOC.match(text, i)) is not None:
            marker = heredoc.group(2)
            i = heredoc.end()
            while i < n:
                end = text.find("\n", i)
                line = text[i:] if end < 0 else text[i:end]
                i = n if end < 0 else end + 1
                if line.strip() == marker:
                    break
            yield _Token("string")
            yield _Token("\n")
        elif c in "{}()[]\n=":
            yield _Token(c)
            i += 1
        elif (ident := _IDENT.match(text, i)) is not None:
            yield _Token("ident", ident.group())
            i = ident.end()
        else:
            i += 1


def hcl_backends(text: str) -> list[str]:
    """The state backends a ``*.tf`` file's ``terraform`` blocks declare (``cloud`` for a cloud block)."""
    found: list[str] = []
    #: Open brackets: the block's type and labels, or ``None`` for an expression (an object, a list, a call).
    stack: list[tuple[str, ...] | None] = []
    header: list[_Token] = []
    for token in _tokens(text):
        in_body = not stack or stack[-1] is not None
        if token.kind == "\n":
            if in_body:
                header = []
            continue
        if token.kind in "([":
            stack.append(None)
            header = []
        elif token.kind in ")]}":
            if stack:
                stack.pop()
            header = []
        elif token.kind == "{":
            block: tuple[str, ...] | None = None
            if (
                in_body
                and header
                and header[0].kind == "ident"
                and all(t.kind in ("ident", "string") for t in header[1:])
            ):
                block = tuple(t.value for t in header)
            if block is not None and stack == [("terraform",)]:
                if block[0] == "backend" and len(block) == 2:
                    found.append(block[1])
                elif block == (CLOUD_BLOCK,):
                    found.append(CLOUD_BLOCK)
            stack.append(block)
            header = []
        else:
            header.append(token)
    return found


def _json_blocks(value: Any) -> list[dict[str, Any]]:
    """A JSON block value: one object or a list of them."""
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, dict)]
    return []


def json_backends(text: str) -> list[str]:
    """The state backends a ``*.tf.json`` file declares (``{"terraform": {"backend": {"s3": {...}}}}``)."""
    try:
        document = json.loads(text)
    except ValueError:
        return []
    found: list[str] = []
    for terraform in _json_blocks(document.get("terraform") if isinstance(document, dict) else None):
        for backend in _json_blocks(terraform.get("backend")):
            found.extend(str(kind) for kind in backend)
        if terraform.get(CLOUD_BLOCK) is not None:
            found.append(CLOUD_BLOCK)
    return found


@dataclass(frozen=True)
class ModuleBackends:
    """What a module directory declares: its ``*.tf``/``*.tf.json`` files and their backends."""

    files: int
    backends: tuple[str, ...]

    @property
    def remote(self) -> bool:
        return any(b != LOCAL_BACKEND for b in self.backends)


def module_backends(source: TreeSource, module: str) -> ModuleBackends:
    """Read every ``*.tf`` and ``*.tf.json`` file directly in ``module`` (in-repo symlinks followed)."""
    files = 0
    backends: list[str] = []
    for entry in source.entries(module):
        hcl = entry.name.endswith(".tf")
        if not hcl and not entry.name.endswith(".tf.json"):
            continue
        path = f"{module}/{entry.name}" if module != "." else entry.name
        target = entry
        if entry.is_link:
            try:
                oid = source.object_id(path)
            except PathEscape:
                continue
            if oid is None:
                continue
            target = FileEntry(entry.name, oid)
        try:
            text = source.read(path, target).decode("utf-8", "replace")
        except (OSError, KeyError, ValueError, AssertionError):
            continue  # a dangling link, or a link to a directory: not a file tofu reads
        files += 1
        backends.extend(hcl_backends(text) if hcl else json_backends(text))
    return ModuleBackends(files, tuple(backends))


# -- the warnings ----------------------------------------------------------------------


def _origin(env: ResolvedEnvironment, phase: PhaseOrCheck) -> str:
    """The file that declares ``env``'s steps of ``phase``: its own, or its blueprint's."""
    if env.spec.phases.get(phase) is not None or env.spec.blueprint is None:
        return env.path
    return f"blueprints/{env.spec.blueprint}.yaml"


def _text(source: TreeSource, path: str, texts: dict[str, str | None]) -> str | None:
    if path not in texts:
        directory, _, name = path.rpartition("/")
        texts[path] = None
        for entry in source.entries(directory):
            if entry.name == name and not entry.is_link:
                decoded = yamlio.decode(source.read(path, entry))
                texts[path] = decoded if isinstance(decoded, str) else None
    return texts[path]


def backend_warnings(source: TreeSource, snapshot: DesiredSnapshot) -> list[Problem]:
    """With ``remote`` set: one warning per ``tofu`` step (where it is written) whose module shares no state.

    Only modules named by a plain path are looked at (a templated ``module``
    depends on the environment and its outputs), and only valid environments.
    A module directory without any ``*.tf`` file is left to fail on its own.
    """
    remote = snapshot.config.remote
    if remote is None:
        return []
    modules: dict[str, ModuleBackends] = {}
    texts: dict[str, str | None] = {}
    warnings: dict[tuple[str, tuple[str | int, ...]], Problem] = {}
    for name in sorted(snapshot.environments):
        env = snapshot.environments[name]
        for phase in _PHASES:
            for i, step in enumerate(env.steps(phase)):
                body = step.body
                if not isinstance(body, TofuStep):
                    continue
                if is_template(body.module) or check_repo_path(body.module) is not None:
                    continue
                module = normalize(body.module)
                path = _origin(env, phase)
                loc: tuple[str | int, ...] = ("spec", "phases", str(phase), i, "tofu", "module")
                if (path, loc) in warnings:
                    continue
                if module not in modules:
                    modules[module] = module_backends(source, module)
                found = modules[module]
                if found.files == 0 or found.remote:
                    continue
                text = _text(source, path, texts)
                line, col = (yamlio.locate(text, loc)[:2]) if text is not None else (1, 1)
                declared = (
                    f'declares only backend "{LOCAL_BACKEND}"'
                    if found.backends
                    else 'declares no backend (no `terraform { backend "..." {} }` in its *.tf files)'
                )
                message = (
                    f"`tofu.module` {body.module!r} {declared}: with `remote: {remote}` several daemons "
                    "may run this step, each keeping its own OpenTofu state in its data dir; declare a "
                    "shared backend (s3, gcs, azurerm, http, pg, ...) in the module (docs/scale-out.md)"
                )
                owner = name if path == env.path else None
                warnings[(path, loc)] = Problem(path, line, col, message, owner)
    return sorted(warnings.values(), key=lambda p: (p.path, p.line, p.col))
