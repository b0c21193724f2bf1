"""Trusted commits (SPEC section 10): which commit of the desired branch may be acted on.

With signatures in force, the desired commit is the newest commit on the
branch's first-parent history that ``git verify-commit`` accepts against the
reconciler's allowed-signers file; the commits above it are reported and never
loaded. The file is the operator's and lives outside the repository: given to
the reconciler it switches verification on, and no commit can switch it off.
A repository whose ``reconciler.yaml`` says ``verify: {signatures: required}``
is refused whole by a reconciler that has no such file (it fails closed).
Why it is done this way: docs/decisions/013-trusted-commits.md.

One file holds both kinds of key: ssh ``allowed_signers`` lines for SSH
signatures and ASCII-armored OpenPGP public key blocks for OpenPGP ones. The
lines go to a private copy named by ``gpg.ssh.allowedSignersFile``; the blocks
are imported, with full owner trust, into a private ``GNUPGHOME``, so neither
the user's own keyring nor their git config decides what is trusted.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
import threading
import weakref
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pygit2

from reconciler.desired.loader import ParseCache, default_revision, head_branch, read_config
from reconciler.desired.models import ConfigFile, SignaturePolicy
from reconciler.desired.sources import GitTreeSource

#: Where the allowed-signers file is named when ``--allowed-signers`` is not given.
ALLOWED_SIGNERS_ENV = "RECONCILE_ALLOWED_SIGNERS"
#: First-parent commits looked at below a tip that does not verify, at most.
MAX_WALK = 1000
#: An allowed-signers file larger than this is refused unread.
MAX_FILE_BYTES = 4 * 1024 * 1024
#: One ``git verify-commit`` may take this long before the commit counts as not verified.
VERIFY_TIMEOUT_SECONDS = 30.0
#: Verdicts kept per file, by commit id (a commit's verdict never changes while the keys do not).
_CACHE_LIMIT = 10_000

_PGP_BEGIN = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
_PGP_END = "-----END PGP PUBLIC KEY BLOCK-----"
# An ssh public key inside an allowed_signers line: its type, then its base64 body.
_SSH_KEY = re.compile(
    r"(?:^|\s)(?:ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-[a-z0-9@.-]+)\s+[A-Za-z0-9+/]{16,}={0,3}(?:\s|$)"
)
# A line that starts with the key: an authorized_keys line, not an allowed_signers one (no principals).
_KEY_FIRST = re.compile(r"(?:ssh-[a-z0-9-]+|ecdsa-sha2-[a-z0-9-]+|sk-(?:ssh|ecdsa)-[a-z0-9@.-]+)\s")
_SSH_TRUSTED = re.compile(r'Good "git" signature for (.+?) with (\S+) key (\S+)')
_SSH_UNKNOWN = re.compile(r'Good "git" signature with (\S+) key (\S+)')


class TrustSetupError(Exception):
    """The allowed-signers file cannot be used: missing, inside the repository, malformed, no gpg."""


class SignatureStatus(StrEnum):
    TRUSTED = "trusted"
    UNSIGNED = "unsigned"
    #: Signed, but not acceptably: a key not in the file, a bad, expired or revoked signature.
    UNTRUSTED = "untrusted"


@dataclass(frozen=True)
class CommitSignature:
    """What ``git verify-commit`` said about one commit, as one line a person can act on."""

    commit: str
    status: SignatureStatus
    detail: str

    @property
    def trusted(self) -> bool:
        return self.status is SignatureStatus.TRUSTED


@dataclass(frozen=True)
class DesiredCommit:
    """The commit to act on for a branch tip, and why it is not the tip when it is not."""

    tip: str
    #: The commit to load, or ``None``: nothing may be acted on.
    commit: str | None
    #: Whether signatures were required (the tip was verified).
    required: bool = False
    #: The tip's verdict, when signatures were required and an allowed-signers file was given.
    tip_signature: CommitSignature | None = None
    #: First-parent commits above ``commit`` that were not acted on.
    skipped: int = 0
    #: Why the tip is not what is acted on (``None`` when it is); one line, without what follows
    #: from it when ``commit`` is ``None`` (a command acts on nothing, a daemon keeps what it has).
    message: str | None = None

    @property
    def tip_applied(self) -> bool:
        return self.commit == self.tip


def parse_allowed_signers(text: str, path: str = "allowed-signers") -> tuple[str, tuple[str, ...]]:
    """The ssh ``allowed_signers`` lines and the armored OpenPGP blocks of ``text``.

    Blank lines and ``#`` comments are skipped; any other line must be an
    ``allowed_signers`` line (``principals [options] key-type base64-key``) or
    belong to an OpenPGP public key block, else the file is refused naming it.
    """
    ssh: list[str] = []
    blocks: list[str] = []
    block: list[str] | None = None
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if block is not None:
            block.append(line)
            if line == _PGP_END:
                blocks.append("\n".join(block) + "\n")
                block = None
            continue
        if line == _PGP_BEGIN:
            block, start = [line], number
        elif not line or line.startswith("#"):
            continue
        elif _SSH_KEY.search(line) and not _KEY_FIRST.match(line):
            ssh.append(line)
        else:
            raise TrustSetupError(
                f"{path}:{number}: neither an allowed_signers line "
                "('principals [options] key-type base64-key', see ssh-keygen(1) ALLOWED SIGNERS) "
                f"nor part of an armored OpenPGP public key block ({_PGP_BEGIN} ... {_PGP_END})"
            )
    if block is not None:
        raise TrustSetupError(f"{path}:{start}: an OpenPGP public key block without its {_PGP_END} line")
    return "".join(f"{line}\n" for line in ssh), tuple(blocks)


class AllowedSigners:
    """The reconciler's allowed-signers file, made into what ``git verify-commit`` reads."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.digest = hashlib.sha256(text.encode()).hexdigest()
        ssh, blocks = parse_allowed_signers(text, str(path))
        if not ssh and not blocks:
            raise TrustSetupError(f"{path}: holds no key: nothing could ever be verified")
        if blocks and shutil.which("gpg") is None:
            raise TrustSetupError(f"{path} holds OpenPGP keys, but gpg is not installed (it verifies them)")
        self._dir = Path(tempfile.mkdtemp(prefix="reconcile-signers-"))
        weakref.finalize(self, shutil.rmtree, self._dir, True)
        self._ssh_file = self._dir / "allowed_signers"
        self._ssh_file.write_text(ssh)
        self._gnupghome = self._dir / "gnupg"
        self._gnupghome.mkdir(mode=0o700)
        (self._gnupghome / "gpg.conf").write_text("no-autostart\nno-auto-key-retrieve\n")
        self.openpgp_keys = _import_openpgp(self._gnupghome, blocks, path) if blocks else ()
        self._cache: dict[str, CommitSignature] = {}
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: Path, repo: pygit2.Repository | None = None) -> AllowedSigners:
        """Read ``path``; refused when it is missing, malformed, or inside ``repo``."""
        path = path.expanduser()
        if repo is not None:
            _refuse_inside(path, repo)
        return cls(path, _read(path))

    def changed(self) -> bool:
        """Whether the file now holds something else than when it was loaded (unreadable counts)."""
        try:
            return hashlib.sha256(_read(self.path).encode()).hexdigest() != self.digest
        except TrustSetupError:
            return True

    def verify(self, repo: pygit2.Repository, commit: str) -> CommitSignature:
        """``git verify-commit`` of ``commit`` with these keys only (cached by commit id)."""
        with self._lock:
            found = self._cache.get(commit)
        if found is not None:
            return found
        verdict = self._verify(repo, commit)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[commit] = verdict
        return verdict

    def _verify(self, repo: pygit2.Repository, commit: str) -> CommitSignature:
        obj = repo[commit]
        assert isinstance(obj, pygit2.Commit)
        signature, _payload = obj.gpg_signature
        if not signature:
            return CommitSignature(commit, SignatureStatus.UNSIGNED, "unsigned")
        argv = [
            "git",
            "--git-dir",
            repo.path,
            "-c",
            f"gpg.ssh.allowedSignersFile={self._ssh_file}",
            "-c",
            "gpg.minTrustLevel=fully",
            "verify-commit",
            "--raw",
            commit,
        ]
        env = {**os.environ, "GNUPGHOME": str(self._gnupghome), "LC_ALL": "C", "LANGUAGE": "C"}
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                errors="replace",
                env=env,
                timeout=VERIFY_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return CommitSignature(commit, SignatureStatus.UNTRUSTED, f"cannot be verified: {e}")
        output = done.stderr + done.stdout
        ssh = signature.lstrip().startswith(b"-----BEGIN SSH SIGNATURE")
        detail = _ssh_detail(output, done.returncode) if ssh else _openpgp_detail(output, done.returncode)
        status = SignatureStatus.TRUSTED if done.returncode == 0 else SignatureStatus.UNTRUSTED
        return CommitSignature(commit, status, detail)


