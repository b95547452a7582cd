"""Small query functions over the models; callers own the transaction and commit.

Every function takes an `AsyncSession` first so services can group several calls in one
transaction; nothing here applies business rules (limits, permissions) or commits.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any, cast

from sqlalchemy import Table, bindparam, case, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.util import identity_key

from manager.db.models import (
    AccessKey,
    ApiToken,
    AuditEvent,
    Hub,
    Organization,
    OrgPlan,
    Plan,
    Space,
    SpaceLimit,
    StoredSequence,
    VerifiedProof,
)

# organizations and spaces


async def get_org(s: AsyncSession, org_id: str) -> Organization | None:
    return await s.get(Organization, org_id)


async def list_orgs(s: AsyncSession) -> Sequence[Organization]:
    return (await s.scalars(select(Organization).order_by(Organization.created_ms))).all()


async def get_space(s: AsyncSession, space_id: str) -> Space | None:
    return await s.get(Space, space_id)


async def list_spaces(s: AsyncSession, org_id: str | None = None) -> Sequence[Space]:
    q = select(Space).order_by(Space.created_ms, Space.id)
    if org_id is not None:
        q = q.where(Space.org_id == org_id)
    return (await s.scalars(q)).all()


async def count_spaces(s: AsyncSession, org_id: str | None = None) -> int:
    q = select(func.count()).select_from(Space)
    if org_id is not None:
        q = q.where(Space.org_id == org_id)
    return int(await s.scalar(q) or 0)


async def _take_sqlite_write_lock(s: AsyncSession, table: Any, key: Any) -> None:
    """SQLite has no row locks, and its driver starts a transaction only at the first write,
    so a read-then-write (a limit check, the next unique id) is not atomic there: two
    sessions both read, then both write. A no-op UPDATE first takes the database's write
    lock for the rest of the transaction, and the other session waits (busy timeout)."""
    if s.get_bind().dialect.name == "sqlite":
        await s.execute(update(table).where(key).values(name=table.name))


async def lock_org(s: AsyncSession, org_id: str) -> Organization | None:
    """The org row, locked to the transaction (SQLite: the whole database, see above)."""
    await _take_sqlite_write_lock(s, Organization, Organization.id == org_id)
    return await s.scalar(select(Organization).where(Organization.id == org_id).with_for_update())


async def lock_space(s: AsyncSession, space_id: str) -> Space | None:
    """The Space row, locked to the transaction (SQLite: the whole database)."""
    await _take_sqlite_write_lock(s, Space, Space.id == space_id)
    return await s.scalar(select(Space).where(Space.id == space_id).with_for_update())


# plans


async def get_plan(s: AsyncSession, name: str) -> Plan | None:
    return await s.get(Plan, name)


async def list_plans(s: AsyncSession) -> Sequence[Plan]:
    return (await s.scalars(select(Plan).order_by(Plan.created_ms, Plan.name))).all()


async def org_plan_name(s: AsyncSession, org_id: str) -> str | None:
    return await s.scalar(select(OrgPlan.plan_name).where(OrgPlan.org_id == org_id))


async def all_org_plans(s: AsyncSession) -> dict[str, str]:
    rows = await s.execute(select(OrgPlan.org_id, OrgPlan.plan_name))
    return {org_id: name for org_id, name in rows.all()}


async def set_org_plan(s: AsyncSession, org_id: str, plan_name: str, at_ms: int) -> None:
    row = await s.get(OrgPlan, org_id)
    if row is None:
        s.add(OrgPlan(org_id=org_id, plan_name=plan_name, set_ms=at_ms))
    else:
        row.plan_name, row.set_ms = plan_name, at_ms
    await s.flush()


async def space_overrides(s: AsyncSession, space_id: str) -> dict[str, int | None]:
    rows = await s.execute(
        select(SpaceLimit.name, SpaceLimit.value).where(SpaceLimit.space_id == space_id)
    )
    return {name: value for name, value in rows.all()}


async def all_space_overrides(s: AsyncSession) -> dict[str, dict[str, int | None]]:
    out: dict[str, dict[str, int | None]] = {}
    for space_id, name, value in (
        await s.execute(select(SpaceLimit.space_id, SpaceLimit.name, SpaceLimit.value))
    ).all():
        out.setdefault(space_id, {})[name] = value
    return out


async def set_space_override(
    s: AsyncSession, space_id: str, name: str, value: int | None, at_ms: int
) -> None:
    row = await s.get(SpaceLimit, (space_id, name))
    if row is None:
        s.add(SpaceLimit(space_id=space_id, name=name, value=value, set_ms=at_ms))
    else:
        row.value, row.set_ms = value, at_ms
    await s.flush()


async def drop_space_override(s: AsyncSession, space_id: str, name: str) -> None:
    await s.execute(
        delete(SpaceLimit).where(SpaceLimit.space_id == space_id, SpaceLimit.name == name)
    )


async def store_bytes_used(s: AsyncSession, space_id: str, except_seq: str | None = None) -> int:
    """Bytes of the Space's stored packages, leaving out one that an upload replaces."""
    q = select(func.coalesce(func.sum(StoredSequence.size), 0)).where(
        StoredSequence.space_id == space_id
    )
    if except_seq is not None:
        q = q.where(StoredSequence.seq_id != except_seq)
    return int(await s.scalar(q) or 0)


