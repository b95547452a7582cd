"""Interop tests run against SQLite; the data layer is covered on PostgreSQL elsewhere, and
the Hub lifecycle modules (test_hub_lifecycle.py, test_real_hub_lifecycle.py) override
`db_kind` to run on both.

`real_hubs` starts real STH 1.0.1 Hubs (`tests/interop/sth.py`) into the running manager's
default Space and stops them, their Instances and runners after the test; `si` is `si`
1.0.1 pointed at that manager with the admin token, in a scratch `HOME`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.interop.sth import HubFleet, Si
from tests.running import RunningManager, manager

__all__ = ["RunningManager", "manager"]


@pytest.fixture
def db_kind() -> str:
    return "sqlite"


@pytest.fixture
async def real_hubs(manager: RunningManager, tmp_path: Path) -> AsyncIterator[HubFleet]:
    fleet = HubFleet(manager, tmp_path)
    try:
        yield fleet
    finally:
        await fleet.stop_all()


@pytest.fixture
async def si(manager: RunningManager, tmp_path: Path) -> Si:
    cli = Si(tmp_path / "si", manager.url, manager.world.admin.token)
    await cli.configure()
    return cli
