"""Audit as the clients read it: NDJSON records from SQL, history first, then new ones as
they are written (space-api.md M3, S7). Proxied operations are recorded through a small
batching writer so the proxy's hot path never waits for the database."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from manager.db import audit, repo

log = logging.getLogger("manager.services")

POLL_S = 1.0
BATCH = 500


async def audit_lines(
    sessions: async_sessionmaker[AsyncSession], space_ids: Sequence[str], *, follow: bool = True
) -> AsyncIterator[bytes]:
    last = 0
    while True:
        async with sessions() as s:
            rows = await repo.audit_events(s, space_ids=space_ids, after_id=last, limit=BATCH)
        for row in rows:
            last = row.id
            yield json.dumps(audit.as_record(row), separators=(",", ":")).encode() + b"\n"
        if len(rows) == BATCH:
            continue
        if not follow:
            return
        await asyncio.sleep(POLL_S)


class AuditWriter:
    """Queues audit records and writes them in one transaction every half second."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], max_queue: int = 10_000):
        self.sessions = sessions
        self.max_queue = max_queue
        self._queue: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self.dropped = 0

    def add(self, **record: Any) -> None:
        if len(self._queue) >= self.max_queue:
            self.dropped += 1  # the database is far behind: keep the proxy serving
            return
        self._queue.append(audit.row(**record))  # stamped now, written later

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        try:
            await self.flush()
        except Exception as exc:
            log.warning("audit records lost at shutdown (%d): %r", len(self._queue), exc)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("audit flush failed: %r", exc)

    async def flush(self) -> None:
        """One multi-row INSERT per batch; a failed batch goes back to the queue (up to
        `max_queue`), so a database outage delays records instead of losing them."""
        if not self._queue:
            return
        batch, self._queue = self._queue, []
        try:
            async with self.sessions() as s, s.begin():
                await repo.add_audit_rows(s, batch)
        except BaseException:
            room = max(0, self.max_queue - len(self._queue))
            self.dropped += max(0, len(batch) - room)
            self._queue[:0] = batch[:room]
            raise