# tokens


async def get_token(s: AsyncSession, token_id: str) -> ApiToken | None:
    return await s.get(ApiToken, token_id)


# access keys


async def live_access_keys(s: AsyncSession, space_id: str) -> Sequence[AccessKey]:
    q = (
        select(AccessKey)
        .where(AccessKey.space_id == space_id, AccessKey.revoked_ms.is_(None))
        .order_by(AccessKey.created_ms)
    )
    return (await s.scalars(q)).all()


async def access_key_by_prefix(s: AsyncSession, prefix: str) -> AccessKey | None:
    return await s.scalar(select(AccessKey).where(AccessKey.prefix == prefix))


async def access_key_by_created(
    s: AsyncSession, space_id: str, created_ms: int
) -> AccessKey | None:
    q = select(AccessKey).where(AccessKey.space_id == space_id, AccessKey.created_ms == created_ms)
    return await s.scalar(q)


async def count_live_access_keys(s: AsyncSession, space_id: str) -> int:
    q = select(func.count()).where(AccessKey.space_id == space_id, AccessKey.revoked_ms.is_(None))
    return int(await s.scalar(q) or 0)


async def latest_access_key_created(s: AsyncSession, space_id: str) -> int:
    q = select(func.max(AccessKey.created_ms)).where(AccessKey.space_id == space_id)
    return int(await s.scalar(q) or 0)


# hubs


async def get_hub(s: AsyncSession, space_id: str, hub_id: str) -> Hub | None:
    return await s.scalar(select(Hub).where(Hub.space_id == space_id, Hub.hub_id == hub_id))


async def list_hubs(s: AsyncSession, space_id: str) -> Sequence[Hub]:
    q = select(Hub).where(Hub.space_id == space_id).order_by(Hub.created_ms, Hub.id)
    return (await s.scalars(q)).all()


LISTING_COLUMNS = (
    Hub.hub_id,
    Hub.description,
    Hub.tags,
    Hub.self_hosted,
    Hub.created_ms,
    Hub.last_connected_ms,
    Hub.last_disconnected_ms,
    Hub.disconnect_reason,
)


async def hub_listing_stamp(s: AsyncSession, space_id: str) -> tuple[Any, ...]:
    """A fingerprint of the Space's Hub rows that every write to them changes: an admission
    bumps an epoch and a connect stamp, a disconnect (or a reaped replica) lowers the
    connected count and raises a disconnect stamp, a delete lowers the row count. One
    aggregate the database computes without handing 10,000 rows to Python."""
    q = select(
        func.count(),
        func.sum(Hub.epoch),
        func.max(Hub.last_connected_ms),
        func.max(Hub.last_disconnected_ms),
        func.sum(case((Hub.connected.is_(True), 1), else_=0)),
        func.max(Hub.id),
    ).where(Hub.space_id == space_id)
    return tuple((await s.execute(q)).one())


async def hub_listing(s: AsyncSession, space_id: str) -> Sequence[Any]:
    """What a Hub list shows, as plain rows: at 10,000 Hubs ORM objects cost ~4x more."""
    q = select(*LISTING_COLUMNS).where(Hub.space_id == space_id).order_by(Hub.created_ms, Hub.id)
    return (await s.execute(q)).all()


async def connected_hub_ids(s: AsyncSession, space_id: str, hub_ids: list[str]) -> set[str]:
    q = select(Hub.hub_id).where(
        Hub.space_id == space_id, Hub.hub_id.in_(hub_ids), Hub.connected.is_(True)
    )
    return set((await s.scalars(q)).all())


async def hub_ids_in_space(s: AsyncSession, space_id: str) -> set[str]:
    return set((await s.scalars(select(Hub.hub_id).where(Hub.space_id == space_id))).all())


async def mark_replica_hubs_disconnected(
    s: AsyncSession, replica: str | None, now_ms: int, reason: str
) -> int:
    """Hubs a crashed replica left 'connected' are not: its tunnels died with it."""
    q = update(Hub).where(Hub.connected.is_(True))
    if replica is not None:
        q = q.where(Hub.replica == replica)
    res = await s.execute(
        q.values(
            connected=False, last_disconnected_ms=now_ms, disconnect_reason=reason, replica=None
        )
    )
    return int(getattr(res, "rowcount", 0) or 0)


_HUBS = cast(Table, Hub.__table__)
_SAVE_LOAD = (
    update(_HUBS)
    .where(_HUBS.c.id == bindparam("pk"))
    .values(last_load=bindparam("load"), last_load_ms=bindparam("at_ms"))
)


