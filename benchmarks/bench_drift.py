"""One drift pass (issue 13): ``reconcile check`` beside the same probes run directly.

A fleet of ``BENCH_ENVS`` environments (default 100), each with a ``tofu``
step (a ``terraform_data`` module, applied for real) and an ``ansible`` step
(a playbook that writes a file), is applied once. Then, timed, with the same
parallelism (``--workers``):

1. **the drift pass**: one ``reconcile check`` process over the whole fleet
   (everything in sync, so nothing is written), against
2. **the baseline**: the same ``terraform plan -detailed-exitcode`` in each
   working directory with its var file, and the same ``ansible-playbook
   --check --diff`` with an equivalent inventory and extra vars, started
   directly as subprocesses, ``--workers`` at a time.

The ratio is (1) / (2). Where the overhead goes is printed beside it: the
process's start (importing, loading the desired commit and the state
branch: a ``check`` that selects nothing), and per look the module sync, the
generated files, the export lease and the events callback (the rest).

Run: ``BENCH_ENVS=10 python benchmarks/bench_drift.py`` (``--workers N``, ``--repeat N``).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
TERRAFORM = shutil.which("tofu") or shutil.which("terraform")
ANSIBLE = Path(sys.executable).parent / "ansible-playbook"

MODULE = """\
variable "name" {
  type = string
}

resource "terraform_data" "marker" {
  input = var.name
}
"""

PLAYBOOK = """\
- hosts: all
  gather_facts: false
  tasks:
    - name: Write the page
      ansible.builtin.copy:
        dest: "{{ reconcile_data_dir }}/page.txt"
        content: "hello from {{ reconcile_environment }}\\n"
        mode: "0644"