def _read(path: Path) -> str:
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise TrustSetupError(f"{path}: larger than {MAX_FILE_BYTES} bytes")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise TrustSetupError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    except OSError as e:
        raise TrustSetupError(f"cannot read the allowed-signers file {path}: {e.strerror or e}") from e


def _refuse_inside(path: Path, repo: pygit2.Repository) -> None:
    resolved = path.resolve()
    roots = [Path(repo.path).resolve()]
    if repo.workdir:
        roots.append(Path(repo.workdir).resolve())
    for root in roots:
        if resolved == root or root in resolved.parents:
            raise TrustSetupError(
                f"the allowed-signers file {path} is inside the repository {root}: a commit could change "
                "it and vouch for itself; keep it outside, e.g. /etc/reconciler/allowed_signers"
            )


def _gpg(home: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["gpg", "--homedir", str(home), "--batch", "--no-tty", "--quiet", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "LC_ALL": "C"},
        timeout=60,
        check=False,
    )


def _import_openpgp(home: Path, blocks: tuple[str, ...], path: Path) -> tuple[str, ...]:
    """Import ``blocks`` into ``home`` with full owner trust; the primary keys' fingerprints."""
    try:
        imported = _gpg(home, "--import", stdin="".join(blocks))
        listed = _gpg(home, "--with-colons", "--list-keys")
    except (OSError, subprocess.TimeoutExpired) as e:
        raise TrustSetupError(f"{path}: gpg cannot import its OpenPGP keys: {e}") from e
    fingerprints: list[str] = []
    want_fpr = False
    for row in listed.stdout.splitlines():
        fields = row.split(":")
        if fields[0] == "pub":
            want_fpr = True
        elif fields[0] == "fpr" and want_fpr and len(fields) > 9:
            fingerprints.append(fields[9])
            want_fpr = False
    if imported.returncode != 0 or not fingerprints:
        said = (imported.stderr.strip().splitlines() or ["no key imported"])[-1]
        raise TrustSetupError(f"{path}: gpg cannot import its OpenPGP keys: {said}")
    # Every key of the file is trusted to sign: that is what being in the file means.
    owner_trust = _gpg(home, "--import-ownertrust", stdin="".join(f"{fpr}:6:\n" for fpr in fingerprints))
    if owner_trust.returncode != 0:
        raise TrustSetupError(f"{path}: gpg cannot set owner trust: {owner_trust.stderr.strip()}")
    return tuple(fingerprints)


