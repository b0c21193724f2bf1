"""What one CLI run learned about the desired state, kept for the next one (docs/decisions/017).

A blob id fully determines its parse, and an environment's phase hashes are
determined by its file's blob, its blueprint's blob and the object ids of the
paths its steps reference. So the cache holds plain values only, keyed by
git object ids:

- ``docs``: ``kind:blob id`` -> the YAML document of a file that parsed and
  passed its schema (the model is validated again from it, never unpickled);
- ``resolved``: ``stem, file blob, blueprint blob`` -> the phase hashes and
  every repository path probed with the object id found, reused only when each
  path still has that id;
- ``plans``: environment name -> the plan ``reconcile plan`` decided for it, with
  what it was decided from (content ids: ``planner.plan.KeptPlans``), opaque here.

It lives in one file under the git dir (``reconciler/plan-cache.marshal``,
beside the events index): a plan needs no data dir, and every worktree and
CI checkout of a repository shares it. It is only a cache: a file that is
missing, unreadable, corrupt, from another version of the code, or half
written is ignored (and rewritten at the end of the run); it is replaced
atomically (a temporary file renamed over it), so concurrent runs leave one
complete file or the other. Only the entries a run used are written, so it
holds one working set, not the history; and it is written only when enough of
it changed (``REWRITE_SHARE``): after a change of a few files in a fleet those
few are parsed again by the next runs rather than the whole file written.
"""

from __future__ import annotations

import hashlib
import logging
import marshal
import os
import sys
import tempfile
import zlib
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

#: Under the git dir, beside the events index.
CACHE_DIR = "reconciler"
CACHE_FILE = "plan-cache.marshal"
#: The file is written again when at least one entry in this many changed (or was not used).
REWRITE_SHARE = 64
#: Bumped when the layout of the file changes.
FORMAT = 3
#: Then a CRC-32 of the payload: the file is replaced whole (a rename), so the check is for damage.
_MAGIC = b"RPC\x02"
#: The modules whose code decides what a file parses to, what a phase hashes to, how a state
#: reads and what is planned from them (paths under the package).
_DECIDING = (
    *(f"desired/{name}" for name in ("hashing", "loader", "models", "templating", "validation", "yamlio")),
    "desired/sources",
    *(f"domain/{name}" for name in ("erased", "environment", "states", "values")),
    "planner/plan",
    "planner/suspension",
    "planner/model",
    "store/git",
    "store/loose",
    "cli/kept_plans",
)

Document = Any
#: ``(phase hashes as (phase, hash) pairs, probed paths as (path, object id or None) pairs)``.
Resolution = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str | None], ...]]
#: Per environment of a helper's half: file blob id, blueprint name, blueprint key (its blob id, or its
#: name when it has none), ``dependsOn``, phase hashes and probed paths (``loader._deferred``).
HelperFacts = tuple[
    str,
    str | None,
    str | None,
    tuple[str, ...],
    tuple[tuple[str, str], ...],
    tuple[tuple[str, str | None], ...],
]
#: What a plan was decided from and the plan, as plain values (``cli.kept_plans``).
KeptPlan = Any


def _fingerprint() -> str:
    """Changes whenever the code or the libraries that parse and hash could give another result."""
    import pydantic
    import ruamel.yaml

    from reconciler import __version__

    parts = [str(FORMAT), __version__, pydantic.VERSION, ruamel.yaml.__version__, sys.version]
    here = Path(__file__).parent.parent
    for name in _DECIDING:
        try:
            info = (here / f"{name}.py").stat()
            parts.append(f"{name}:{info.st_size}:{info.st_mtime_ns}")
        except OSError:
            parts.append(f"{name}:?")
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


