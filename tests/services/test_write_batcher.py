"""Tunnel writes share transactions: a burst is one commit, a failure reaches every caller
of that batch and not the next one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from manager.db import audit
from manager.db.models import AuditEvent
from manager.hubs.store import WriteBatcher
from manager.services.context import Services
from tests.conftest import World


async def test_a_burst_is_one_transaction_and_failures_stay_in_their_batch(
    svc: Services, world: World, tmp_path: Path
):
    commits = 0
    writer = WriteBatcher(svc.sessions, max_batch=50)

    def job(i: int):
        async def write(s: AsyncSession) -> None:
            await audit.record(
                s, space_id=world.space_id, op_code=audit.HUB_CONNECTED, object_id=f"h{i}"
            )

        return write

    @event.listens_for(svc.engine.sync_engine, "commit")
    def _count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    await asyncio.gather(*(writer.run(job(i)) for i in range(120)))
    assert commits <= 4  # 120 writes in batches of at most 50
    async with svc.sessions() as s:
        q = select(func.count()).where(AuditEvent.op_code == audit.HUB_CONNECTED)
        assert await s.scalar(q) == 120

    gone = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    writer.sessions = async_sessionmaker(gone)
    results = await asyncio.gather(*(writer.run(job(i)) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, SQLAlchemyError) for r in results)
    await gone.dispose()
    writer.sessions = svc.sessions
    await writer.run(job(999))  # the next batch is unaffected
    with pytest.raises(ZeroDivisionError):

        async def broken(_s: AsyncSession) -> None:
            raise ZeroDivisionError

        await writer.run(broken)
