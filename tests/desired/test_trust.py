"""Which commit of the desired branch may be acted on (SPEC section 10), with real keys and real git."""

from __future__ import annotations

from pathlib import Path

import pygit2
import pytest

from reconciler.desired import trust
from reconciler.desired.loader import load_snapshot
from reconciler.desired.trust import (
    AllowedSigners,
    SignatureStatus,
    TrustSetupError,
    choose_desired,
    parse_allowed_signers,
)
from tests.conftest import git
from tests.signing import Keys

pytestmark = pytest.mark.timeout(120)

REQUIRED = "apiVersion: reconciler/v1\nkind: Config\nverify: {signatures: required}\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q", "-b", "main")
    return path


def _change(repo: Path, text: str) -> None:
    (repo / "environments").mkdir(exist_ok=True)
    (repo / "environments" / "notes.txt").write_text(text)


def test_one_file_holds_ssh_lines_and_armored_openpgp_keys(signing_keys: Keys, tmp_path: Path) -> None:
    bob, _ = signing_keys.gpg()
    path = signing_keys.allowed_signers(tmp_path / "etc", signing_keys.alice, bob)

    ssh, blocks = parse_allowed_signers(path.read_text())

    assert ssh == signing_keys.alice.allowed_line()
    team = "sk-team@example.com " + signing_keys.mallory.allowed_line().split(" ", 1)[1]
    assert parse_allowed_signers(team)[0] == team  # a principal may look like a key type
    assert len(blocks) == 1
    assert blocks[0].startswith("-----BEGIN PGP PUBLIC KEY BLOCK-----")
    assert AllowedSigners.load(path).openpgp_keys == (bob.fingerprint,)


@pytest.mark.parametrize(
    ("text", "refusal"),
    [
        ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOnly+a+key+no+principal\n", "allowed-signers:1: neither"),
        ("# ok\n\nalice@example.com not-a-key\n", "allowed-signers:3: neither"),
        ("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nmDMEZ\n", "allowed-signers:1: an OpenPGP public key block"),
    ],
)
def test_a_line_that_is_no_key_is_refused_naming_it(text: str, refusal: str) -> None:
    with pytest.raises(TrustSetupError, match=refusal):
        parse_allowed_signers(text)