class PlanCache:
    """The on-disk cache of one repository: read once when opened, written once by ``save``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fingerprint = _fingerprint()
        self._docs: dict[str, Document] = {}
        self._resolved: dict[str, Resolution] = {}
        #: What this run used or learned: what ``save`` writes.
        self._used_docs: dict[str, Document] = {}
        self._used_resolved: dict[str, Resolution] = {}
        self._plans: dict[str, KeptPlan] = {}
        self._used_plans: dict[str, KeptPlan] = {}
        self._refs: dict[tuple[tuple[str, str | None], ...], tuple[tuple[str, str | None], ...]] = {}
        #: A helper's documents and hashes, as it marshalled them (``merge``): written as they are,
        #: and read only if something looks one up (``_absorb``).
        self._sections: list[bytes] = []
        #: Per environment of a helper's half: what deferring it needs (``loader._deferred``).
        self.helper_index: dict[str, HelperFacts] = {}
        #: The blob ids of those environments (what a section may hold a document of).
        self._helper_blobs: set[str] = set()
        #: Entries this run added, changed or dropped (a few are not worth writing the file for).
        self._changes = 0
        #: The file must be written whatever changed: it is missing, damaged, or another version's.
        self._rewrite = False
        self._read()

    @classmethod
    def for_repository(cls, git_dir: str | os.PathLike[str]) -> PlanCache:
        return cls(Path(git_dir) / CACHE_DIR / CACHE_FILE)

    def _read(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError:
            self._rewrite = True
            return
        try:
            # A checksum first: a torn or damaged file is refused before marshal reads a byte of it.
            magic, crc, payload = data[:4], data[4:8], data[8:]
            if magic != _MAGIC or zlib.crc32(payload).to_bytes(4, "big") != crc:
                raise ValueError("damaged, or not a plan cache")
            loaded = marshal.loads(payload)  # noqa: S302 (our own file under the git dir, checksummed)
            if not (isinstance(loaded, tuple) and len(loaded) == 5 and loaded[0] == self._fingerprint):
                raise ValueError("another version, or not a plan cache")
            docs, resolved, plans, sections = loaded[1], loaded[2], loaded[3], loaded[4]
            if (
                not all(isinstance(part, dict) for part in (docs, resolved, plans))
                or type(sections) is not list
            ):
                raise ValueError("unexpected layout")
            for section in sections:
                more_docs, more_resolved = marshal.loads(section)  # noqa: S302 (inside our checksummed file)
                docs.update(more_docs)
                resolved.update(more_resolved)
        except Exception as e:  # only a cache: whatever is wrong with it, it is ignored and rewritten
            logger.debug("plan cache %s ignored: %s", self.path, e)
            self._rewrite = True
            return
        self._docs, self._resolved, self._plans = docs, resolved, plans
        self._rewrite = len(docs) == 0

    # -- documents -----------------------------------------------------------------

    def document(self, kind: str, blob_id: str) -> Document | None:
        key = f"{kind}:{blob_id}"
        found = self._docs.get(key)
        if found is None and self._sections and blob_id in self._helper_blobs:
            self._absorb()
            found = self._docs.get(key)
        if found is not None:
            self._used_docs[key] = found
        return found

    def knows(self, blob_id: str, kind: str = "environment") -> bool:
        """Whether a document is kept for this blob (without counting it as used)."""
        return f"{kind}:{blob_id}" in self._docs

    def keep_document(self, kind: str, blob_id: str, document: Document) -> None:
        # A value marshal cannot hold (a date) is found when the documents are written (``_dumps``).
        key = f"{kind}:{blob_id}"
        self._used_docs[key] = document
        if key not in self._docs:
            self._docs[key] = document
            self._changes += 1

    def forget_document(self, kind: str, blob_id: str) -> None:
        """A cached document its schema refuses now: not written again."""
        key = f"{kind}:{blob_id}"
        self._used_docs.pop(key, None)
        self._docs.pop(key, None)
        self._changes += 1

    # -- resolutions ---------------------------------------------------------------

    @staticmethod
    def _key(stem: str, blob_id: str, blueprint: str | None) -> str:
        return f"{stem}\0{blob_id}\0{blueprint or ''}"

    def resolution(self, stem: str, blob_id: str, blueprint: str | None) -> Resolution | None:
        key = self._key(stem, blob_id, blueprint)
        found = self._resolved.get(key)
        if found is None and self._sections and stem in self.helper_index:
            self._absorb()
            found = self._resolved.get(key)
        if found is not None:
            self._used_resolved[key] = found
        return found

    def keep_resolution(self, stem: str, blob_id: str, blueprint: str | None, value: Resolution) -> None:
        key = self._key(stem, blob_id, blueprint)
        # The same probed paths are shared by most environments: one object, written once.
        value = (value[0], self._refs.setdefault(value[1], value[1]))
        if self._resolved.get(key) != value:
            self._resolved[key] = value
            self._changes += 1
        self._used_resolved[key] = value

    # -- plans ---------------------------------------------------------------------

    def plan(self, name: str) -> KeptPlan | None:
        """What an earlier run kept for ``name``; the caller checks it still holds, then ``keep_plan``s it."""
        return self._plans.get(name)

    def keep_plan(self, name: str, value: KeptPlan) -> None:
        if self._plans.get(name) != value:
            self._plans[name] = value
            self._changes += 1
        self._used_plans[name] = value

    # -- a helper's share (desired/helper.py) --------------------------------------

    def learned(self, index: dict[str, HelperFacts]) -> bytes:
        """What this process used or learned, for the process that forked it to ``merge``.

        ``index``: per environment of its half, what deferring it needs; the documents and hashes
        go as one section the parent writes into its cache file without reading it.
        """
        section = _dumps_section(self._used_docs, self._used_resolved)
        return marshal.dumps((self._fingerprint, index, section))

    def merge(self, payload: bytes) -> None:
        """Entries a forked helper ``learned``: its index for deferring, its section kept whole."""
        try:
            fingerprint, index, section = marshal.loads(payload)  # noqa: S302 (our own child's, via a pipe)
            if fingerprint != self._fingerprint or type(index) is not dict or type(section) is not bytes:
                raise ValueError("unexpected layout")
            blobs = {str(facts[0]) for facts in index.values()}
        except Exception as e:  # a damaged hand-over: the parent parses those files itself
            logger.debug("load helper's entries ignored: %s", e)
            return
        self.helper_index.update(index)
        self._helper_blobs.update(blobs)
        self._sections.append(section)
        self._changes += 2 * len(index)

    def _absorb(self) -> None:
        """Read the helpers' sections into the maps (something looked up an entry not found there)."""
        sections, self._sections = self._sections, []
        for section in sections:
            try:
                docs, resolved = marshal.loads(section)  # noqa: S302 (our own child's)
            except Exception as e:  # a damaged hand-over: those files are parsed again
                logger.debug("load helper's section ignored: %s", e)
                continue
            for key, kept in resolved.items():
                shared = (kept[0], self._refs.setdefault(kept[1], kept[1]))
                resolved[key] = shared
                self._resolved.setdefault(key, shared)
            for key, document in docs.items():
                self._docs.setdefault(key, document)
            # All of it is this run's: written whether looked up or not.
            self._used_docs.update(docs)
            self._used_resolved.update(resolved)

    def learned_plans(self) -> bytes:
        """The plans this process kept, for the process that forked it to ``merge_plans``."""
        return marshal.dumps((self._fingerprint, self._used_plans))

    def merge_plans(self, payload: bytes) -> None:
        """Plans a forked helper kept: used like plans read from the file (their keys checked on use)."""
        try:
            fingerprint, plans = marshal.loads(payload)  # noqa: S302 (our own child's, via a pipe)
            if fingerprint != self._fingerprint or type(plans) is not dict:
                raise ValueError("unexpected layout")
        except Exception as e:  # a damaged hand-over: the parent decides those plans itself
            logger.debug("plan helper's entries ignored: %s", e)
            return
        for name, value in plans.items():
            self._plans.setdefault(name, value)
        self._changes += len(plans)

    def has_plans(self) -> bool:
        return bool(self._plans)

    # -- writing -------------------------------------------------------------------

    def save(self) -> None:
        """Write what this run used, atomically; nothing when it was all found there already."""
        if not self._used_docs and not self._used_resolved and not self._sections:
            return
        # A run that planned nothing (``validate``) leaves the plans the last ``plan`` kept.
        plans = self._used_plans or self._plans
        unused = len(self._docs) - len(self._used_docs) + len(self._resolved) - len(self._used_resolved)
        if self._used_plans:
            unused += len(self._plans) - len(self._used_plans)
        changes = self._changes + unused
        if not self._rewrite:
            if changes == 0:
                return
            # After a change of a few files in a fleet the file is kept as it is, and those few are
            # parsed and decided again by the next runs (~1 ms each) until they are worth writing
            # it for (it holds the whole fleet: ~7 MB at 10,000 environments, ~50 ms to write).
            entries = (
                len(self._used_docs) + len(self._used_resolved) + len(plans) + 2 * len(self.helper_index)
            )
            if changes * REWRITE_SHARE < entries:
                return
        try:
            payload = _dumps(self._fingerprint, self._used_docs, self._used_resolved, plans, self._sections)
            data = _MAGIC + zlib.crc32(payload).to_bytes(4, "big") + payload
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{CACHE_FILE}.", dir=self.path.parent)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(data)
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        except (OSError, ValueError) as e:  # a read-only git dir, a full disk: the next run parses again
            logger.debug("plan cache %s not written: %s", self.path, e)


def _dumps(fingerprint: str, docs: dict[str, Document], *rest: Any) -> bytes:
    """``marshal.dumps((fingerprint, docs, *rest))``, without the documents marshal cannot hold.

    Such a document (a date) is found only when a first try fails: that file is parsed every time.
    """
    try:
        return marshal.dumps((fingerprint, docs, *rest))
    except ValueError:
        return marshal.dumps((fingerprint, _marshallable(docs), *rest))


def _dumps_section(docs: dict[str, Document], resolved: dict[str, Resolution]) -> bytes:
    """A helper's documents and hashes as one marshalled section (``_dumps``'s rule for documents)."""
    try:
        return marshal.dumps((docs, resolved))
    except ValueError:
        return marshal.dumps((_marshallable(docs), resolved))


def _marshallable(docs: dict[str, Document]) -> dict[str, Document]:
    """``docs`` without those marshal cannot hold."""
    plain: dict[str, Document] = {}
    for key, document in docs.items():
        try:
            marshal.dumps(document)
        except ValueError:
            continue
        plain[key] = document
    return plain
