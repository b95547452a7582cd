"""Starting a Sequence somewhere in the Space: pick a Hub (by id, or the least loaded healthy
Hub with the wanted tags) and start it there; a Hub that does not have the Sequence gets it
from the store (our addition to space-api.md, `POST /sequence/:id/start` at Space level)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

from manager.db.models import Hub
from manager.hubs.registry import LiveHub
from manager.services.errors import Invalid, NotFound, ServiceError, Unavailable
from manager.services.space_hubs import AnyHub, SpaceHubs


class HubRefused(ServiceError):
    """The chosen Hub answered the start with an error; its status and body pass through."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(body.get("error", "start failed") if isinstance(body, dict) else "failed")
        self.status = status
        self.body = body


def choose_hub(
    registry: SpaceHubs, rows: Sequence[Hub], space_id: str, selector: dict[str, Any]
) -> AnyHub:
    """Among the Space's connected Hubs on every replica."""
    wanted = selector.get("hub")
    if wanted is not None:
        hub = registry.get(space_id, str(wanted))
        if hub is None:
            raise Unavailable(f"Hub {wanted} is not connected")
        return hub
    tags = selector.get("tags") or []
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, list):
        raise Invalid("tags must be a list of strings")
    tagged = {r.hub_id for r in rows if set(map(str, tags)) <= set(r.tags or [])}
    candidates = [
        h for h in registry.in_space(space_id) if h.hub_id in tagged and registry.healthy(h)
    ]
    if not candidates:
        raise Unavailable(f"No healthy Hub with tags {tags}" if tags else "No healthy Hub")
    return min(candidates, key=lambda h: float((h.state.load or {}).get("currentLoad") or 0))


async def _request(hub: AnyHub, target: str, body: bytes) -> tuple[int, Any]:
    status, content = await hub.client.request(
        b"POST", target.encode(), [(b"content-type", b"application/json")], body
    )
    try:
        return status, json.loads(content or b"null")
    except ValueError:
        return status, None


async def _upload(hub: LiveHub, package: Path) -> str:
    """Send a stored package to a Hub; returns the id the Hub gave it."""

    async def chunks() -> AsyncIterator[bytes]:
        with package.open("rb") as fh:
            while block := fh.read(256 * 1024):
                yield block

    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(package.stat().st_size).encode()),
    ]
    status, content = await hub.client.request(b"POST", b"/api/v1/sequence", headers, chunks())
    try:
        body = json.loads(content or b"{}")
    except ValueError:
        body = None
    if status >= 300 or not isinstance(body, dict) or "id" not in body:
        raise HubRefused(status if status >= 400 else 502, body)
    return str(body["id"])


def hub_has(hub: LiveHub, ref: str) -> bool:
    """Whether the Hub reported a Sequence with this id or name (it starts either)."""
    if ref in hub.state.sequences:
        return True
    return any(
        seq.get("name") == ref or (seq.get("config") or {}).get("name") == ref
        for seq in hub.state.sequences.values()
    )


async def deliver(hub: LiveHub, ref: str, package: Path) -> str:
    """The Hub's id for stored Sequence `ref`, uploading it the first time.

    Why here: STH 1.0.1 started with `--platform-api` cannot fetch from the store itself
    (its storage client is built on an empty CPM URL and fails before any request, so a
    start of a stored Sequence answers 404). The manager hands the package over instead,
    once per tunnel; later starts reuse the id while the Hub still lists it.
    """
    known = hub.delivered.get(ref)
    if known is not None and known in hub.state.sequences:
        return known
    hub.delivered[ref] = seq_id = await _upload(hub, package)
    return seq_id


async def start_on(
    hub: AnyHub, seq_id: str, payload: dict[str, Any], package: Path | None
) -> dict[str, Any]:
    # A Hub another replica holds: the start goes through its holder's proxy, which hands
    # a stored package over itself (manager.web.proxy), so only a local Hub gets it here.
    if package is not None and isinstance(hub, LiveHub) and not hub_has(hub, seq_id):
        seq_id = await deliver(hub, seq_id, package)
    body = json.dumps(payload).encode()
    status, answer = await _request(hub, f"/api/v1/sequence/{seq_id}/start", body)
    if status == 404 and package is None:
        raise NotFound(f"Sequence {seq_id} not found on Hub {hub.hub_id} or in the store")
    if status >= 300 or not isinstance(answer, dict):
        raise HubRefused(status if status >= 400 else 502, answer)
    return {**answer, "hubId": hub.hub_id, "sequenceId": seq_id}
