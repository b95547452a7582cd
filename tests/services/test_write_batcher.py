"""Tunnel writes share transactions: a burst is one commit, a failure reaches every caller
of that batch and not the next one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import cast

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from manager.db import audit, repo
from manager.db.models import AuditEvent
from manager.hubs.registry import HubLink, LiveHub
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


async def test_connect_disconnect_reconnect_in_one_batch(svc: Services, world: World):
    """A Hub that drops and comes back within one batch ends up connected with the newest
    epoch; the old tunnel's disconnect (a plain UPDATE) neither wins over the new one nor
    leaves the session's copy of the row stale."""
    store = svc.store
    first, second, third = (LiveHub(world.space_id, "flappy", cast(HubLink, None)) for _ in "123")
    await store.connected(first, "one", [])
    second.state.load = {"avgLoad": 7}
    # Queued together, so one batch (one session) runs them in this order.
    await asyncio.gather(
        store.disconnected(first, "tunnel closed"),
        store.connected(second, "two", []),
        store.disconnected(second, "flapped"),
        store.connected(third, "three", []),
    )
    assert first.epoch < second.epoch < third.epoch
    async with svc.sessions() as s:
        row = await repo.get_hub(s, world.space_id, "flappy")
    assert row is not None and row.connected and row.epoch == third.epoch
    assert row.description == "three" and row.last_load == {"avgLoad": 7}
    await store.disconnected(first, "a stale tunnel ends late")  # an old epoch: no effect
    async with svc.sessions() as s:
        row = await repo.get_hub(s, world.space_id, "flappy")
    assert row is not None and row.connected and row.disconnect_reason is None


async def test_a_batch_commits_once_it_has_run_its_time(svc: Services, world: World):
    """A batch is also bounded in time (it holds the write lock until it commits): with no
    time at all every job commits on its own, and none is lost or reordered."""
    writer = WriteBatcher(svc.sessions, max_batch=50, max_batch_s=0.0)
    commits = 0

    @event.listens_for(svc.engine.sync_engine, "commit")
    def _count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    def job(i: int):
        async def write(s: AsyncSession) -> None:
            await audit.record(
                s, space_id=world.space_id, op_code=audit.HUB_DISCONNECTED, object_id=f"t{i}"
            )

        return write

    await asyncio.gather(*(writer.run(job(i)) for i in range(6)))
    assert commits == 6
    async with svc.sessions() as s:
        q = (
            select(AuditEvent.object_id)
            .where(AuditEvent.op_code == audit.HUB_DISCONNECTED)
            .order_by(AuditEvent.id)
        )
        assert list((await s.scalars(q)).all()) == [f"t{i}" for i in range(6)]
