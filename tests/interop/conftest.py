"""Interop tests run against SQLite; the data layer is covered on PostgreSQL elsewhere."""

from __future__ import annotations

import pytest

from tests.running import RunningManager, manager

__all__ = ["RunningManager", "manager"]


@pytest.fixture
def db_kind() -> str:
    return "sqlite"