async def save_loads(s: AsyncSession, rows: Iterable[tuple[int, dict[str, Any], int]]) -> None:
    """One executemany on the table, not the ORM: no per-row statement or session sync
    (this runs for every connected Hub every flush)."""
    params = [{"pk": pk, "load": load, "at_ms": at_ms} for pk, load, at_ms in rows]
    if params:
        await s.execute(_SAVE_LOAD, params)


async def record_disconnect(
    s: AsyncSession,
    pk: int,
    epoch: int,
    *,
    at_ms: int,
    reason: str,
    load: dict[str, Any] | None,
    network_info: list[Any] | None,
) -> bool:
    """A tunnel of this Hub ended: its last figures always, and the disconnect itself only
    if no newer tunnel (a higher epoch, here or on another replica) took over since.
    Whether the row exists."""
    figures: dict[str, Any] = {}
    if load is not None:
        figures.update(last_load=load, last_load_ms=at_ms)
    if network_info is not None:
        figures["network_info"] = network_info
    # A Hub row this session loaded (a connect earlier in the same batch) would otherwise
    # keep its pre-UPDATE values, and a reconnect later in the batch would write nothing.
    loaded = s.sync_session.identity_map.get(identity_key(Hub, pk))
    if loaded is not None:
        s.expire(loaded)
    ended = await s.execute(
        update(_HUBS)
        .where(_HUBS.c.id == pk, _HUBS.c.epoch == epoch)
        .values(
            {
                **figures,
                "connected": False,
                "replica": None,
                "last_disconnected_ms": at_ms,
                "disconnect_reason": reason,
            }
        )
    )
    if getattr(ended, "rowcount", 0):
        return True
    if figures:
        kept = await s.execute(update(_HUBS).where(_HUBS.c.id == pk).values(figures))
        return bool(getattr(kept, "rowcount", 0))
    return await s.scalar(select(_HUBS.c.id).where(_HUBS.c.id == pk)) is not None


# verified key proofs


async def proof_key_id(s: AsyncSession, tag: str) -> int | None:
    return await s.scalar(select(VerifiedProof.access_key_id).where(VerifiedProof.tag == tag))


async def all_proofs(s: AsyncSession) -> dict[str, int]:
    rows = await s.execute(select(VerifiedProof.tag, VerifiedProof.access_key_id))
    return {tag: key_id for tag, key_id in rows.all()}


async def add_proof(s: AsyncSession, tag: str, access_key_id: int, at_ms: int) -> None:
    s.add(VerifiedProof(tag=tag, access_key_id=access_key_id, created_ms=at_ms))


async def prune_proofs(s: AsyncSession, access_key_id: int, keep: int) -> int:
    """Drop all but the `keep` newest proofs of a key."""
    newest = (
        select(VerifiedProof.tag)
        .where(VerifiedProof.access_key_id == access_key_id)
        .order_by(VerifiedProof.created_ms.desc())
        .limit(keep)
    )
    res = await s.execute(
        delete(VerifiedProof).where(
            VerifiedProof.access_key_id == access_key_id, VerifiedProof.tag.not_in(newest)
        )
    )
    return int(getattr(res, "rowcount", 0) or 0)


# audit


async def add_audit(s: AsyncSession, event: AuditEvent) -> None:
    s.add(event)


_AUDIT_COLUMNS = (
    "org_id",
    "space_id",
    "hub_id",
    "op_code",
    "op_state",
    "object_id",
    "requestor_id",
    "received_ms",
)


async def add_audit_rows(s: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """One executemany of plain tuples in the driver's own parameter style. Every proxied
    request writes a row: through the ORM's bulk path a row cost more than the request
    it records, and through a Core insert SQLAlchemy still built and processed a parameter
    set per row on the event loop (~3 % of the manager's samples under wrk, c=16)."""
    conn = await s.connection()
    style = conn.dialect.paramstyle
    if style not in ("qmark", "numeric_dollar"):  # a driver other than aiosqlite or asyncpg
        await s.execute(insert(AuditEvent.metadata.tables[AuditEvent.__tablename__]), rows)
        return
    count = len(_AUDIT_COLUMNS) + 1
    marks = ", ".join("?" if style == "qmark" else f"${i}" for i in range(1, count + 1))
    sql = f"INSERT INTO audit_events ({', '.join(_AUDIT_COLUMNS)}, detail) VALUES ({marks})"
    dumps = json.JSONEncoder(separators=(",", ":")).encode
    values = [
        (*(row[c] for c in _AUDIT_COLUMNS), None if row["detail"] is None else dumps(row["detail"]))
        for row in rows
    ]
    await conn.exec_driver_sql(sql, values)


async def audit_events(
    s: AsyncSession,
    *,
    space_ids: Sequence[str] | None = None,
    after_id: int = 0,
    limit: int = 1000,
) -> Sequence[AuditEvent]:
    q = select(AuditEvent).where(AuditEvent.id > after_id).order_by(AuditEvent.id).limit(limit)
    if space_ids is not None:
        q = q.where(AuditEvent.space_id.in_(list(space_ids)))
    return (await s.scalars(q)).all()
