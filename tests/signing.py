"""Real signing keys for the trusted-commit tests (SPEC section 10).

SSH keys are made with ``ssh-keygen``; OpenPGP keys with ``gpg --quick-gen-key``
(no passphrase) in a private, short-pathed ``GNUPGHOME`` whose agent is
stopped at the end. Commits are signed by the real ``git commit -S``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import git


@dataclass(frozen=True)
class SshKey:
    principal: str
    private: Path
    public: str

    def allowed_line(self) -> str:
        """This key's line of an ssh ``allowed_signers`` file."""
        kind, body = self.public.split()[:2]
        return f"{self.principal} {kind} {body}\n"


@dataclass(frozen=True)
class GpgKey:
    email: str
    fingerprint: str
    armored: str


@dataclass
class Keys:
    """Two SSH keys and, when gpg is installed, two OpenPGP keys: one of each to trust, one not."""

    home: Path
    alice: SshKey
    mallory: SshKey
    bob: GpgKey | None = None
    eve: GpgKey | None = None

    @property
    def gnupghome(self) -> Path:
        return self.home / "g"

    def gpg(self) -> tuple[GpgKey, GpgKey]:
        """Bob (to trust) and Eve (not), or skip the test when gpg is not installed."""
        if self.bob is None or self.eve is None:
            pytest.skip("gpg is not installed (.ci/run installs it)")
        return self.bob, self.eve

    def allowed_signers(self, directory: Path, *keys: SshKey | GpgKey) -> Path:
        """An allowed-signers file in ``directory`` holding ``keys``."""
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "allowed_signers"
        text = "# who may sign desired state\n"
        for key in keys:
            text += key.allowed_line() if isinstance(key, SshKey) else key.armored
        path.write_text(text)
        return path

    def commit(self, repo: Path, key: SshKey | GpgKey | None, message: str = "change") -> str:
        """``git commit -S`` of everything in ``repo``'s work tree, signed by ``key`` (``None``: unsigned)."""
        git(repo, "add", "-A")
        if key is None:
            args = ["commit", "-q", "--allow-empty", "--no-gpg-sign", "-m", message]
        elif isinstance(key, SshKey):
            args = ["-c", "gpg.format=ssh", "-c", f"user.signingKey={key.private}"]
            args += ["commit", "-q", "--allow-empty", "-S", "-m", message]
        else:
            args = ["-c", "gpg.format=openpgp", "-c", f"user.signingKey={key.fingerprint}"]
            args += ["commit", "-q", "--allow-empty", "-S", "-m", message]
        subprocess.run(
            ["git", "-C", str(repo), *args], check=True, capture_output=True, env=self.env(), timeout=60
        )
        return git(repo, "rev-parse", "HEAD").strip()

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.gnupghome), **(extra or {})}

    def close(self) -> None:
        if self.gnupghome.exists() and shutil.which("gpgconf"):
            subprocess.run(
                ["gpgconf", "--homedir", str(self.gnupghome), "--kill", "all"],
                check=False,
                capture_output=True,
                timeout=30,
            )
        shutil.rmtree(self.home, ignore_errors=True)


def _ssh_key(home: Path, principal: str) -> SshKey:
    private = home / principal.split("@", maxsplit=1)[0]
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", principal, "-f", str(private)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return SshKey(principal, private, private.with_suffix(".pub").read_text().strip())


def _gpg_key(gnupghome: Path, name: str, email: str) -> GpgKey:
    def gpg(*args: str) -> str:
        return subprocess.run(
            ["gpg", "--homedir", str(gnupghome), "--batch", "--no-tty", *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout

    gpg("--passphrase", "", "--quick-gen-key", f"{name} <{email}>", "ed25519", "sign", "never")
    rows = [row.split(":") for row in gpg("--with-colons", "--list-keys", email).splitlines()]
    fingerprint = next(row[9] for row in rows if row[0] == "fpr")
    return GpgKey(email, fingerprint, gpg("--armor", "--export", email))


def make_keys() -> Keys:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed (.ci/run installs it)")
    # Short: gpg-agent's socket path must fit in a sockaddr_un.
    home = Path(tempfile.mkdtemp(prefix="rk-"))
    keys = Keys(home, _ssh_key(home, "alice@example.com"), _ssh_key(home, "mallory@example.com"))
    if shutil.which("gpg") is not None:
        keys.gnupghome.mkdir(mode=0o700)
        try:
            keys.bob = _gpg_key(keys.gnupghome, "Bob", "bob@example.com")
            keys.eve = _gpg_key(keys.gnupghome, "Eve", "eve@example.com")
        except BaseException:
            keys.close()
            raise
    return keys
