"""``--shard I/N`` (SPEC section 8): which environments one of N daemons takes.

An environment belongs to shard ``I`` of ``N`` when the first 8 bytes of the
SHA-256 of its UTF-8 name, read as a big-endian unsigned integer, are ``I``
modulo ``N``. Pure: every replica, whatever its version or host, computes the
same owner for the same name, so a name is never owned by two daemons that
agree on ``N`` (docs/scale-out.md).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

#: The most shards ``--shard`` accepts: far more daemons than one remote's state branch serves well.
MAX_SHARDS = 65536

_SHARD = re.compile(r"([0-9]{1,6})/([0-9]{1,6})")


def shard_of(name: str, count: int) -> int:
    """The shard (``0 <= I < count``) that owns environment ``name``."""
    if count < 1:
        raise ValueError(f"a shard count must be at least 1 (got {count})")
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % count


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``; ``Shard(0, 1)`` owns every name."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 1 <= self.count <= MAX_SHARDS or not 0 <= self.index < self.count:
            raise ValueError(_expected(f"{self.index}/{self.count}"))

    def owns(self, name: str) -> bool:
        return self.count == 1 or shard_of(name, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


#: What a daemon without ``--shard`` takes: everything (the compare-and-swap decides who acts).
EVERYTHING = Shard(0, 1)


def _expected(value: str) -> str:
    return (
        f"invalid shard '{value}': expected I/N with N from 1 to {MAX_SHARDS} and I from 0 to N-1 "
        "(0-based), e.g. 0/3, 1/3, 2/3 for three daemons"
    )


def parse_shard(value: str) -> Shard:
    """``"1/3"`` -> ``Shard(1, 3)``; anything else raises ``ValueError`` saying what is accepted."""
    match = _SHARD.fullmatch(value.strip())
    if match is None:
        raise ValueError(_expected(value))
    index, count = int(match.group(1)), int(match.group(2))
    if not 1 <= count <= MAX_SHARDS or not 0 <= index < count:
        raise ValueError(_expected(value))
    return Shard(index, count)
