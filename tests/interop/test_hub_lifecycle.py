"""Disconnecting and deleting Hubs, and the audit trail of each step (Space services)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from tests.interop.peer import HubPeer
from tests.running import RunningManager


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Both databases here (tests/interop/conftest.py pins SQLite): tunnels come and go and
    their records are written on PostgreSQL too. `postgres` needs MANAGER_TEST_POSTGRES_URL."""
    kind: str = request.param
    return kind


def space(manager: RunningManager, path: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/{path}"


async def _join(
    manager: RunningManager, hub_id: str, key: str | None = None
) -> tuple[HubPeer, str]:
    key = key or await manager.new_key()
    peer = await HubPeer.start(
        manager.url,
        manager.world.space_id,
        key,
        "--id",
        hub_id,
        "--load-interval",
        "300",
        "--reconnection-delay",
        "200",
    )
    await peer.wait_for(event="control_opened")
    deadline = time.monotonic() + 10
    # Registered, and its record written (connects are written in batches).
    while not any(h["id"] == hub_id and h["isConnectionActive"] for h in await manager.hubs()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    return peer, key


async def _inactive(manager: RunningManager, hub_id: str) -> None:
    deadline = time.monotonic() + 10
    while (await manager.hub(hub_id))["isConnectionActive"]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_disconnect_by_id_keeps_the_hub_away(manager: RunningManager):
    peer, _ = await _join(manager, "leaver")
    try:
        resp = await manager.client.post(space(manager, "disconnect"), json={"id": "leaver"})
        assert resp.status_code == 200
        assert resp.json() == {
            "managerId": manager.world.space_id,
            "disconnected": [{"sthId": "leaver", "reason": "disconnected by the Space"}],
        }
        assert (await peer.wait_for(event="abandoned"))["reason"] == "9003"
        await _inactive(manager, "leaver")
        await asyncio.sleep(1.0)
        assert peer.count(event="connecting") == 1  # it did not come back
    finally:
        await peer.stop()


async def test_disconnect_all_and_by_key(manager: RunningManager):
    a, key_a = await _join(manager, "a")
    b, _ = await _join(manager, "b")
    c, _ = await _join(manager, "c")
    try:
        resp = await manager.client.post(space(manager, "disconnect"), json={"accessKey": key_a})
        assert [d["sthId"] for d in resp.json()["disconnected"]] == ["a"]
        await a.wait_for(event="abandoned")
        resp = await manager.client.post(space(manager, "disconnect"), json={"limit": 0})
        assert sorted(d["sthId"] for d in resp.json()["disconnected"]) == ["b", "c"]
        await b.wait_for(event="abandoned")
        await c.wait_for(event="abandoned")
    finally:
        for peer in (a, b, c):
            await peer.stop()


async def test_disconnect_errors(manager: RunningManager):
    resp = await manager.client.post(space(manager, "disconnect"), json={"id": "ghost"})
    assert resp.status_code == 404 and resp.json() == {"error": "Hub ghost not found"}
    resp = await manager.client.post(space(manager, "disconnect"), json={"what": 1})
    assert resp.status_code == 400 and "error" in resp.json()
    resp = await manager.client.post(space(manager, "disconnect"), content=b"{oops")
    assert resp.status_code == 400


async def test_delete_hub(manager: RunningManager):
    peer, _ = await _join(manager, "doomed")
    try:
        resp = await manager.client.delete(space(manager, "sth/doomed"))
        assert resp.status_code == 409 and "connected" in resp.json()["error"]
        resp = await manager.client.delete(
            space(manager, "sth/doomed"), headers={"x-force": "true"}
        )
        assert resp.status_code == 200 and resp.json() == {}
        await peer.wait_for(event="abandoned")
        deadline = time.monotonic() + 5
        while any(h["id"] == "doomed" for h in await manager.hubs()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        resp = await manager.client.delete(space(manager, "sth/doomed"))
        assert resp.status_code == 404
    finally:
        await peer.stop()


async def test_audit_shows_each_step(manager: RunningManager):
    peer, _ = await _join(manager, "audited")
    await manager.client.get(space(manager, "sth/audited/api/v1/version"))
    await manager.client.post(space(manager, "disconnect"), json={"id": "audited"})
    await _inactive(manager, "audited")
    await asyncio.sleep(0.8)  # proxied operations are written in batches
    records: list[dict] = []
    async with manager.client.stream("GET", space(manager, "audit")) as resp:
        assert resp.status_code == 200

        async def read() -> None:
            async for line in resp.aiter_lines():
                records.append(json.loads(line))
                if {14000, 14001, 15000, 15100} <= {r["opCode"] for r in records}:
                    return

        await asyncio.wait_for(read(), 10)
    proxied = next(r for r in records if r["opCode"] == 15100)
    assert proxied["requestorId"] == manager.world.admin.token_id
    assert proxied["objectId"] == "/api/v1/version" and proxied["status"] == 200
    assert proxied["hostId"] == "audited"
    everything = []
    async with manager.client.stream("GET", "/api/v1/audit") as resp:
        async for line in resp.aiter_lines():
            everything.append(json.loads(line))
            if len(everything) >= len(records):
                break
    assert {r["requestId"] for r in records} <= {r["requestId"] for r in everything}
    await peer.stop()
