"""What happens to Hubs, written to SQL: registrations, connects and disconnects (at once,
with audit records) and LOAD figures (in batches, because they change every 5 s)."""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import time
from collections.abc import Awaitable, Callable, Sequence

from sqlalchemy import select
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm.attributes import set_committed_value

from manager.common import now_ms
from manager.db import audit, repo, routing
from manager.db.models import AccessKey, Hub
from manager.hubs.endings import Ending
from manager.hubs.registry import LiveHub

_ID_ALPHABET = string.ascii_lowercase + string.digits
PROOFS_PER_KEY = 50_000  # one per Hub process that used the key; Hubs resend theirs
PROOF_PRUNE_EVERY = 1000
KEY_CACHE_S = 1.0
RELEASE_ATTEMPTS = 5
log = logging.getLogger("manager.hubs")


Job = Callable[[AsyncSession], Awaitable[None]]


class WriteBatcher:
    """Runs the writes of many tunnels in one transaction per batch. Each caller still
    awaits its own write, but a burst of N connects (a manager restart brings every Hub
    back at once) costs ~N/500 commits instead of N, and never N pooled connections: at
    5,000 Hubs one transaction each exhausted the pool and refused Hubs for minutes."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        max_batch: int = 500,
        max_batch_s: float = 0.25,
    ) -> None:
        self.sessions = sessions
        self.max_batch = max_batch
        # A batch holds the database's write lock (SQLite: the whole file) until it commits,
        # and every statement is an event-loop round trip: with the loop busy (thousands of
        # Hubs joining) 500 jobs held it for 30 s and more, and other writers failed with
        # "database is locked". So a batch also commits once it has run this long.
        self.max_batch_s = max_batch_s
        self._queue: list[tuple[Job, asyncio.Future[None]]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def run(self, job: Job) -> None:
        done = asyncio.get_running_loop().create_future()
        self._queue.append((job, done))
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        await asyncio.shield(done)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                async with self.sessions() as s, s.begin():
                    began = time.monotonic()
                    for n, (job, _done) in enumerate(batch):
                        await job(s)
                        if time.monotonic() - began > self.max_batch_s:
                            # The rest go first in the next batch, in their order.
                            self._queue[:0] = batch[n + 1 :]
                            del batch[n + 1 :]
                            break
            except BaseException as exc:
                for _job, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for _job, done in batch:
                if not done.done():
                    done.set_result(None)


class HubStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], replica: str) -> None:
        self.sessions = sessions
        self.replica = replica
        self._proofs_added = 0
        self._writes = WriteBatcher(sessions)
        self._proofs: dict[str, int] | None = None  # tag -> key id, all of them (~100 B each)
        self._proofs_loading = asyncio.Lock()
        self._keys: dict[str, tuple[float, AccessKey | None]] = {}
        self._key_reads: dict[str, asyncio.Future[AccessKey | None]] = {}
        # Told the Space after each connect or disconnect record, whether it committed or
        # not (the Space's list keeps its rows until then: manager.services.space_view).
        self.on_rows_changed: Callable[[str], None] | None = None

    def _rows_changed(self, space_id: str) -> None:
        if self.on_rows_changed is not None:
            self.on_rows_changed(space_id)

    async def access_key(self, prefix: str) -> AccessKey | None:
        """The key row for a prefix, at most KEY_CACHE_S old: a reconnect storm asks for the
        same few keys thousands of times. Revocation still wins within one supervisor sweep."""
        now = time.monotonic()
        hit = self._keys.get(prefix)
        if hit is not None and now - hit[0] < KEY_CACHE_S:
            return hit[1]
        # One read per prefix at a time: 10,000 Hubs reconnecting together would otherwise
        # all miss at once and queue for the pool (measured: 30 s pool timeouts).
        pending = self._key_reads.get(prefix)
        if pending is None:
            pending = asyncio.ensure_future(self._read_key(prefix, now))
            self._key_reads[prefix] = pending
            pending.add_done_callback(lambda _f: self._key_reads.pop(prefix, None))
        return await asyncio.shield(pending)

    async def _read_key(self, prefix: str, now: float) -> AccessKey | None:
        async with self.sessions() as s:
            row = await repo.access_key_by_prefix(s, prefix)
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[prefix] = (now, row)
        return row

    def forget_keys(self) -> None:
        self._keys.clear()

    async def proof_key_id(self, tag: str) -> int | None:
        """Which key a remembered proof belongs to; the table is read once, then kept."""
        if self._proofs is None:
            async with self._proofs_loading:
                if self._proofs is None:
                    async with self.sessions() as s:
                        self._proofs = await repo.all_proofs(s)
        return self._proofs.get(tag)

    async def release_replica(self) -> int:
        """At start-up: Hubs this replica held before a restart are not connected any more.

        Another replica may be marking the same rows at that moment (it found our lease
        expired), and PostgreSQL then aborts one of the two as a deadlock: try again."""
        for attempt in range(RELEASE_ATTEMPTS):
            try:
                async with self.sessions() as s, s.begin():
                    return await repo.mark_replica_hubs_disconnected(
                        s, self.replica, now_ms(), Ending.RESTARTED
                    )
            except DBAPIError as exc:
                if attempt == RELEASE_ATTEMPTS - 1 or "deadlock" not in str(exc).lower():
                    raise
                await asyncio.sleep(0.1 * (attempt + 1))
        return 0

    async def new_hub_id(self, space_id: str, live: set[str]) -> str:
        async with self.sessions() as s:
            taken = await repo.hub_ids_in_space(s, space_id)
        while True:
            candidate = "sth-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
            if candidate not in taken and candidate not in live:
                return candidate

    async def connected(self, hub: LiveHub, description: str, tags: list[str]) -> None:
        stamp = now_ms()

        async def write(s: AsyncSession) -> None:
            row = await repo.get_hub(s, hub.space_id, hub.hub_id)
            if row is None:
                row = Hub(
                    space_id=hub.space_id, hub_id=hub.hub_id, created_ms=stamp, self_hosted=True
                )
                s.add(row)
            row.description = description
            row.tags = tags
            row.connected = True
            row.last_connected_ms = stamp
            row.disconnect_reason = None
            row.replica = self.replica
            row.access_key_id = hub.access_key_id
            hub.connected_ms = stamp
            await audit.record(
                s,
                space_id=hub.space_id,
                hub_id=hub.hub_id,
                op_code=audit.HUB_CONNECTED,
                object_id=hub.hub_id,
                detail={"source": hub.source},
            )
            await s.flush()
            hub.db_id = row.id
            hub.epoch = await routing.bump_epoch(s, row.id)
            set_committed_value(row, "epoch", hub.epoch)  # a disconnect in this batch reads it

        try:
            await self._writes.run(write)
        finally:
            self._rows_changed(hub.space_id)

    async def disconnected(self, hub: LiveHub, reason: str) -> None:
        stamp = now_ms()

        async def write(s: AsyncSession) -> None:
            # Plain UPDATEs by primary key, no read first: a manager stopping with 3,000
            # Hubs writes 3,000 of these in a row (the ORM read-modify-write took ~30 s
            # on SQLite, holding its write lock the whole time).
            if hub.db_id is None or not await repo.record_disconnect(
                s,
                hub.db_id,
                hub.epoch,
                at_ms=stamp,
                reason=reason[:500],
                load=hub.state.load,
                network_info=hub.state.network_info,
            ):
                return  # never recorded as connected, or deleted since
            await audit.record(
                s,
                space_id=hub.space_id,
                hub_id=hub.hub_id,
                op_code=audit.HUB_DISCONNECTED,
                object_id=hub.hub_id,
                detail={"reason": reason[:500]},
            )

        try:
            await self._writes.run(write)
        finally:
            self._rows_changed(hub.space_id)

    async def save_loads(self, hubs: Sequence[LiveHub]) -> None:
        rows = [
            (h.db_id, h.state.load, now_ms())
            for h in hubs
            if h.db_id is not None and h.state.load is not None
        ]
        if not rows:
            return
        async with self.sessions() as s, s.begin():
            await repo.save_loads(s, rows)

    async def remember_proof(self, tag: str, access_key_id: int) -> None:
        """Keep a verified proof for later restarts; losing one only costs a scrypt run."""
        self._proofs_added += 1
        prune = self._proofs_added % PROOF_PRUNE_EVERY == 0

        async def write(s: AsyncSession) -> None:
            if await repo.proof_key_id(s, tag) is None:  # the same proof, verified twice
                await repo.add_proof(s, tag, access_key_id, now_ms())
            if prune:
                await repo.prune_proofs(s, access_key_id, PROOFS_PER_KEY)

        try:
            await self._writes.run(write)
        except SQLAlchemyError as exc:
            log.warning("could not remember a verified key proof: %s", type(exc).__name__)
            return
        if self._proofs is not None:
            self._proofs[tag] = access_key_id
            if prune:
                self._proofs = None  # reread after pruning

    async def revoked_among(self, key_ids: set[int]) -> set[int]:
        if not key_ids:
            return set()
        async with self.sessions() as s:
            q = select(AccessKey.id).where(
                AccessKey.id.in_(key_ids), AccessKey.revoked_ms.is_not(None)
            )
            return set((await s.scalars(q)).all())
