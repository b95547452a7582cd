"""README "Log and audit": a deleted Hub (14002) and a revoked access key (15001) show up in
`GET $S/audit` and in `GET /api/v1/audit`, with who did it and what it was about."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from tests.interop.peer import join_hub
from tests.running import RunningManager

HUB_DELETED = 14002
KEY_REVOKED = 15001


def space(manager: RunningManager, path: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/{path}"


async def audit_until(
    manager: RunningManager, url: str, done: Any, timeout: float = 10
) -> list[dict[str, Any]]:
    """Read the (never-ending) audit stream at `url` until `done(records)` holds."""
    records: list[dict[str, Any]] = []
    async with manager.client.stream("GET", url) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("application/x-ndjson")

        async def read() -> None:
            async for line in resp.aiter_lines():
                if line.strip():
                    records.append(json.loads(line))
                    if done(records):
                        return

        try:
            await asyncio.wait_for(read(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"audit at {url} incomplete after {timeout} s: {records}"
            ) from None
    return records


def _find(records: list[dict[str, Any]], code: int, object_id: str) -> dict[str, Any] | None:
    return next((r for r in records if r["opCode"] == code and r["objectId"] == object_id), None)


async def test_hub_deleted_and_key_revoked_are_audited(manager: RunningManager):
    token_id = manager.world.admin.token_id
    key = await manager.new_key("audited key")
    peer = await join_hub(manager, "doomed", key=key)
    try:
        resp = await manager.client.delete(
            space(manager, "sth/doomed"), headers={"x-force": "true"}
        )
        assert resp.status_code == 200, resp.text
        await peer.wait_for(event="abandoned")
    finally:
        await peer.stop()
    listed = (await manager.client.get(f"/api/v1/space/{manager.world.space_id}/apikey")).json()
    created = str(
        next(k for k in listed["accessKeys"] if k["description"] == "audited key")["created"]
    )
    resp = await manager.client.delete(
        f"/api/v1/space/{manager.world.space_id}/apikey", headers={"x-revoke": created}
    )
    assert resp.status_code == 200, resp.text

    def complete(records: list[dict[str, Any]]) -> bool:
        return bool(_find(records, HUB_DELETED, "doomed") and _find(records, KEY_REVOKED, created))

    for url in (space(manager, "audit"), "/api/v1/audit"):
        records = await audit_until(manager, url, complete)
        deleted = _find(records, HUB_DELETED, "doomed")
        revoked = _find(records, KEY_REVOKED, created)
        assert deleted is not None and revoked is not None
        assert deleted["hostId"] == "doomed"
        assert deleted["spaceId"] == revoked["spaceId"] == manager.world.space_id
        assert deleted["requestorId"] == revoked["requestorId"] == token_id
        # History order: the Hub connected (14000) and was deleted before the key went.
        codes = [r["opCode"] for r in records]
        assert codes.index(14000) < codes.index(HUB_DELETED) < codes.index(KEY_REVOKED)
        assert _find(records, 15000, created) is not None  # the key's creation, same id
