"""What happens to Hubs, written to SQL: registrations, connects and disconnects (at once,
with audit records) and LOAD figures (in batches, because they change every 5 s)."""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from manager.db import repo
from manager.db.models import AccessKey, Hub
from manager.hubs.registry import LiveHub
from manager.services import audit
from manager.services.common import now_ms

_ID_ALPHABET = string.ascii_lowercase + string.digits
PROOFS_PER_KEY = 50_000  # one per Hub process that used the key; Hubs resend theirs
PROOF_PRUNE_EVERY = 1000
log = logging.getLogger("manager.hubs")


class HubStore:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], replica: str) -> None:
        self.sessions = sessions
        self.replica = replica
        self._proofs_added = 0

    async def release_replica(self) -> int:
        """At start-up: Hubs this replica held before a restart are not connected any more."""
        async with self.sessions() as s, s.begin():
            return await repo.mark_replica_hubs_disconnected(
                s, self.replica, now_ms(), "manager restarted"
            )

    async def new_hub_id(self, space_id: str, live: set[str]) -> str:
        async with self.sessions() as s:
            taken = await repo.hub_ids_in_space(s, space_id)
        while True:
            candidate = "sth-" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(6))
            if candidate not in taken and candidate not in live:
                return candidate

    async def connected(self, hub: LiveHub, description: str, tags: list[str]) -> None:
        stamp = now_ms()
        async with self.sessions() as s, s.begin():
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

    async def disconnected(self, hub: LiveHub, reason: str) -> None:
        stamp = now_ms()
        async with self.sessions() as s, s.begin():
            row = await repo.get_hub(s, hub.space_id, hub.hub_id)
            if row is None:
                return
            # When a newer tunnel of this Hub id already took over, its state is the truth.
            if (row.last_connected_ms or 0) <= (hub.connected_ms or 0):
                if row.replica in (self.replica, None):
                    row.connected = False
                    row.replica = None
                row.last_disconnected_ms = stamp
                row.disconnect_reason = reason[:500]
            if hub.state.load is not None:
                row.last_load = hub.state.load
                row.last_load_ms = stamp
            if hub.state.network_info is not None:
                row.network_info = hub.state.network_info
            await audit.record(
                s,
                space_id=hub.space_id,
                hub_id=hub.hub_id,
                op_code=audit.HUB_DISCONNECTED,
                object_id=hub.hub_id,
                detail={"reason": reason[:500]},
            )

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
        try:
            async with self.sessions() as s, s.begin():
                await repo.add_proof(s, tag, access_key_id, now_ms())
        except IntegrityError:
            return  # the same proof, verified twice at once
        except SQLAlchemyError as exc:
            log.warning("could not remember a verified key proof: %s", type(exc).__name__)
            return
        self._proofs_added += 1
        if self._proofs_added % PROOF_PRUNE_EVERY == 0:
            async with self.sessions() as s, s.begin():
                await repo.prune_proofs(s, access_key_id, PROOFS_PER_KEY)

    async def revoked_among(self, key_ids: set[int]) -> set[int]:
        if not key_ids:
            return set()
        async with self.sessions() as s:
            q = select(AccessKey.id).where(
                AccessKey.id.in_(key_ids), AccessKey.revoked_ms.is_not(None)
            )
            return set((await s.scalars(q)).all())
