"""The transition commit message of SPEC section 4.1, written and read back.

The trailers make ``git log --grep 'Reconcile-Environment: web'`` one
environment's audit trail without this tool.
"""

from __future__ import annotations

from dataclasses import dataclass

SUBJECT_ARROW = " -> "
TRAILER_ENVIRONMENT = "Reconcile-Environment"
TRAILER_FROM = "Reconcile-From"
TRAILER_TO = "Reconcile-To"
TRAILER_DESIRED = "Reconcile-Desired-Commit"
TRAILER_HOLDER = "Reconcile-Holder"


@dataclass(frozen=True)
class TransitionMessage:
    name: str
    from_state: str
    to_state: str
    desired_commit: str | None
    holder: str
    detail: str | None = None

    def format(self) -> str:
        lines = [f"{self.name}: {self.from_state}{SUBJECT_ARROW}{self.to_state}", ""]
        if self.detail and self.detail.strip():
            lines += [self.detail.strip(), ""]
        lines += [
            f"{TRAILER_ENVIRONMENT}: {self.name}",
            f"{TRAILER_FROM}: {self.from_state}",
            f"{TRAILER_TO}: {self.to_state}",
        ]
        if self.desired_commit:
            lines.append(f"{TRAILER_DESIRED}: {self.desired_commit}")
        lines.append(f"{TRAILER_HOLDER}: {self.holder}")
        return "\n".join(lines) + "\n"

    @classmethod
    def parse(cls, message: str) -> TransitionMessage | None:
        """Read a transition commit's message; ``None`` for any other commit."""
        paragraphs = [p for p in message.strip().split("\n\n") if p.strip()]
        if len(paragraphs) < 2:
            return None
        trailers: dict[str, str] = {}
        for line in paragraphs[-1].splitlines():
            key, sep, value = line.partition(": ")
            if sep:
                trailers[key.strip()] = value.strip()
        try:
            name = trailers[TRAILER_ENVIRONMENT]
            from_state = trailers[TRAILER_FROM]
            to_state = trailers[TRAILER_TO]
        except KeyError:
            return None
        detail = "\n\n".join(paragraphs[1:-1]).strip() or None
        return cls(
            name=name,
            from_state=from_state,
            to_state=to_state,
            desired_commit=trailers.get(TRAILER_DESIRED),
            holder=trailers.get(TRAILER_HOLDER, ""),
            detail=detail,
        )
