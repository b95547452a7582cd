"""The SQL side of several replicas: leases, which replica holds which Hub, and epochs.

Queries only; the rules (when a lease is lost, when a route is stale) live in
`manager.replicas`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from manager.db.models import Hub, Replica


@dataclass(frozen=True, slots=True)
class HubRoute:
    """Where a Hub's tunnel is, as SQL last recorded it."""

    replica: str
    peer_url: str
    epoch: int


async def register_replica(
    s: AsyncSession, replica_id: str, peer_url: str, now_ms: int, lease_until_ms: int
) -> None:
    row = await s.get(Replica, replica_id)
    if row is None:
        s.add(
            Replica(
                id=replica_id, peer_url=peer_url, started_ms=now_ms, lease_until_ms=lease_until_ms
            )
        )
    else:
        row.peer_url = peer_url
        row.started_ms = now_ms
        row.lease_until_ms = lease_until_ms


async def renew_lease(s: AsyncSession, replica_id: str, lease_until_ms: int) -> bool:
    """False when the row is gone: another replica found the lease expired and cleared it."""
    res = await s.execute(
        update(Replica).where(Replica.id == replica_id).values(lease_until_ms=lease_until_ms)
    )
    return bool(getattr(res, "rowcount", 0))


async def drop_replica(s: AsyncSession, replica_id: str, expired_before: int | None = None) -> bool:
    """Forget a replica; with `expired_before`, only if its lease is still that old (it may
    have just registered again, restarted). Whether a row went."""
    q = delete(Replica).where(Replica.id == replica_id)
    if expired_before is not None:
        q = q.where(Replica.lease_until_ms < expired_before)
    return bool(getattr(await s.execute(q), "rowcount", 0))


async def expired_replicas(s: AsyncSession, now_ms: int) -> list[str]:
    q = select(Replica.id).where(Replica.lease_until_ms < now_ms)
    return list((await s.scalars(q)).all())


async def live_replicas(s: AsyncSession, now_ms: int) -> Sequence[tuple[str, str]]:
    q = select(Replica.id, Replica.peer_url).where(Replica.lease_until_ms >= now_ms)
    return [(r.id, r.peer_url) for r in (await s.execute(q)).all()]


async def replicas_holding(
    s: AsyncSession, space_id: str, now_ms: int
) -> Sequence[tuple[str, str]]:
    """Live replicas that hold at least one connected Hub of the Space."""
    q = (
        select(Replica.id, Replica.peer_url)
        .where(Replica.lease_until_ms >= now_ms)
        .where(
            Replica.id.in_(
                select(Hub.replica).where(Hub.space_id == space_id, Hub.connected.is_(True))
            )
        )
    )
    return [(r.id, r.peer_url) for r in (await s.execute(q)).all()]


async def connected_elsewhere(s: AsyncSession, space_id: str, replica: str, now_ms: int) -> int:
    q = (
        select(func.count())
        .select_from(Hub)
        .join(Replica, Replica.id == Hub.replica)
        .where(Hub.space_id == space_id, Hub.connected.is_(True), Hub.replica != replica)
        .where(Replica.lease_until_ms >= now_ms)
    )
    return int(await s.scalar(q) or 0)


async def hub_route(s: AsyncSession, space_id: str, hub_id: str, now_ms: int) -> HubRoute | None:
    """The live replica holding the Hub, or None (not connected, or its replica is dead)."""
    q = (
        select(Hub.replica, Hub.epoch, Replica.peer_url)
        .join(Replica, Replica.id == Hub.replica)
        .where(Hub.space_id == space_id, Hub.hub_id == hub_id, Hub.connected.is_(True))
        .where(Replica.lease_until_ms >= now_ms)
    )
    row = (await s.execute(q)).first()
    if row is None or row.replica is None:
        return None
    return HubRoute(replica=row.replica, peer_url=row.peer_url, epoch=int(row.epoch))


async def bump_epoch(s: AsyncSession, hub_pk: int) -> int:
    """A new admission of the Hub: one atomic increment, so two replicas admitting the same
    Hub id at once get different epochs."""
    q = update(Hub).where(Hub.id == hub_pk).values(epoch=Hub.epoch + 1).returning(Hub.epoch)
    return int((await s.execute(q)).scalar_one())


async def reclaim_hubs(s: AsyncSession, replica_id: str, held: Sequence[tuple[int, int]]) -> int:
    """After a lost lease: mark the Hubs this replica still holds connected again, where no
    newer admission (a higher epoch) happened meanwhile."""
    count = 0
    for pk, epoch in held:
        res = await s.execute(
            update(Hub)
            .where(Hub.id == pk, Hub.epoch == epoch)
            .values(connected=True, replica=replica_id, disconnect_reason=None)
        )
        count += int(getattr(res, "rowcount", 0) or 0)
    return count
