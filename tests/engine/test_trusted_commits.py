"""``reconcile apply``, ``status`` and ``plan`` act only on trusted commits (SPEC section 10), for real.

Keys are real (``ssh-keygen``, ``gpg``), commits are signed by the real ``git
commit -S``, and the allowed-signers file lives outside the repository.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import git
from tests.engine.conftest import GitOpsRepo, counting_phases, env_file
from tests.signing import GpgKey, Keys, SshKey

pytestmark = pytest.mark.timeout(180)

REQUIRED = "apiVersion: reconciler/v1\nkind: Config\nverify: {signatures: required}\n"
OFF = "apiVersion: reconciler/v1\nkind: Config\nverify: {signatures: off}\n"


def _release(log: Path, tag: str) -> dict[str, object]:
    """Phases that log '<phase> <env>', the release phase also ``tag``: a change re-runs release and run."""
    return counting_phases(log, {"release": f"echo {tag} >> {log}.releases"})


def _releases(log: Path) -> list[str]:
    path = Path(f"{log}.releases")
    return path.read_text().split() if path.exists() else []


def _commit(gitops: GitOpsRepo, keys: Keys, key: SshKey | GpgKey | None, files: dict[str, str]) -> str:
    gitops.write(files)
    return keys.commit(gitops.path, key)


@pytest.fixture
def etc(tmp_path: Path) -> Path:
    """Where the operator keeps the allowed-signers file: outside the repository."""
    return tmp_path / "etc"


def test_a_tip_signed_by_an_allowed_ssh_key_is_applied(
    gitops: GitOpsRepo, signing_keys: Keys, etc: Path, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    signers = signing_keys.allowed_signers(etc, signing_keys.alice)
    tip = _commit(
        gitops,
        signing_keys,
        signing_keys.alice,
        {"environments/web.yaml": env_file("web", phases=_release(log, "v1"))},
    )

    out = gitops.reconcile("apply", "--allowed-signers", str(signers), check=True)

    assert "web: released -> starting" in out.stdout
    assert "warning" not in out.stderr
    assert gitops.state("web")["desiredCommit"] == tip
    assert _releases(log) == ["v1"]


def test_an_unsigned_tip_is_refused_and_the_last_verified_commit_stays_desired(
    gitops: GitOpsRepo, signing_keys: Keys, etc: Path, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    signers = str(signing_keys.allowed_signers(etc, signing_keys.alice))
    verified = _commit(
        gitops,
        signing_keys,
        signing_keys.alice,
        {"environments/web.yaml": env_file("web", phases=_release(log, "v1"))},
    )
    gitops.reconcile("apply", "--allowed-signers", signers, check=True)
    settled = gitops.transitions()
    unsigned = _commit(
        gitops, signing_keys, None, {"environments/web.yaml": env_file("web", phases=_release(log, "v2"))}
    )

    out = gitops.reconcile("apply", env={"RECONCILE_ALLOWED_SIGNERS": signers}, check=True)

    assert f"desired tip {unsigned[:12]} is not applied: unsigned; acting on {verified[:12]}" in out.stderr
    assert gitops.transitions() == settled
    assert _releases(log) == ["v1"]
    status = gitops.reconcile("status", "--format", "json", "--allowed-signers", signers, check=True)
    assert (
        json.loads(status.stdout)["environments"][0]["converged"] is True
    )  # converged on the verified commit

    # Once a person signs it, it is applied.
    signing_keys.commit(gitops.path, signing_keys.alice, "sign the release")
    gitops.reconcile("apply", "--allowed-signers", signers, check=True)
    assert _releases(log) == ["v1", "v2"]


def test_a_tip_signed_by_a_key_not_in_the_file_is_refused(
    gitops: GitOpsRepo, signing_keys: Keys, etc: Path, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    signers = str(signing_keys.allowed_signers(etc, signing_keys.alice))
    _commit(
        gitops,
        signing_keys,
        signing_keys.mallory,
        {"environments/web.yaml": env_file("web", phases=_release(log, "v1"))},
    )

    out = gitops.reconcile("apply", "--allowed-signers", signers)

    assert out.returncode == 1
    assert "signed by ED25519 key SHA256:" in out.stderr
    assert "which is not in the allowed-signers file" in out.stderr
    assert "nothing is acted on" in out.stderr
    assert gitops.transitions() == []
    assert not log.exists()


def test_openpgp_signed_tips_are_applied_and_other_openpgp_keys_refused(
    gitops: GitOpsRepo, signing_keys: Keys, etc: Path, tmp_path: Path
) -> None:
    bob, eve = signing_keys.gpg()
    log = tmp_path / "effects.log"
    # One file: an ssh line and an armored OpenPGP key.
    signers = str(signing_keys.allowed_signers(etc, signing_keys.alice, bob))
    by_bob = _commit(
        gitops, signing_keys, bob, {"environments/web.yaml": env_file("web", phases=_release(log, "v1"))}
    )
    gitops.reconcile("apply", "--allowed-signers", signers, check=True)
    assert gitops.state("web")["desiredCommit"] == by_bob

    by_eve = _commit(
        gitops, signing_keys, eve, {"environments/web.yaml": env_file("web", phases=_release(log, "v2"))}
    )
    out = gitops.reconcile("apply", "--allowed-signers", signers, check=True)

    assert f"desired tip {by_eve[:12]} is not applied: signed by OpenPGP key" in out.stderr
    assert _releases(log) == ["v1"]


def test_a_commit_that_adds_its_own_key_to_the_repository_gains_nothing(
    gitops: GitOpsRepo, signing_keys: Keys, etc: Path, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    signers = str(signing_keys.allowed_signers(etc, signing_keys.alice))
    _commit(
        gitops,
        signing_keys,
        signing_keys.alice,
        {"environments/web.yaml": env_file("web", phases=_release(log, "v1"))},
    )
    gitops.reconcile("apply", "--allowed-signers", signers, check=True)
    own = signing_keys.alice.allowed_line() + signing_keys.mallory.allowed_line()
    _commit(
        gitops,
        signing_keys,
        signing_keys.mallory,
        {"allowed_signers": own, "environments/web.yaml": env_file("web", phases=_release(log, "v2"))},
    )

    refused = gitops.reconcile("apply", "--allowed-signers", signers, check=True)
    assert "is not applied: signed by ED25519 key" in refused.stderr
    inside = gitops.reconcile("apply", "--allowed-signers", str(gitops.path / "allowed_signers"))

    assert inside.returncode == 1
    assert "is inside the repository" in inside.stderr
    assert _releases(log) == ["v1"]


def test_an_unsigned_commit_that_switches_signatures_off_is_not_trusted(
    gitops: GitOpsRepo, signing_keys: Keys, etc: Path, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    signers = str(signing_keys.allowed_signers(etc, signing_keys.alice))
    _commit(
        gitops,
        signing_keys,
        signing_keys.alice,
        {"reconciler.yaml": REQUIRED, "environments/web.yaml": env_file("web", phases=_release(log, "v1"))},
    )
    gitops.reconcile("apply", "--allowed-signers", signers, check=True)
    downgrade = _commit(
        gitops,
        signing_keys,
        None,
        {"reconciler.yaml": OFF, "environments/web.yaml": env_file("web", phases=_release(log, "v2"))},
    )

    out = gitops.reconcile("apply", "--allowed-signers", signers, check=True)

    assert f"desired tip {downgrade[:12]} is not applied: unsigned" in out.stderr
    assert _releases(log) == ["v1"]


def test_a_repository_that_requires_signatures_is_refused_by_a_reconciler_without_keys(
    gitops: GitOpsRepo, signing_keys: Keys, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    _commit(
        gitops,
        signing_keys,
        signing_keys.alice,
        {"reconciler.yaml": REQUIRED, "environments/web.yaml": env_file("web", phases=_release(log, "v1"))},
    )

    out = gitops.reconcile("apply", env={"RECONCILE_ALLOWED_SIGNERS": ""})

    assert out.returncode == 1
    assert "sets verify.signatures: required, but this reconciler has no allowed-signers file" in out.stderr
    assert gitops.transitions() == []


def test_plan_shows_what_is_verified_and_plans_an_unverified_rev_saying_so(
    gitops: GitOpsRepo, signing_keys: Keys, etc: Path, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    signers = str(signing_keys.allowed_signers(etc, signing_keys.alice))
    verified = _commit(
        gitops,
        signing_keys,
        signing_keys.alice,
        {"environments/web.yaml": env_file("web", phases=_release(log, "v1"))},
    )
    gitops.reconcile("apply", "--allowed-signers", signers, check=True)
    unsigned = _commit(
        gitops, signing_keys, None, {"environments/web.yaml": env_file("web", phases=_release(log, "v2"))}
    )

    desired = gitops.reconcile("plan", "--allowed-signers", signers, check=True)
    assert f"Plan of {verified[:12]}" in desired.stdout
    assert f"the desired tip {unsigned[:12]} is not applied (unsigned; 1 commit above" in desired.stdout
    assert "web  running -> running: converged" in desired.stdout

    review = gitops.reconcile(
        "plan",
        "--rev",
        "HEAD",
        "--base",
        verified,
        "--format",
        "json",
        "--allowed-signers",
        signers,
        check=True,
    )
    data = json.loads(review.stdout)
    assert data["revision"] == unsigned
    assert data["verification"]["verified"] is False
    assert data["verification"]["detail"].startswith(
        "unsigned: reconcile acts only on commits signed by a key in"
    )
    assert data["environments"][0]["verdict"] == "changes"
    markdown = gitops.reconcile("plan", "--rev", "HEAD", "--format", "markdown", "--allowed-signers", signers)
    assert "⚠️ **Unverified:** unsigned" in markdown.stdout


def test_with_a_remote_the_remote_branch_tip_is_verified(
    signing_keys: Keys, etc: Path, tmp_path: Path
) -> None:
    log = tmp_path / "effects.log"
    signers = str(signing_keys.allowed_signers(etc, signing_keys.alice))
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(origin))
    person = tmp_path / "person"
    git(tmp_path, "clone", "-q", str(origin), str(person))
    (person / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\nremote: origin\n")
    (person / "environments").mkdir()
    (person / "environments" / "web.yaml").write_text(env_file("web", phases=_release(log, "v1")))
    verified = signing_keys.commit(person, signing_keys.alice, "web v1")
    git(person, "push", "-q", "origin", "main")
    host = GitOpsRepo(tmp_path / "host", tmp_path / "data")
    git(tmp_path, "clone", "-q", str(origin), str(host.path))
    host.reconcile("apply", "--allowed-signers", signers, check=True)

    (person / "environments" / "web.yaml").write_text(env_file("web", phases=_release(log, "v2")))
    unsigned = signing_keys.commit(person, None, "web v2, unsigned")
    git(person, "push", "-q", "origin", "main")
    out = host.reconcile("apply", "--allowed-signers", signers, check=True)

    assert f"desired tip {unsigned[:12]} is not applied: unsigned; acting on {verified[:12]}" in out.stderr
    assert _releases(log) == ["v1"]
