"""The Space's aggregated views (space-api.md §3.2, §3.5), built from SQL records and the
live state that control channels keep in memory — never by asking every Hub per request."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from sqlalchemy.ext.asyncio import AsyncSession

from manager.db import repo
from manager.db.models import Hub
from manager.hubs.routing import RemoteView
from manager.services.space_hubs import AnyHub, SpaceHubs
from manager.services.topics import SpaceTopic


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hub_info(row: Hub, live: AnyHub | None, registry: SpaceHubs, now: float) -> dict[str, Any]:
    return _entry(row, live, bool(live and registry.healthy(live, now)))


class ListingRow(NamedTuple):
    """What a Hub list shows of a Hub's row (repo.LISTING_COLUMNS), as a plain tuple: read
    10,000 times per list, a database row's attribute access cost 3x more."""

    hub_id: str
    description: str
    tags: list[str] | None
    self_hosted: bool
    created_ms: int
    last_connected_ms: int | None
    last_disconnected_ms: int | None
    disconnect_reason: str | None


class HubListing:
    """Renders a Space's Hub list as JSON, reusing each Hub's rendered entry while nothing
    it shows changed (its row, liveness, health, or the messages it shows), and the Space's
    rows while none was written. A list of 10,000 Hubs then costs a walk over the live
    Hubs and a join instead of a 10,000-row read, 10,000 dicts and a 2.6 MB dumps."""

    # How long the rows may be reused without asking the database, when no other replica
    # is alive: this process's own connect and disconnect records and deletes invalidate
    # them at once (`invalidate`); this bounds what could come from elsewhere.
    REUSE_S = 1.0

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, _Rendered]] = {}  # Space -> Hub id -> entry
        # Space -> (fingerprint, when it was read, rows)
        self._rows: dict[str, tuple[tuple[Any, ...], float, list[ListingRow]]] = {}

    def invalidate(self, space_id: str) -> None:
        """A Hub row of the Space was written here: the next list asks the database."""
        self._rows.pop(space_id, None)

    async def rows(
        self, s: AsyncSession, space_id: str, *, alone: bool = False
    ) -> list[ListingRow]:
        """The Space's listing rows: read again only when their fingerprint changed (any
        replica's write changes it), else the last read; with `alone` (no other replica
        alive) the fingerprint itself is asked at most every REUSE_S."""
        cached = self._rows.get(space_id)
        now = time.monotonic()
        if alone and cached is not None and now - cached[1] < self.REUSE_S:
            return cached[2]
        stamp = await repo.hub_listing_stamp(s, space_id)
        if cached is not None and cached[0] == stamp:
            self._rows[space_id] = (stamp, now, cached[2])
            return cached[2]
        # Read after the stamp: a write in between leaves newer rows under an older stamp,
        # and only costs one more read next time.
        rows = [ListingRow(*row) for row in await repo.hub_listing(s, space_id)]
        self._rows[space_id] = (stamp, now, rows)
        return rows

    def render(
        self, space_id: str, rows: Sequence[Any], registry: SpaceHubs, live: dict[str, AnyHub]
    ) -> bytes:
        """`rows` from `rows()`; `live` as in `hub_list`."""
        now = time.monotonic()
        healthy_of = registry.healthy
        parts: list[str] = []
        entries = self._entries.setdefault(space_id, {})
        for row in rows:
            hub_id = row.hub_id
            hub = live.get(hub_id)
            if hub is None:
                hub_key: object = None
                changes, healthy = 0, False
            else:
                hub_key = _identity(hub)
                changes, healthy = hub.state.changes, healthy_of(hub, now)
            cached = entries.get(hub_id)
            if (
                cached is None
                or cached.hub != hub_key
                or cached.changes != changes
                or cached.healthy != healthy
                # The same row object (rows() reused its read) is unchanged by definition.
                or (cached.row is not row and tuple(cached.row) != tuple(row))
            ):
                text = json.dumps(_entry(row, hub, healthy), separators=(",", ":"))
                cached = entries[hub_id] = _Rendered(row, hub_key, changes, healthy, text)
            cached.row = row
            parts.append(cached.text)
        if len(entries) > len(rows):  # Hubs deleted since: forget their entries
            keep = {row.hub_id for row in rows}
            for gone in [h for h in entries if h not in keep]:
                del entries[gone]
        return ("[" + ",".join(parts) + "]").encode()


