from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.daemon.kit import Daemons, Server, make_server


@pytest.fixture
def daemons(tmp_path: Path) -> Iterator[Daemons]:
    started = Daemons(tmp_path)
    try:
        yield started
    finally:
        started.close()


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return make_server(tmp_path)
