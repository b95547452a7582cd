"""Disconnecting and deleting self-hosted Hubs (space-api.md S18, S19).

A disconnect sends the Hub ID_DROP before closing its tunnel: the STH then stops retrying,
so it stays away until it is restarted, while it keeps running locally (seed 000).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from manager.db import audit, repo
from manager.db.models import Hub
from manager.hubs.endings import Ending
from manager.hubs.registry import HubRegistry, LiveHub
from manager.hubs.state import ID_DROP
from manager.replicas.events import Events
from manager.services.access_keys import AccessKeyService
from manager.services.errors import Conflict, Invalid, NotFound

DROP_EVENT = "drop_hubs"


async def _drop(hub: LiveHub) -> None:
    await hub.link.send_and_close(ID_DROP, Ending.DISCONNECTED)


async def on_drop_event(registry: HubRegistry, event: dict[str, Any]) -> None:
    """Every replica drops the named Hubs it holds (manager.replicas.events)."""
    names = set(event.get("hubs") or [])
    space_id = str(event.get("space"))
    await asyncio.gather(*(_drop(h) for h in registry.in_space(space_id) if h.hub_id in names))


async def _drop_everywhere(
    s: AsyncSession, registry: HubRegistry, events: Events, space_id: str, hub_ids: list[str]
) -> None:
    """Drop the Hubs wherever they are held, and answer once their tunnels are really down
    (local ones gone from the registry, other replicas' rows disconnected), so the caller's
    next /list agrees."""
    local = [h for h in registry.in_space(space_id) if h.hub_id in hub_ids]
    here = {h.hub_id for h in local}
    elsewhere = [h for h in hub_ids if h not in here]
    await asyncio.gather(*(_drop(hub) for hub in local))
    if elsewhere:
        await events.publish(DROP_EVENT, space=space_id, hubs=elsewhere)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        if not any(registry.get(h.space_id, h.hub_id) is h for h in local):
            if not elsewhere:
                return
            async with AsyncSession(s.bind) as fresh:  # outside the caller's transaction
                if not await repo.connected_hub_ids(fresh, space_id, elsewhere):
                    return
        await asyncio.sleep(0.05)


async def disconnect(
    s: AsyncSession,
    registry: HubRegistry,
    keys: AccessKeyService,
    events: Events,
    space_id: str,
    body: Any,
) -> list[dict[str, str]]:
    """Which Hubs the body names (`id`, `limit: 0` for all, or `accessKey`), dropped on
    whichever replica holds them."""
    if not isinstance(body, dict):
        raise Invalid('Expected {"id": "<hub>"}, {"limit": 0} or {"accessKey": "<key>"}')
    rows = [r for r in await repo.list_hubs(s, space_id) if r.connected]
    live = {h.hub_id: h.access_key_id for h in registry.in_space(space_id)}
    connected = {r.hub_id: r.access_key_id for r in rows} | live
    if isinstance(body.get("id"), str):
        targets = [h for h in connected if h == body["id"]]
        if not targets:
            # No Hub id has a NUL, and PostgreSQL text cannot hold one: don't ask.
            if "\x00" in body["id"] or await repo.get_hub(s, space_id, body["id"]) is None:
                raise NotFound(f"Hub {body['id']} not found")
            raise Conflict(f"Hub {body['id']} is not connected")
    elif body.get("limit") == 0 and body["limit"] is not False:  # False == 0 in Python
        targets = list(connected)
    elif isinstance(body.get("accessKey"), str):
        row = await keys.find(s, space_id, body["accessKey"])
        if row is None:
            raise NotFound("Access key not found")
        targets = [h for h, key_id in connected.items() if key_id == row.id]
    else:
        raise Invalid('Expected {"id": "<hub>"}, {"limit": 0} or {"accessKey": "<key>"}')
    await _drop_everywhere(s, registry, events, space_id, targets)
    return [{"sthId": h, "reason": Ending.DISCONNECTED.value} for h in targets]


async def delete_hub(
    s: AsyncSession,
    registry: HubRegistry,
    events: Events,
    space_id: str,
    hub_id: str,
    force: bool,
    who: str,
) -> None:
    row = await repo.get_hub(s, space_id, hub_id)
    if row is None:
        raise NotFound(f"Hub {hub_id} not found")
    if not row.self_hosted:
        raise Conflict("Only self-hosted Hubs can be deleted")
    if row.connected or registry.get(space_id, hub_id) is not None:
        if not force:
            raise Conflict(f"Hub {hub_id} is connected; disconnect it first or use x-force: true")
        await _drop_everywhere(s, registry, events, space_id, [hub_id])
    await s.execute(delete(Hub).where(Hub.id == row.id))
    await audit.record(
        s,
        space_id=space_id,
        hub_id=hub_id,
        op_code=audit.HUB_DELETED,
        object_id=hub_id,
        requestor_id=who,
    )