def test_a_file_without_keys_or_inside_the_repository_is_refused(
    signing_keys: Keys, repo: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.write_text("# nobody\n")
    with pytest.raises(TrustSetupError, match="holds no key"):
        AllowedSigners.load(empty)
    with pytest.raises(TrustSetupError, match="cannot read the allowed-signers file"):
        AllowedSigners.load(tmp_path / "missing")
    inside = signing_keys.allowed_signers(repo / "keys", signing_keys.alice)
    with pytest.raises(TrustSetupError, match="is inside the repository"):
        AllowedSigners.load(inside, pygit2.Repository(str(repo)))


def test_verify_commit_accepts_only_keys_of_the_file(signing_keys: Keys, repo: Path, tmp_path: Path) -> None:
    signers = AllowedSigners.load(signing_keys.allowed_signers(tmp_path / "etc", signing_keys.alice))
    r = pygit2.Repository(str(repo))
    _change(repo, "1")
    by_alice = signing_keys.commit(repo, signing_keys.alice)
    _change(repo, "2")
    by_mallory = signing_keys.commit(repo, signing_keys.mallory)
    _change(repo, "3")
    unsigned = signing_keys.commit(repo, None)

    trusted = signers.verify(r, by_alice)
    assert trusted.status is SignatureStatus.TRUSTED
    assert "signed by alice@example.com (ED25519 key SHA256:" in trusted.detail
    untrusted = signers.verify(r, by_mallory)
    assert untrusted.status is SignatureStatus.UNTRUSTED
    assert "which is not in the allowed-signers file" in untrusted.detail
    assert signers.verify(r, unsigned).status is SignatureStatus.UNSIGNED


def test_openpgp_keys_are_checked_in_a_private_keyring_not_the_users(
    signing_keys: Keys, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bob, eve = signing_keys.gpg()
    signers = AllowedSigners.load(signing_keys.allowed_signers(tmp_path / "etc", bob))
    r = pygit2.Repository(str(repo))
    _change(repo, "1")
    by_bob = signing_keys.commit(repo, bob)
    _change(repo, "2")
    by_eve = signing_keys.commit(repo, eve)
    # The user's own keyring trusts Eve ultimately (she was made there); it must not count.
    monkeypatch.setenv("GNUPGHOME", str(signing_keys.gnupghome))

    good = signers.verify(r, by_bob)
    assert good.trusted
    assert f"signed by Bob <bob@example.com> (OpenPGP key {bob.fingerprint})" == good.detail
    bad = signers.verify(r, by_eve)
    assert bad.status is SignatureStatus.UNTRUSTED
    assert "not in the allowed-signers file" in bad.detail


def test_the_newest_verified_first_parent_commit_is_desired(
    signing_keys: Keys, repo: Path, tmp_path: Path
) -> None:
    signers = AllowedSigners.load(signing_keys.allowed_signers(tmp_path / "etc", signing_keys.alice))
    r = pygit2.Repository(str(repo))
    _change(repo, "1")
    verified = signing_keys.commit(repo, signing_keys.alice, "verified")
    # A side branch with a commit signed by an allowed key, merged by an unsigned merge:
    # the merge's tree is what would be applied, so the signed side commit does not vouch for it.
    git(repo, "checkout", "-q", "-b", "feature")
    _change(repo, "2")
    signing_keys.commit(repo, signing_keys.alice, "signed side commit")
    git(repo, "checkout", "-q", "main")
    (repo / "other.txt").write_text("x")
    signing_keys.commit(repo, None, "unsigned on main")
    git(repo, "merge", "-q", "--no-gpg-sign", "--no-edit", "feature")
    tip = git(repo, "rev-parse", "HEAD").strip()

    choice = choose_desired(r, tip, signers)

    assert choice.commit == verified
    assert choice.skipped == 2
    assert choice.tip_signature is not None
    assert choice.tip_signature.status is SignatureStatus.UNSIGNED
    assert choice.message is not None
    assert f"desired tip {tip[:12]} is not applied: unsigned; acting on {verified[:12]}" in choice.message


def test_nothing_is_desired_when_no_commit_within_the_bound_verifies(
    signing_keys: Keys, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    signers = AllowedSigners.load(signing_keys.allowed_signers(tmp_path / "etc", signing_keys.alice))
    r = pygit2.Repository(str(repo))
    _change(repo, "1")
    signing_keys.commit(repo, signing_keys.alice)
    for n in range(3):
        _change(repo, f"unsigned {n}")
        tip = signing_keys.commit(repo, signing_keys.mallory)
    monkeypatch.setattr(trust, "MAX_WALK", 2)

    choice = choose_desired(r, tip, signers)

    assert choice.commit is None
    assert choice.message is not None
    assert "no commit signed by an allowed key on its first-parent history (3 looked at)" in choice.message
    assert "not in the allowed-signers file" in choice.message


def test_without_a_file_the_tip_is_desired_unless_the_repository_requires_signatures(
    signing_keys: Keys, repo: Path
) -> None:
    r = pygit2.Repository(str(repo))
    (repo / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\n")
    plain = signing_keys.commit(repo, None)
    assert choose_desired(r, plain, None).commit == plain

    (repo / "reconciler.yaml").write_text(REQUIRED)
    required = signing_keys.commit(repo, signing_keys.alice)
    choice = choose_desired(r, required, None)
    assert choice.commit is None
    assert choice.message is not None
    assert "sets verify.signatures: required" in choice.message
    assert "RECONCILE_ALLOWED_SIGNERS" in choice.message


def test_a_changed_file_is_noticed(signing_keys: Keys, tmp_path: Path) -> None:
    path = signing_keys.allowed_signers(tmp_path / "etc", signing_keys.alice)
    signers = AllowedSigners.load(path)
    assert not signers.changed()
    path.write_text(path.read_text() + signing_keys.mallory.allowed_line())
    assert signers.changed()


def test_an_unverified_commit_cannot_point_the_reconciler_at_another_branch(
    signing_keys: Keys, repo: Path, tmp_path: Path
) -> None:
    signers = AllowedSigners.load(signing_keys.allowed_signers(tmp_path / "etc", signing_keys.alice))
    r = pygit2.Repository(str(repo))
    _change(repo, "old")
    signing_keys.commit(repo, signing_keys.alice, "old, signed")
    git(repo, "branch", "old")
    _change(repo, "new")
    signing_keys.commit(repo, signing_keys.alice, "new, signed")
    (repo / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\nbranch: old\n")
    signing_keys.commit(repo, None, "unsigned: read the old branch instead")

    assert trust.desired_revision(r, signers) == "refs/heads/main"
    assert trust.desired_revision(r, None) == "refs/heads/old"  # without keys, HEAD's file decides


def test_verify_signatures_accepts_off_and_required_only(repo: Path) -> None:
    config = "apiVersion: reconciler/v1\nkind: Config\nverify: {signatures: on}\n"
    (repo / "reconciler.yaml").write_text(config)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "typo")

    snapshot = load_snapshot(pygit2.Repository(str(repo)), "HEAD")

    assert [str(p) for p in snapshot.problems] == [
        "reconciler.yaml:3:22: `verify.signatures`: Input should be 'off' or 'required' (got 'on')"
    ]
