"""Starting a Sequence somewhere in the Space: pick a Hub (by id, or the least loaded healthy
Hub with the wanted tags) and start it there; a Hub that does not have the Sequence gets it
from the store (our addition to space-api.md, `POST /sequence/:id/start` at Space level)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpcore

from manager.db.models import Hub
from manager.hubs.registry import HubRegistry, LiveHub
from manager.services.errors import Invalid, NotFound, ServiceError, Unavailable


class HubRefused(ServiceError):
    """The chosen Hub answered the start with an error; its status and body pass through."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(body.get("error", "start failed") if isinstance(body, dict) else "failed")
        self.status = status
        self.body = body


def choose_hub(
    registry: HubRegistry, rows: Sequence[Hub], space_id: str, selector: dict[str, Any]
) -> LiveHub:
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


async def _request(
    hub: LiveHub, method: bytes, target: str, body: bytes, ctype: bytes
) -> tuple[int, Any]:
    url = httpcore.URL(scheme=b"http", host=b"hub", port=80, target=target.encode())
    headers = [
        (b"host", b"hub"),
        (b"content-type", ctype),
        (b"content-length", str(len(body)).encode()),
    ]
    try:
        resp = await hub.link.pool.request(method, url, headers=headers, content=body)
    except httpcore.ConnectError as exc:
        raise Unavailable(f"Hub {hub.hub_id} is not reachable: {exc}") from None
    try:
        return resp.status, json.loads(resp.content or b"null")
    except ValueError:
        return resp.status, None


async def _upload(hub: LiveHub, package: Path) -> str:
    """Send a stored package to a Hub that cannot fetch it itself; returns the Hub's id."""
    url = httpcore.URL(scheme=b"http", host=b"hub", port=80, target=b"/api/v1/sequence")
    size = package.stat().st_size

    async def chunks() -> Any:
        with package.open("rb") as fh:
            while block := fh.read(256 * 1024):
                yield block

    headers = [
        (b"host", b"hub"),
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(size).encode()),
    ]
    resp = await hub.link.pool.request(b"POST", url, headers=headers, content=chunks())
    body = json.loads(resp.content or b"{}")
    if resp.status >= 300 or not isinstance(body, dict) or "id" not in body:
        raise HubRefused(resp.status if resp.status >= 400 else 502, body)
    return str(body["id"])


async def start_on(
    hub: LiveHub, seq_id: str, payload: dict[str, Any], package: Path | None
) -> dict[str, Any]:
    body = json.dumps(payload).encode()
    status, answer = await _request(
        hub, b"POST", f"/api/v1/sequence/{seq_id}/start", body, b"application/json"
    )
    if status == 404 and package is not None and seq_id not in hub.state.sequences:
        # The Hub could not fetch it from the store itself (older Hubs): hand it over.
        seq_id = await _upload(hub, package)
        status, answer = await _request(
            hub, b"POST", f"/api/v1/sequence/{seq_id}/start", body, b"application/json"
        )
    if status == 404 and package is None:
        raise NotFound(f"Sequence {seq_id} not found on Hub {hub.hub_id} or in the store")
    if status >= 300 or not isinstance(answer, dict):
        raise HubRefused(status if status >= 400 else 502, answer)
    return {**answer, "hubId": hub.hub_id, "sequenceId": seq_id}
