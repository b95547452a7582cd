"""The one reviewed revision round-trips and matches the models, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

from sqlalchemy import inspect

from manager.db import migrate
from manager.db.engine import make_engine
from manager.db.models import Base


async def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        async with engine.connect() as conn:
            names = await conn.run_sync(lambda c: set(inspect(c).get_table_names()))
    finally:
        await engine.dispose()
    return names - {"alembic_version"}


async def test_upgrade_downgrade_upgrade_and_check(db_url: str) -> None:
    await asyncio.to_thread(migrate.upgrade, db_url)
    assert await _tables(db_url) == set(Base.metadata.tables)
    await asyncio.to_thread(migrate.downgrade, db_url, "base")
    assert await _tables(db_url) == set()
    await asyncio.to_thread(migrate.upgrade, db_url)
    await asyncio.to_thread(migrate.check, db_url)
    assert await _tables(db_url) == set(Base.metadata.tables)
