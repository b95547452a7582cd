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
from manager.services.access_keys import AccessKeyService
from manager.services.errors import Conflict, Invalid, NotFound


async def _drop(hub: LiveHub) -> None:
    await hub.link.send_and_close(ID_DROP, Ending.DISCONNECTED)


async def _gone(registry: HubRegistry, hubs: list[LiveHub], timeout: float = 5.0) -> None:
    """Answer once the tunnels are really down, so the caller's next /list agrees."""
    deadline = time.monotonic() + timeout
    while any(registry.get(h.space_id, h.hub_id) is h for h in hubs):
        if time.monotonic() > deadline:
            return
        await asyncio.sleep(0.02)


async def disconnect(
    s: AsyncSession,
    registry: HubRegistry,
    keys: AccessKeyService,
    space_id: str,
    body: Any,
) -> list[dict[str, str]]:
    """Which Hubs the body names (`id`, `limit: 0` for all, or `accessKey`), dropped."""
    if not isinstance(body, dict):
        raise Invalid('Expected {"id": "<hub>"}, {"limit": 0} or {"accessKey": "<key>"}')
    live = registry.in_space(space_id)
    if isinstance(body.get("id"), str):
        targets = [h for h in live if h.hub_id == body["id"]]
        if not targets:
            # No Hub id has a NUL, and PostgreSQL text cannot hold one: don't ask.
            if "\x00" in body["id"] or await repo.get_hub(s, space_id, body["id"]) is None:
                raise NotFound(f"Hub {body['id']} not found")
            raise Conflict(f"Hub {body['id']} is not connected")
    elif body.get("limit") == 0 and body["limit"] is not False:  # False == 0 in Python
        targets = live
    elif isinstance(body.get("accessKey"), str):
        row = await keys.find(s, space_id, body["accessKey"])
        if row is None:
            raise NotFound("Access key not found")
        targets = [h for h in live if h.access_key_id == row.id]
    else:
        raise Invalid('Expected {"id": "<hub>"}, {"limit": 0} or {"accessKey": "<key>"}')
    await asyncio.gather(*(_drop(hub) for hub in targets))
    await _gone(registry, targets)
    return [{"sthId": h.hub_id, "reason": Ending.DISCONNECTED.value} for h in targets]


async def delete_hub(
    s: AsyncSession, registry: HubRegistry, space_id: str, hub_id: str, force: bool, who: str
) -> None:
    row = await repo.get_hub(s, space_id, hub_id)
    if row is None:
        raise NotFound(f"Hub {hub_id} not found")
    if not row.self_hosted:
        raise Conflict("Only self-hosted Hubs can be deleted")
    live = registry.get(space_id, hub_id)
    if live is not None:
        if not force:
            raise Conflict(f"Hub {hub_id} is connected; disconnect it first or use x-force: true")
        await _drop(live)
        await _gone(registry, [live])
    await s.execute(delete(Hub).where(Hub.id == row.id))
    await audit.record(
        s,
        space_id=space_id,
        hub_id=hub_id,
        op_code=audit.HUB_DELETED,
        object_id=hub_id,
        requestor_id=who,
    )
