"""The Space's aggregated views (space-api.md §3.2, §3.5), built from SQL records and the
live state that control channels keep in memory — never by asking every Hub per request."""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from manager.db import repo
from manager.db.models import Hub
from manager.services.space_hubs import AnyHub, SpaceHubs
from manager.services.topics import SpaceTopic


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hub_info(row: Hub, live: AnyHub | None, registry: SpaceHubs, now: float) -> dict[str, Any]:
    return _entry(row, live, bool(live and registry.healthy(live, now)))


class HubListing:
    """Renders a Space's Hub list as JSON, reusing each Hub's rendered entry while nothing
    it shows changed (its row, liveness, health, or the messages it shows). A list of 10,000
    Hubs then costs one SQL read and a join instead of 10,000 dicts and a 2.6 MB dumps."""

    def __init__(self) -> None:
        self._entries: dict[str, dict[str, _Rendered]] = {}  # Space -> Hub id -> entry
        self._rows: dict[str, tuple[tuple[Any, ...], Sequence[Any]]] = {}

    async def rows(self, s: AsyncSession, space_id: str) -> Sequence[Any]:
        """The Space's listing rows: read again only when their fingerprint changed (any
        replica's write changes it), else the last read. At 10,000 Hubs the read costs
        ~40 ms of Python per call; the fingerprint is one aggregate."""
        stamp = await repo.hub_listing_stamp(s, space_id)
        cached = self._rows.get(space_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        # Read after the stamp: a write in between leaves newer rows under an older stamp,
        # and only costs one more read next time.
        rows = await repo.hub_listing(s, space_id)
        self._rows[space_id] = (stamp, rows)
        return rows

    def render(
        self, space_id: str, rows: Sequence[Any], registry: SpaceHubs, live: dict[str, AnyHub]
    ) -> bytes:
        """`rows` from `rows()`; `live` as in `hub_list`."""
        now = time.monotonic()
        parts: list[str] = []
        entries = self._entries.setdefault(space_id, {})
        for row in rows:
            hub = live.get(row.hub_id)
            hub_key = id(hub) if hub else None
            changes = hub.state.changes if hub else 0
            healthy = bool(hub and registry.healthy(hub, now))
            cached = entries.get(row.hub_id)
            if (
                cached is None
                or cached.hub != hub_key
                or cached.changes != changes
                or cached.healthy != healthy
                # The same row object (rows() reused its read) is unchanged by definition.
                or (cached.row is not row and tuple(cached.row) != tuple(row))
            ):
                text = json.dumps(_entry(row, hub, healthy), separators=(",", ":"))
                cached = entries[row.hub_id] = _Rendered(row, hub_key, changes, healthy, text)
            cached.row = row
            parts.append(cached.text)
        if len(entries) > len(rows):  # Hubs deleted since: forget their entries
            keep = {row.hub_id for row in rows}
            for hub_id in [h for h in entries if h not in keep]:
                del entries[hub_id]
        return ("[" + ",".join(parts) + "]").encode()


@dataclass(slots=True)
class _Rendered:
    """One Hub's list entry as JSON, with what it was rendered from."""

    row: Any
    hub: int | None  # id() of the LiveHub/RemoteView, None when not connected
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
