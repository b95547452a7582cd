"""The cached Hub list must never show a stale entry: every input of an entry is its key."""

from __future__ import annotations

import asyncio
import json
from collections import namedtuple
from typing import Any, cast

from sqlalchemy import delete

from manager.common import now_ms
from manager.db import repo
from manager.db.models import Hub
from manager.hubs.registry import HubLink, HubRegistry, LiveHub
from manager.hubs.state import INSTANCE, LOAD
from manager.services.context import Services
from manager.services.space_view import HubListing
from tests.conftest import World

Row = namedtuple(
    "Row",
    "hub_id description tags self_hosted created_ms last_connected_ms "
    "last_disconnected_ms disconnect_reason",
)
LOAD_FIGURES = {"avgLoad": 1, "currentLoad": 1, "memFree": 1, "memUsed": 1, "fsSize": []}


def _row(hub_id: str, **changes: Any) -> Row:
    base = Row(hub_id, "d", ["t"], True, 1_700_000_000_000, None, None, "manager restarted")
    return base._replace(**changes)


def _render(listing: HubListing, rows: list[Row], reg: HubRegistry) -> list[dict[str, Any]]:
    live = {h.hub_id: h for h in reg.in_space("s")}
    return list(json.loads(listing.render("s", rows, reg, live)))


def test_every_change_shows_up():
    reg = HubRegistry(healthy_after_s=15.0)
    listing = HubListing()
    rows = [_row("a"), _row("b")]
    first = _render(listing, rows, reg)
    assert [h["id"] for h in first] == ["a", "b"]
    assert first[0]["disconnectReason"] == "manager restarted"
    assert first[0]["isConnectionActive"] is False

    rows[0] = _row("a", description="new", disconnect_reason=None, last_connected_ms=2)
    hub = LiveHub("s", "a", cast(HubLink, None))
    reg.attach(hub)
    entry = _render(listing, rows, reg)[0]
    assert (entry["description"], entry["isConnectionActive"], entry["healthy"]) == (
        "new",
        True,
        False,
    )
    hub.state.apply(LOAD, LOAD_FIGURES)
    assert _render(listing, rows, reg)[0]["healthy"] is True
    assert hub.state.apply(INSTANCE, {"instance": {"id": "i1", "sequence": {"id": "q1"}}})
    assert _render(listing, rows, reg)[0]["instances"] == ["i1"]
    assert (
        _render(
            listing,
            rows,
            reg,
        )[0]["healthy"]
        is True
    )

    reg.detach(hub)
    assert _render(listing, rows, reg)[0]["isConnectionActive"] is False
    assert [h["id"] for h in _render(listing, rows[1:], reg)] == ["b"]  # a deleted Hub goes


def test_load_lines_reuse_the_rendered_entry():
    """Every Hub sends LOAD every few seconds; the list does not show its figures, so a
    LOAD must not make the next list render that Hub's entry again (at 10,000 idle Hubs
    that was every entry, every call)."""
    reg = HubRegistry(healthy_after_s=15.0)
    listing = HubListing()
    hub = LiveHub("s", "a", cast(HubLink, None))
    reg.attach(hub)
    hub.state.apply(LOAD, LOAD_FIGURES)
    _render(listing, [_row("a")], reg)
    before = listing._entries["s"]["a"]
    assert hub.state.apply(LOAD, dict(LOAD_FIGURES, avgLoad=2))
    _render(listing, [_row("a")], reg)
    assert listing._entries["s"]["a"] is before
    assert hub.state.apply(INSTANCE, {"instance": {"id": "i1", "sequence": {"id": "q1"}}})
    assert _render(listing, [_row("a")], reg)[0]["instances"] == ["i1"]


async def test_listing_rows_are_reread_after_every_kind_of_write(svc: Services, world: World):
    """The rows are kept between calls, and every write to the Space's Hubs (admission,
    disconnect, a reaped replica, a delete) makes the next call read them again."""
    listing, store, space = HubListing(), svc.store, world.space_id

    async def ids() -> dict[str, bool]:
        async with svc.sessions() as s:
            return {r.hub_id: r.disconnect_reason is None for r in await listing.rows(s, space)}

    a, b = (LiveHub(space, name, cast(HubLink, None)) for name in "ab")
    await store.connected(a, "", [])
    assert await ids() == {"a": True}
    async with svc.sessions() as s:
        kept = await listing.rows(s, space)
        assert await listing.rows(s, space) is kept  # nothing written: no second read
    await store.connected(b, "", [])
    assert await ids() == {"a": True, "b": True}
    await store.disconnected(a, "gone")
    assert await ids() == {"a": False, "b": True}
    async with svc.sessions() as s, s.begin():
        await repo.mark_replica_hubs_disconnected(s, None, now_ms(), "replica lost")
    assert await ids() == {"a": False, "b": False}
    async with svc.sessions() as s, s.begin():
        await s.execute(delete(Hub).where(Hub.hub_id == "a"))
    assert await ids() == {"b": False}


async def test_alone_the_rows_are_reused_until_a_write_here_or_a_short_while(
    svc: Services, world: World
):
    """With no other replica alive, this process's own connect/disconnect records make
    the next list read again at once; a write it did not make (another process) shows
    within REUSE_S."""
    listing, store, space = svc.listing, svc.store, world.space_id
    listing.REUSE_S = 0.3

    async def ids() -> set[str]:
        async with svc.sessions() as s:
            return {r.hub_id for r in await listing.rows(s, space, alone=True)}

    a, b = (LiveHub(space, name, cast(HubLink, None)) for name in "ab")
    await store.connected(a, "", [])
    assert await ids() == {"a"}
    await store.connected(b, "", [])
    assert await ids() == {"a", "b"}  # invalidated by the record, not by time
    async with svc.sessions() as s, s.begin():
        await s.execute(delete(Hub).where(Hub.hub_id == "a"))
    assert await ids() == {"a", "b"}  # not written here: reused for a moment
    await asyncio.sleep(0.35)
    assert await ids() == {"b"}
