"""Connector tests run against SQLite (the data layer is covered on PostgreSQL elsewhere);
one real 0.18.7 Hub per module, since it takes a second or two to start."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.connector.helpers import Host018
from tests.running import RunningManager, manager

__all__ = ["RunningManager", "manager"]


@pytest.fixture
def db_kind() -> str:
    return "sqlite"


@pytest.fixture(scope="module")
def host018(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host018]:
    hub = Host018.start(Path(tmp_path_factory.mktemp("host018")))
    try:
        yield hub
    finally:
        hub.stop()
