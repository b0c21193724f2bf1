"""``reconcile serve`` as a real process: the dashboard from a state branch alone."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.daemon.kit import ROOT, wait_for

_LISTENING = re.compile(r"^reconcile serve: .*; http://[^ ]*:(\d+)/", re.MULTILINE)


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    log: Path
    port: int = 0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@contextlib.contextmanager
def serve(
    repo: Path, data: Path, log: Path, *, listen: str = "127.0.0.1:0", env: dict[str, str] | None = None
) -> Iterator[Served]:
    """Start ``reconcile serve`` on a port of its choosing, read the port from its start-up line."""
    environ = {**os.environ, **(env or {})}
    environ.setdefault("PYTHONPATH", str(ROOT))
    argv = [sys.executable, "-m", "reconciler", "serve", "--repo", str(repo), "--data-dir", str(data)]
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*argv, "--listen", listen], stdout=out, stderr=subprocess.STDOUT, env=environ
        )
    served = Served(proc, log)
    try:

        def listening() -> bool:
            found = _LISTENING.search(served.output())
            if found is not None:
                served.port = int(found.group(1))
                return True
            if proc.poll() is not None:
                raise AssertionError(f"reconcile serve exited {proc.returncode}:\n{served.output()}")
            return False

        wait_for("reconcile serve's start-up line", listening, 30)
        yield served
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