def _ssh_detail(output: str, code: int) -> str:
    if (found := _SSH_TRUSTED.search(output)) and code == 0:
        return f"signed by {found[1]} ({found[2]} key {found[3]})"
    if found := _SSH_UNKNOWN.search(output):
        return f"signed by {found[1]} key {found[2]}, which is not in the allowed-signers file"
    return f"SSH signature not accepted: {_first_line(output)}"


def _openpgp_detail(output: str, code: int) -> str:
    status: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("[GNUPG:] "):
            keyword, _, rest = line[len("[GNUPG:] ") :].partition(" ")
            status.setdefault(keyword, rest)
    if "GOODSIG" in status:
        _keyid, _, uid = status["GOODSIG"].partition(" ")
        fingerprint = status.get("VALIDSIG", "").split(" ")[0]
        who = f"signed by {uid} (OpenPGP key {fingerprint})"
        return who if code == 0 else f"{who}, which is not trusted"
    for keyword, why in (
        ("EXPKEYSIG", "with an expired key"),
        ("REVKEYSIG", "with a revoked key"),
        ("EXPSIG", "with an expired signature"),
        ("BADSIG", "but the signature does not match the commit"),
    ):
        if keyword in status:
            keyid, _, uid = status[keyword].partition(" ")
            return f"signed by {uid or keyid} {why}"
    if "NO_PUBKEY" in status or "ERRSIG" in status:
        keyid = (status.get("NO_PUBKEY") or status["ERRSIG"]).split(" ")[0]
        return f"signed by OpenPGP key {keyid}, which is not in the allowed-signers file"
    return f"signature not accepted: {_first_line(output)}"


