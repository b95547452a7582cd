"""The Space's aggregated views (space-api.md §3.2, §3.5), built from SQL records and the
live state that control channels keep in memory — never by asking every Hub per request."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Sequence
from typing import Any

from manager.db.models import Hub
from manager.hubs.registry import HubRegistry, LiveHub
from manager.services.topics import SpaceTopic


def iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hub_info(row: Hub, live: LiveHub | None, registry: HubRegistry, now: float) -> dict[str, Any]:
    info = {
        "created": iso(row.created_ms),
        "lastConnected": iso(row.last_connected_ms),
        "lastDisconnected": iso(row.last_disconnected_ms),
    }
    out: dict[str, Any] = {
        "id": row.hub_id,
        "info": {k: v for k, v in info.items() if v is not None},
        "healthy": bool(live and registry.healthy(live, now)),
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


def hub_list(
    rows: Sequence[Hub], registry: HubRegistry, live: dict[str, LiveHub]
) -> list[dict[str, Any]]:
    """`live` is the registry as it was *before* `rows` were read: a Hub leaves the registry
    only after its disconnect is committed, so the two never disagree the other way."""
    now = time.monotonic()
    return [hub_info(r, live.get(r.hub_id), registry, now) for r in rows]


def sequences(registry: HubRegistry, space_id: str) -> list[dict[str, Any]]:
    return [s for hub in registry.in_space(space_id) for s in hub.state.sequence_list()]


def instances(registry: HubRegistry, space_id: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for hub in registry.in_space(space_id):
        for inst in hub.state.instance_list():
            out.append(dict(inst, location=hub.hub_id))
    return out


def topics(
    registry: HubRegistry, space_id: str, space_topics: Sequence[SpaceTopic] = ()
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


def entities(registry: HubRegistry, space_id: str, hub_ids: Sequence[str]) -> dict[str, Any]:
    hubs = registry.in_space(space_id)
    return {
        "hubs": list(hub_ids),
        "topics": sorted({t for h in hubs for t in h.state.topics}),
        "sequences": [s for h in hubs for s in h.state.sequences],
        "instances": [i for h in hubs for i in h.state.instances],
    }


def load(registry: HubRegistry, space_id: str) -> dict[str, Any]:
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
