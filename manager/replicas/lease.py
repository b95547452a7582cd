"""This replica's lease in the `replicas` table, and the reaping of replicas that lost theirs.

Every replica renews its own lease every third of its length and, in the same beat, looks
for leases that ran out: those replicas died (or stalled), so their Hubs are marked
disconnected and routes stop pointing at them. A replica that finds its own row reaped
(a long stall) registers again and re-claims the Hubs it still holds, unless a newer
admission (a higher epoch) took one meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from manager import rounds
from manager.common import now_ms
from manager.db import repo, routing
from manager.hubs.endings import Ending
from manager.hubs.registry import HubRegistry

log = logging.getLogger("manager.replicas")


class ReplicaLease:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        registry: HubRegistry,
        replica: str,
        peer_url: str,
        lease_s: float = 10.0,
    ) -> None:
        self.sessions = sessions
        self.registry = registry
        self.replica = replica
        self.peer_url = peer_url
        self.lease_s = lease_s
        self.held = False
        # Whether any other replica is alive, as of the last beat: with none (one process,
        # the SQLite default) routing asks nobody, so admissions and lists cost no extra SQL.
        self.others_alive = True
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()

    async def is_held(self) -> bool:
        """The readiness check: other replicas can route to this one (an app whose lifespan
        never ran, as in unit tests, takes part in no routing and is not held back)."""
        return self.held or self._task is None

    def _until(self, now: int) -> int:
        return now + int(self.lease_s * 1000)

    async def start(self) -> None:
        await self._register()
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """A clean exit gives the lease up at once, so nobody routes here any more."""
        await rounds.stop(self._task, self._stopping)
        with contextlib.suppress(SQLAlchemyError, OSError):
            async with self.sessions() as s, s.begin():
                await routing.drop_replica(s, self.replica)
        self.held = False

    async def _register(self) -> None:
        now = now_ms()
        async with self.sessions() as s, s.begin():
            await routing.register_replica(s, self.replica, self.peer_url, now, self._until(now))
            alive = await routing.live_replicas(s, now)
        self.held = True
        self.others_alive = any(r != self.replica for r, _ in alive)
        log.info("replica %s registered (peer URL %s)", self.replica, self.peer_url)

    async def _loop(self) -> None:
        while await rounds.pause(self._stopping, self.lease_s / 3):
            try:
                await self.beat()
            except (SQLAlchemyError, OSError) as exc:
                self.held = False
                log.warning("replica %s: lease renewal failed: %s", self.replica, exc)

    async def beat(self) -> None:
        """Renew ours; reap the replicas whose lease ran out."""
        now = now_ms()
        async with self.sessions() as s, s.begin():
            renewed = await routing.renew_lease(s, self.replica, self._until(now))
        if not renewed:
            log.warning("replica %s: lease was lost; registering again", self.replica)
            await self._register()
            held = [(h.db_id, h.epoch) for h in self.registry if h.db_id is not None]
            async with self.sessions() as s, s.begin():
                count = await routing.reclaim_hubs(s, self.replica, held)
            log.info("replica %s: re-claimed %d of %d Hubs", self.replica, count, len(held))
        self.held = True
        async with self.sessions() as s, s.begin():
            alive = await routing.live_replicas(s, now)
            self.others_alive = any(r != self.replica for r, _ in alive)
            dead = [r for r in await routing.expired_replicas(s, now) if r != self.replica]
            for replica in dead:
                if not await routing.drop_replica(s, replica, expired_before=now):
                    continue  # it registered again meanwhile (restarted): its own start-up
                n = await repo.mark_replica_hubs_disconnected(s, replica, now, Ending.REPLICA_LOST)
                log.warning(
                    "replica %s lost its lease; %d of its Hubs marked disconnected", replica, n
                )
