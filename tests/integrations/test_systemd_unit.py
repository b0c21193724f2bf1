"""``packaging/systemd``: the unit checked by systemd's own tools, its command line run for real.

``systemd-analyze verify`` needs the ExecStart binary to exist, so it checks a
copy whose ExecStart is this checkout's venv ``reconcile``. sysusers and
tmpfiles are applied to a scratch root with ``--root``.
"""

from __future__ import annotations

import configparser
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import git

ROOT = Path(__file__).resolve().parents[2]
PACKAGING = ROOT / "packaging" / "systemd"
UNIT = PACKAGING / "reconciler.service"
TEMPLATE = PACKAGING / "reconcile@.service"
UNITS = pytest.mark.parametrize("unit", [UNIT, TEMPLATE], ids=["reconciler.service", "reconcile@.service"])
SHIPPED_BINARY = "/opt/reconciler/bin/reconcile"
VENV_RECONCILE = Path(sys.executable).with_name("reconcile")

pytestmark = pytest.mark.timeout(120)


def tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"{name} is not installed here (systemd's tools); the unit is not checked by systemd")
    return found


def service(unit: Path = UNIT) -> dict[str, str]:
    parser = configparser.ConfigParser(strict=False, interpolation=None, delimiters=("=",))
    parser.optionxform = str
    parser.read_string(unit.read_text())
    return dict(parser["Service"])


def local_copy(tmp_path: Path, text: str | None = None, unit: Path = UNIT) -> Path:
    """A copy systemd-analyze can check: ExecStart is the venv's reconcile; a template as its instance 0."""
    copy = tmp_path / unit.name
    copy.write_text((text or unit.read_text()).replace(SHIPPED_BINARY, str(VENV_RECONCILE)))
    return copy.with_name(unit.name.replace("@.", "@0.")) if "@." in unit.name else copy


def verify(unit: Path) -> tuple[int, list[str]]:
    done = subprocess.run(
        [tool("systemd-analyze"), "verify", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    template = unit.name.split("@")[0]
    about_it = [line for line in (done.stdout + done.stderr).splitlines() if template in line]
    return done.returncode, about_it


@UNITS
def test_systemd_analyze_verify_accepts_the_unit_without_a_warning(tmp_path: Path, unit: Path) -> None:
    assert service(unit)["ExecStart"].startswith(SHIPPED_BINARY + " ")
    code, complaints = verify(local_copy(tmp_path, unit=unit))
    assert code == 0 and complaints == [], complaints


def test_verify_would_report_a_misspelt_option_or_a_missing_binary(tmp_path: Path) -> None:
    _, complaints = verify(local_copy(tmp_path, UNIT.read_text().replace("KillMode=", "KillMod=")))
    assert any("Unknown key" in line and "KillMod" in line for line in complaints), complaints
    code, _ = verify(local_copy(tmp_path, UNIT.read_text().replace(SHIPPED_BINARY, "/nonexistent/reconcile")))
    assert code != 0


@UNITS
def test_the_unit_is_hardened(tmp_path: Path, unit: Path) -> None:
    options = service(unit)
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "KillMode": "mixed",
    }.items():
        assert options.get(key) == value, f"{key}={options.get(key)!r}"
    assert int(options["TimeoutStopSec"]) > 30 + 2, "the stop timeout must exceed --grace plus the kill grace"
    done = subprocess.run(
        [
            tool("systemd-analyze"),
            "security",
            "--offline=yes",
            "--threshold=25",
            str(local_copy(tmp_path, unit=unit)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    if "offline" in done.stderr and "unrecognized" in done.stderr:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250)")
    level = re.search(r"Overall exposure level for \S+: ([\d.]+)", done.stdout)
    assert done.returncode == 0 and level is not None, done.stdout + done.stderr
    assert float(level.group(1)) <= 2.5


@UNITS
def test_the_paths_it_writes_are_the_ones_it_names(unit: Path) -> None:
    options = service(unit)
    argv = shlex.split(options["ExecStart"])
    repo, data = argv[argv.index("--repo") + 1], argv[argv.index("--data-dir") + 1]
    assert options["ReadWritePaths"].split() == [repo] == [options["WorkingDirectory"]]
    writable = [f"/var/lib/{d}" for d in options["StateDirectory"].split()]
    assert data in writable
    home = (PACKAGING / "reconciler.sysusers").read_text().split("\n")[1].split()[-1]
    assert home in writable, "the user's home (tofu and ansible caches, ~/.ssh) must be writable"


def test_sysusers_and_tmpfiles_make_the_user_and_directories_the_unit_uses(tmp_path: Path) -> None:
    options = service()
    argv = shlex.split(options["ExecStart"])
    repo, data = argv[argv.index("--repo") + 1], argv[argv.index("--data-dir") + 1]
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    sysusers = subprocess.run(
        [tool("systemd-sysusers"), f"--root={root}", str(PACKAGING / "reconciler.sysusers")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert sysusers.returncode == 0, sysusers.stderr
    users = {
        line.split(":")[0]: line.split(":") for line in (root / "etc" / "passwd").read_text().splitlines()
    }
    assert options["User"] in users
    assert users[options["User"]][5] == data, "the user's home is the data dir (tofu and ansible caches)"
    tmpfiles = subprocess.run(
        [tool("systemd-tmpfiles"), f"--root={root}", "--create", str(PACKAGING / "reconciler.tmpfiles")],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert tmpfiles.returncode == 0, tmpfiles.stderr
    made = root / repo.lstrip("/")
    assert made.is_dir()
    assert made.stat().st_uid == int(users[options["User"]][2])


@UNITS
def test_the_exec_start_command_line_starts_the_daemon(tmp_path: Path, unit: Path) -> None:
    """ExecStart as systemd runs it (instance 0 of 1 for the template), with the paths and port made local."""
    text = service(unit)["ExecStart"].replace("%i", "0").replace("${RECONCILE_SHARDS}", "1")
    argv = shlex.split(text)
    repo, data = tmp_path / "gitops", tmp_path / "data"
    local = {argv[argv.index("--repo") + 1]: str(repo), argv[argv.index("--data-dir") + 1]: str(data)}
    local[argv[argv.index("--listen") + 1]] = "127.0.0.1:0"
    argv = [str(VENV_RECONCILE), *(local.get(a, a) for a in argv[1:])]
    subprocess.run([sys.executable, "-m", "reconciler", "init", str(repo)], check=True, capture_output=True)
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "example")
    log = tmp_path / "daemon.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=repo)
    try:
        deadline = time.monotonic() + 60
        while "reconcile daemon: watching" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        assert "reconcile daemon: watching" in log.read_text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert '"message": "daemon stopped"' in log.read_text()
