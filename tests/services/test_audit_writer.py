"""The proxy's audit records are batched; a database outage delays them, never loses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from manager.db import audit
from manager.db.models import AuditEvent
from manager.services.audit_stream import AuditWriter
from manager.services.context import Services
from tests.conftest import World


async def _proxied(svc: Services, space_id: str) -> list[AuditEvent]:
    async with svc.sessions() as s:
        q = select(AuditEvent).where(
            AuditEvent.space_id == space_id, AuditEvent.op_code == audit.PROXIED_OPERATION
        )
        return list((await s.scalars(q.order_by(AuditEvent.id))).all())


async def test_a_failed_batch_is_kept_and_written_later(
    svc: Services, world: World, tmp_path: Path
):
    gone = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'missing' / 'db.sqlite'}")
    writer = AuditWriter(async_sessionmaker(gone), max_queue=3)
    for i in range(4):
        writer.add(space_id=world.space_id, op_code=audit.PROXIED_OPERATION, object_id=f"/r{i}")
    assert writer.dropped == 1  # the queue bound holds while the database is away
    with pytest.raises(SQLAlchemyError):
        await writer.flush()
    with pytest.raises(SQLAlchemyError):
        await writer.flush()
    assert writer.dropped == 1
    await gone.dispose()

    writer.sessions = svc.sessions
    await writer.flush()
    rows = await _proxied(svc, world.space_id)
    assert [r.object_id for r in rows] == ["/r0", "/r1", "/r2"]
    assert all(r.org_id == world.org_id for r in rows)
    await writer.flush()  # nothing left, nothing twice
    assert len(await _proxied(svc, world.space_id)) == 3
