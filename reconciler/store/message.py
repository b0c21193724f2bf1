"""The state-branch commit message of SPEC section 4.1, written and read back.

The trailers make ``git log --grep 'Reconcile-Environment: web'`` one
environment's audit trail without this tool. The subject and the trailers are
the only lines built from data; free text (step names, error summaries,
reasons, an author's name) can never read as either:

- every body line is quoted with ``| `` (an empty one is ``|``), so the body
  is one paragraph that is never the last one, holds no blank line, and no
  line of it starts like ``Token: value`` (what ``git interpret-trailers``
  takes for a trailer) or can be taken for a second subject;
- ``Reconcile-<token>:`` (any case) in free text and in trailer values is
  written ``Reconcile\\-<token>:``, so no ``git log --grep
  'Reconcile-Environment: victim'`` ever matches text somebody else chose;
- control characters (newlines included) in a one-line value become spaces.

The reader copes with commits written before this (plain body paragraphs, no
``Reconcile-Actor`` or ``Reconcile-Event``).
"""

from __future__ import annotations

import getpass
import os
import re
import socket
from dataclasses import dataclass

SUBJECT_ARROW = " -> "
TRAILER_ENVIRONMENT = "Reconcile-Environment"
TRAILER_FROM = "Reconcile-From"
TRAILER_TO = "Reconcile-To"
TRAILER_DESIRED = "Reconcile-Desired-Commit"
TRAILER_HOLDER = "Reconcile-Holder"
TRAILER_ACTOR = "Reconcile-Actor"
TRAILER_EVENT = "Reconcile-Event"

#: ``Reconcile-Event`` of a commit that changes the state (SPEC 4.1).
TRANSITION = "transition"
#: Observations and operator actions recorded as commits of their own (SPEC 4.1).
OBSERVATION_EVENTS = ("drift", "in-sync", "suspend", "resume", "retry", "unlock")
EVENT_KINDS = (TRANSITION, *OBSERVATION_EVENTS)
#: The actor of recovery, drift healing and anything no person or commit asked for.
RECONCILER_ACTOR = "reconciler"

BODY_QUOTE = "|"
_CONTROL = re.compile(r"[\x00-\x1f\x7f\u0085\u2028\u2029]+")
#: ``Reconcile-<token>:`` anywhere in free text: what a ``--grep`` for one of our trailers would match.
_OURS = re.compile(r"(reconcile)-(?=[a-z0-9-]*\s*:)", re.IGNORECASE)
_ESCAPED = re.compile(r"(reconcile)\\-", re.IGNORECASE)
_STATE = re.compile(r"^[a-z_]{1,32}$")


def one_line(value: str) -> str:
    """``value`` as a single line of a message: control characters become spaces, ours escaped."""
    return _OURS.sub(r"\1\\-", _CONTROL.sub(" ", value)).strip()


def quote_body(text: str) -> list[str]:
    """Free text as body lines that can be neither a trailer, a subject nor a paragraph break."""
    lines = []
    for raw in text.strip("\n").splitlines():
        line = _OURS.sub(r"\1\\-", _CONTROL.sub(" ", raw)).rstrip()
        lines.append(f"{BODY_QUOTE} {line}" if line else BODY_QUOTE)
    return lines


def unquote_body(paragraphs: list[str]) -> str | None:
    """The free text of body ``paragraphs`` (quoted by ``quote_body``, or plain in older commits)."""
    text = "\n\n".join(paragraphs).strip("\n")
    if not text.strip():
        return None
    lines = text.splitlines()
    if all(line == BODY_QUOTE or line.startswith(BODY_QUOTE + " ") for line in lines):
        lines = [line[2:] for line in lines]
        return unescape("\n".join(lines)).strip() or None
    return text.strip()


def unescape(value: str) -> str:
    return _ESCAPED.sub(r"\1-", value)


def _single(label: str, value: str) -> str:
    if not value or _CONTROL.search(value) or value != value.strip():
        raise ValueError(f"{label} must be one non-empty line, not {value!r}")
    return value


@dataclass(frozen=True)
class TransitionMessage:
    """One state-branch commit's message: a transition (``from != to``) or an observation."""

    name: str
    from_state: str
    to_state: str
    desired_commit: str | None
    holder: str
    detail: str | None = None
    #: Who caused it (SPEC 4.1); ``None`` only for commits written before the trailer existed.
    actor: str | None = None
    #: ``transition`` or an observation's kind; older commits without the trailer read as ``transition``.
    event: str = TRANSITION

    def format(self) -> str:
        name = _single("an environment name", self.name)
        if any(c.isspace() or c == ":" for c in name):
            raise ValueError(f"an environment name holds no space or colon, not {name!r}")
        for label, state in (("from", self.from_state), ("to", self.to_state)):
            if not _STATE.match(state):
                raise ValueError(f"{label} state must be a state name, not {state!r}")
        if self.event not in EVENT_KINDS:
            raise ValueError(f"event must be one of {', '.join(EVENT_KINDS)}, not {self.event!r}")
        lines = [f"{name}: {self.from_state}{SUBJECT_ARROW}{self.to_state}", ""]
        if self.detail and self.detail.strip():
            lines += [*quote_body(self.detail), ""]
        lines += [
            f"{TRAILER_ENVIRONMENT}: {name}",
            f"{TRAILER_FROM}: {self.from_state}",
            f"{TRAILER_TO}: {self.to_state}",
        ]
        if self.desired_commit:
            lines.append(f"{TRAILER_DESIRED}: {one_line(self.desired_commit)}")
        lines.append(f"{TRAILER_HOLDER}: {one_line(self.holder) or '-'}")
        lines.append(f"{TRAILER_ACTOR}: {one_line(self.actor or RECONCILER_ACTOR) or RECONCILER_ACTOR}")
        lines.append(f"{TRAILER_EVENT}: {self.event}")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, message: str) -> TransitionMessage | None:
        """Read a state-branch commit's message; ``None`` for any other commit."""
        paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
        if len(paragraphs) < 2:
            return None
        trailers: dict[str, str] = {}
        for line in paragraphs[-1].splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                trailers.setdefault(key.strip(), value.strip())
        try:
            name = trailers[TRAILER_ENVIRONMENT]
            from_state = trailers[TRAILER_FROM]
            to_state = trailers[TRAILER_TO]
        except KeyError:
            return None
        actor = trailers.get(TRAILER_ACTOR)
        return cls(
            name=name,
            from_state=from_state,
            to_state=to_state,
            desired_commit=trailers.get(TRAILER_DESIRED),
            holder=unescape(trailers.get(TRAILER_HOLDER, "")),
            detail=unquote_body(paragraphs[1:-1]),
            actor=None if actor is None else unescape(actor),
            event=trailers.get(TRAILER_EVENT, TRANSITION),
        )


def person() -> str:
    """``<user>@<host>``: the actor of what a person ran by hand (SPEC 4.1)."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = f"uid{os.getuid()}"
    return one_line(f"{user}@{socket.gethostname()}")


def author_actor(name: str, email: str) -> str:
    """The actor of what was planned from a desired commit: its author as ``Name <email>``."""
    return one_line(f"{name} <{email}>")
