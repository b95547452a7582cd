"""A manager process restart: the Hub record survives, the real-packages peer comes back
with the id the manager gave it (STH_ID), and is healthy again."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from tests.interop.peer import HubPeer
from tests.manager_process import ManagerProcess


async def _list(client: httpx.AsyncClient, space: str) -> dict[str, dict]:
    resp = await client.get(f"/api/v1/space/{space}/api/v1/list")
    return {h["id"]: h for h in resp.json()}


async def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.2)


@pytest.mark.parametrize("how", ["term", "kill"])
async def test_manager_restart_brings_the_hub_back(tmp_path: Path, monkeypatch, how: str):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    manager = ManagerProcess(tmp_path / "data")
    await asyncio.to_thread(manager.start)
    token = manager.token()
    assert token
    peer = None
    try:
        async with httpx.AsyncClient(
            base_url=manager.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
        ) as client:
            space = (await client.get("/api/v1/spaces")).json()[0]["id"]
            key = (await client.post(f"/api/v1/space/{space}/apikey", json={})).json()["accessKey"]
            peer = await HubPeer.start(
                manager.url,
                space,
                key,
                "--load-interval",
                "500",
                "--reconnection-delay",
                "300",
                "--description",
                "restart me",
            )
            hub_id = (await peer.wait_for(event="sth_id"))["id"]

            async def healthy() -> bool:
                hub = (await _list(client, space)).get(hub_id)
                return bool(hub and hub["healthy"])

            await _until(healthy, 15)
            created = (await _list(client, space))[hub_id]["info"]["created"]

            await asyncio.to_thread(manager.stop, how)
            await peer.wait_for(event="disconnected")
            await asyncio.to_thread(manager.start)
            await _until(healthy, 20)
            hub = (await _list(client, space))[hub_id]
            assert hub["info"]["created"] == created
            assert hub["description"] == "restart me"
            assert set(hub["info"]) == {"created", "lastConnected", "lastDisconnected"}
            assert peer.count(event="sth_id") == 1  # it came back under the id it was given
            assert len(await _list(client, space)) == 1
            # Nothing was lost: the key still works and the token still authenticates.
            keys = (await client.get(f"/api/v1/space/{space}/apikey")).json()["accessKeys"]
            assert len(keys) == 1
    finally:
        if peer is not None:
            await peer.stop()
        await asyncio.to_thread(manager.stop)