def _first_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[0] if lines else "git verify-commit said nothing"


def config_at(repo: pygit2.Repository, commit: str) -> ConfigFile:
    """``reconciler.yaml`` at ``commit`` (the defaults when it is missing or invalid)."""
    obj = repo[commit]
    assert isinstance(obj, pygit2.Commit)
    return read_config(GitTreeSource(repo, obj.tree), ParseCache())[0]


def desired_revision(repo: pygit2.Repository, signers: AllowedSigners | None) -> str:
    """The desired-state branch to read, as ``default_revision``, but with signatures in force
    ``branch`` comes from ``reconciler.yaml`` at the newest verified commit of HEAD's branch, so an
    unverified commit cannot point the reconciler at another branch."""
    if signers is None or repo.head_is_unborn:
        return default_revision(repo)
    head = str(repo.head.peel(pygit2.Commit).id)
    trusted = choose_desired(repo, head, signers).commit
    branch = (config_at(repo, trusted).branch if trusted is not None else None) or head_branch(repo)
    if branch is not None and f"refs/heads/{branch}" in repo.references:
        return f"refs/heads/{branch}"
    return "HEAD"


def choose_desired(repo: pygit2.Repository, tip: str, signers: AllowedSigners | None) -> DesiredCommit:
    """The commit to act on for the branch tip ``tip`` (a commit id).

    Without ``signers``: the tip, unless its ``reconciler.yaml`` requires
    signatures, which nothing here could check (``commit`` is then ``None``).
    With ``signers``: the newest commit on the tip's first-parent history, at
    most ``MAX_WALK`` below it, that verifies; ``None`` when none does.
    """
    if signers is None:
        if config_at(repo, tip).verify.signatures is SignaturePolicy.REQUIRED:
            return DesiredCommit(
                tip,
                None,
                required=True,
                message=(
                    f"reconciler.yaml at {tip[:12]} sets verify.signatures: required, but this reconciler "
                    f"has no allowed-signers file to check signatures with (--allowed-signers PATH or "
                    f"{ALLOWED_SIGNERS_ENV})"
                ),
            )
        return DesiredCommit(tip, tip)
    current = repo[tip]
    assert isinstance(current, pygit2.Commit)
    tip_signature = signers.verify(repo, tip)
    looked = 0
    while True:
        verdict = tip_signature if looked == 0 else signers.verify(repo, str(current.id))
        if verdict.trusted:
            commit = str(current.id)
            message = None
            if looked:
                message = (
                    f"desired tip {tip[:12]} is not applied: {tip_signature.detail}; acting on "
                    f"{commit[:12]}, the newest verified commit below it "
                    f"({looked} commit{'s' if looked != 1 else ''} not applied)"
                )
            return DesiredCommit(tip, commit, True, tip_signature, looked, message)
        if looked >= MAX_WALK or not current.parent_ids:
            break
        try:
            parent = repo[current.parent_ids[0]]
        except KeyError:  # a shallow clone ends here
            break
        assert isinstance(parent, pygit2.Commit)
        current, looked = parent, looked + 1
    return DesiredCommit(
        tip,
        None,
        True,
        tip_signature,
        looked + 1,
        f"desired tip {tip[:12]} is not applied: {tip_signature.detail}; no commit signed by an allowed "
        f"key on its first-parent history ({looked + 1} looked at)",
    )