"""


def environment(name: str, binary: str) -> str:
    doc = {
        "apiVersion": "reconciler/v1",
        "kind": "Environment",
        "metadata": {"name": name, "labels": {"bench": "drift"}},
        "spec": {
            "desiredState": "configured",
            "phases": {
                "provision": [
                    {
                        "tofu": {
                            "module": "infra/marker",
                            "binary": binary,
                            "vars": {"name": "{{ environment.name }}"},
                        }
                    }
                ],
                "configure": [{"ansible": {"playbook": "ansible/page.yml"}}],
            },
        },
    }
    return json.dumps(doc, indent=2)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


def reconcile(repo: Path, data: Path, *args: str, ok: tuple[int, ...] = (0,)) -> float:
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "reconciler", *args, "--repo", str(repo), "--data-dir", str(data)],
        env=ENV,
        capture_output=True,
        check=False,
    )
    elapsed = time.perf_counter() - began
    if done.returncode not in ok:
        raise SystemExit(
            f"reconcile {' '.join(args)} exited {done.returncode}: {done.stdout.decode()[-1500:]}"
            f"{done.stderr.decode()[-1500:]}"
        )
    return elapsed


def build(root: Path, envs: int, workers: int) -> tuple[Path, Path, list[str]]:
    assert TERRAFORM is not None
    repo, data = root / "repo", root / "data"
    (repo / "infra" / "marker").mkdir(parents=True)
    (repo / "ansible").mkdir()
    (repo / "environments").mkdir()
    (repo / "infra" / "marker" / "main.tf").write_text(MODULE)
    (repo / "ansible" / "page.yml").write_text(PLAYBOOK)
    (repo / "reconciler.yaml").write_text("apiVersion: reconciler/v1\nkind: Config\n")
    names = [f"env-{i:04d}" for i in range(envs)]
    for name in names:
        (repo / "environments" / f"{name}.yaml").write_text(environment(name, Path(TERRAFORM).name))
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=bench", "-c", "user.email=bench@localhost", "commit", "-q", "-m", "fleet")
    print(f"applying {envs} environments for real (setup, not timed)...", flush=True)
    began = time.perf_counter()
    reconcile(repo, data, "apply", "--workers", str(workers))
    print(f"  applied in {time.perf_counter() - began:.1f} s", flush=True)
    return repo, data, names


def direct_pass(data: Path, names: list[str], workers: int, scratch: Path) -> float:
    """The same probes as plain subprocesses: ``terraform plan`` and ``ansible-playbook --check --diff``."""
    assert TERRAFORM is not None
    playbook = scratch / "page.yml"
    playbook.write_text(PLAYBOOK)
    inventory = scratch / "inventory.ini"
    inventory.write_text(f"localhost ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    tf_env = {**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "TF_INPUT": "0"}

    def one(name: str) -> None:
        workdir = data / name / "tofu" / "infra__marker"
        plan = subprocess.run(
            [
                TERRAFORM,
                "plan",
                "-detailed-exitcode",
                "-input=false",
                "-lock=false",
                "-no-color",
                "-var-file=.reconcile.tfvars.json",
            ],
            cwd=workdir,
            env=tf_env,
            capture_output=True,
            check=False,
        )
        if plan.returncode != 0:
            raise SystemExit(
                f"{name}: terraform plan exited {plan.returncode}: {plan.stdout.decode()[-800:]}"
            )
        extra = scratch / f"{name}.json"
        extra.write_text(json.dumps({"reconcile_data_dir": str(data / name), "reconcile_environment": name}))
        home = data / name / "ansible"  # the same as the reconciler's runs use: warm alike
        ansible_env = {
            **os.environ,
            "ANSIBLE_NOCOLOR": "1",
            "ANSIBLE_HOME": str(home / "home"),
            "ANSIBLE_LOCAL_TEMP": str(home / "tmp"),
            "ANSIBLE_RETRY_FILES_ENABLED": "0",
        }
        check = subprocess.run(
            [
                str(ANSIBLE),
                "-i",
                str(inventory),
                "--extra-vars",
                f"@{extra}",
                "--check",
                "--diff",
                str(playbook),
            ],
            env=ansible_env,
            capture_output=True,
            check=False,
        )
        if check.returncode != 0 or b"changed=0" not in check.stdout:
            raise SystemExit(f"{name}: ansible-playbook --check: {check.stdout.decode()[-800:]}")

    began = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(one, names))
    return time.perf_counter() - began


def state_commits(repo: Path) -> int:
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--count", "reconciler/state"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout.strip())


def median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", type=int, default=int(os.environ.get("BENCH_ENVS", "100")))
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    if TERRAFORM is None or not ANSIBLE.exists():
        print("bench_drift: needs tofu or terraform on PATH and ansible-playbook beside Python; skipped")
        return
    with tempfile.TemporaryDirectory(prefix="bench-drift-") as tmp:
        root = Path(tmp)
        repo, data, names = build(root, args.envs, args.workers)
        scratch = root / "direct"
        scratch.mkdir()
        before = state_commits(repo)
        directs: list[float] = []
        checks: list[float] = []
        for i in range(args.repeat):  # alternated, so neither always runs on a warmer (or busier) machine
            for which in ("direct", "check") if i % 2 == 0 else ("check", "direct"):
                if which == "direct":
                    directs.append(direct_pass(data, names, args.workers, scratch))
                else:
                    checks.append(reconcile(repo, data, "check", "--workers", str(args.workers)))
        direct, checked = statistics.median(directs), statistics.median(checks)
        startup = median(lambda: reconcile(repo, data, "check", "-l", "bench=none"), max(3, args.repeat))
        written = state_commits(repo) - before
    per_env = (checked - startup - direct) / len(names)
    print(
        f"drift pass over {len(names)} environments (tofu + ansible each), {args.workers} at a time, "
        f"median of {args.repeat} (load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    print(f"  reconcile check                 {checked:8.2f} s")
    print(f"  same probes run directly        {direct:8.2f} s   (baseline)")
    print(f"  ratio                           {checked / direct:8.2f}x")
    print("where the difference goes:")
    print(f"  process start + load (no look)  {startup:8.2f} s")
    print(f"  per environment, the rest       {per_env * 1000:8.1f} ms  (module sync, generated files,")
    print("                                              export lease, events callback, state read;")
    print("                                              below the noise when near or under 0)")
    print(f"state-branch commits written by the passes: {written} (everything in sync: none expected)")


if __name__ == "__main__":
    main()