def _identity(hub: AnyHub) -> object:
    """Which connection of the Hub an entry was rendered for: the live tunnel here, or the
    holder's admission (a RemoteView is made anew for every list)."""
    if isinstance(hub, RemoteView):
        return (hub.replica, hub.epoch)
    return id(hub)


@dataclass(slots=True)
class _Rendered:
    """One Hub's list entry as JSON, with what it was rendered from."""

    row: Any
    hub: object  # _identity() of the Hub it was rendered with; None when not connected
    changes: int
    healthy: bool
    text: str


def _entry(row: Any, live: AnyHub | None, healthy: bool) -> dict[str, Any]:
    info = {
        "created": iso(row.created_ms),
        "lastConnected": iso(row.last_connected_ms),
        "lastDisconnected": iso(row.last_disconnected_ms),
    }
    out: dict[str, Any] = {
        "id": row.hub_id,
        "info": {k: v for k, v in info.items() if v is not None},
        "healthy": healthy,
        "selfHosted": row.self_hosted,
        "isConnectionActive": live is not None,
        "description": row.description,
        "tags": list(row.tags or []),
    }
    if row.disconnect_reason and live is None:
        out["disconnectReason"] = row.disconnect_reason
    if live is not None:
        out["topics"] = sorted(live.state.topics)
        out["sequences"] = list(live.state.sequences)
        out["instances"] = list(live.state.instances)
    else:
        out.update(topics=[], sequences=[], instances=[])
    return out


def sequences(registry: SpaceHubs, space_id: str) -> list[dict[str, Any]]:
    return [s for hub in registry.in_space(space_id) for s in hub.state.sequence_list()]


def instances(registry: SpaceHubs, space_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for hub in registry.in_space(space_id):
        for inst in hub.state.instance_list():
            out.append(dict(inst, location=hub.hub_id))
    return out


def topics(
    registry: SpaceHubs, space_id: str, space_topics: Sequence[SpaceTopic] = ()
) -> list[dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for st in space_topics:
        entry = table.setdefault(
            st.name, {"name": st.name, "contentType": st.content_type, "actors": []}
        )
        if "api" in st.producers:
            entry["actors"].append(
                {"role": "provider", "type": "api", "stream": True, "retired": False}
            )
        if any(c.skip is None for c in st.consumers):
            entry["actors"].append(
                {"role": "consumer", "type": "api", "stream": True, "retired": False}
            )
    for hub in registry.in_space(space_id):
        for t in hub.state.topics.values():
            entry = table.setdefault(
                t.name, {"name": t.name, "contentType": t.content_type, "actors": []}
            )
            for role, active in (("provider", t.provides), ("consumer", t.requires)):
                if active:
                    entry["actors"].append(
                        {
                            "role": role,
                            "type": "host",
                            "stream": True,
                            "hostId": hub.hub_id,
                            "contentType": t.content_type,
                            "retired": False,
                        }
                    )
    return sorted(table.values(), key=lambda e: e["name"])


def entities(registry: SpaceHubs, space_id: str, hub_ids: Sequence[str]) -> dict[str, Any]:
    hubs = registry.in_space(space_id)
    return {
        "hubs": list(hub_ids),
        "topics": sorted({t for h in hubs for t in h.state.topics}),
        "sequences": [s for h in hubs for s in h.state.sequences],
        "instances": [i for h in hubs for i in h.state.instances],
    }


def load(registry: SpaceHubs, space_id: str) -> dict[str, Any]:
    """Sums over the healthy Hubs' last LOAD, with each Hub's own figures under `hubs`."""
    now = time.monotonic()
    per_hub: dict[str, Any] = {}
    avg = cur = 0.0
    mem_free = mem_used = 0
    fs: list[dict[str, Any]] = []
    for hub in registry.in_space(space_id):
        data = hub.state.load
        if data is None or not registry.healthy(hub, now):
            continue
        per_hub[hub.hub_id] = data
        avg += _num(data.get("avgLoad"))
        cur += _num(data.get("currentLoad"))
        mem_free += int(_num(data.get("memFree")))
        mem_used += int(_num(data.get("memUsed")))
        for entry in data.get("fsSize") or []:
            if isinstance(entry, dict):
                fs.append(dict(entry, hostId=hub.hub_id))
    n = len(per_hub)
    return {
        "avgLoad": round(avg / n, 4) if n else 0,
        "currentLoad": round(cur / n, 4) if n else 0,
        "memFree": mem_free,
        "memUsed": mem_used,
        "fsSize": fs,
        "hubs": per_hub,
    }


def _num(value: object) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0
