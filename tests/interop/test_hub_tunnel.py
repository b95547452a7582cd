"""A Node Hub peer made of the STH's real packages (bpmux 8.2.1, @scramjet/utility's
generateSTHKey) joins the manager over CONNECT + BPMux: admission, ids, channels both ways,
revocation, death and health (issue: Hub tunnels)."""

from __future__ import annotations

import asyncio
import hashlib
import time

import h11

from manager.db import repo
from manager.tunnel.channel import Channel
from tests.interop.peer import HubPeer
from tests.running import RunningManager


async def _wait_hub(manager: RunningManager, hub_id: str, timeout: float = 15, **want) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        hubs = {h["id"]: h for h in await manager.hubs()}
        hub = hubs.get(hub_id)
        if hub and all(hub.get(k) == v for k, v in want.items()):
            return hub
        if time.monotonic() > deadline:
            raise AssertionError(f"hub {hub_id} never matched {want}: {hub}")
        await asyncio.sleep(0.1)


async def _join(manager: RunningManager, *args: str) -> tuple[HubPeer, str]:
    key = await manager.new_key()
    peer = await HubPeer.start(
        manager.url, manager.world.space_id, key, "--load-interval", "500", *args
    )
    ev = await peer.wait_for(event="control_opened")
    assert ev["peer"] == 0
    return peer, key


async def _http(
    channel: Channel, request: h11.Request, body: bytes | None = None
) -> tuple[int, bytes]:
    conn = h11.Connection(h11.CLIENT)
    await channel.write(conn.send(request))
    if body is not None:
        for i in range(0, len(body), 50_000):
            await channel.write(conn.send(h11.Data(data=body[i : i + 50_000])))
    await channel.write(conn.send(h11.EndOfMessage()))
    status, chunks = 0, []
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(await channel.read())
        elif isinstance(event, h11.Response):
            status = event.status_code
        elif isinstance(event, h11.Data):
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            await channel.end()
            return status, b"".join(chunks)


async def test_join_assigns_id_and_lists_the_hub(manager: RunningManager):
    peer, _ = await _join(manager, "--description", "edge box", "--tags", "edge,demo")
    try:
        ev = await peer.wait_for(event="sth_id")
        hub_id = ev["id"]
        assert hub_id.startswith("sth-")
        hub = await _wait_hub(manager, hub_id, healthy=True)
        assert hub["isConnectionActive"] is True and hub["selfHosted"] is True
        assert hub["description"] == "edge box" and hub["tags"] == ["edge", "demo"]
        assert set(hub["info"]) >= {"created", "lastConnected"}
        assert (await manager.hub(hub_id))["id"] == hub_id
        load = (
            await manager.client.get(f"/api/v1/space/{manager.world.space_id}/api/v1/load")
        ).json()
        assert hub_id in load["hubs"] and load["memFree"] > 0
    finally:
        await peer.stop()


async def test_given_id_is_kept(manager: RunningManager):
    peer, _ = await _join(manager, "--id", "my-hub")
    try:
        await _wait_hub(manager, "my-hub", healthy=True)
        assert peer.count(event="sth_id") == 0
    finally:
        await peer.stop()


async def test_load_figures_are_flushed_to_the_hub_row(manager: RunningManager):
    """The periodic flush (one executemany for every Hub whose LOAD changed) lands in SQL."""
    peer, _ = await _join(manager, "--id", "loaded")
    try:
        await _wait_hub(manager, "loaded", healthy=True)
        manager.svc.supervisor.load_flush_s = 0.0
        await manager.svc.supervisor.sweep()
        async with manager.svc.sessions() as s:
            row = await repo.get_hub(s, manager.world.space_id, "loaded")
        assert row is not None and row.last_load_ms is not None
        assert row.last_load is not None and row.last_load["memFree"] > 0
    finally:
        await peer.stop()


async def test_wrong_key_is_refused_with_403_and_no_retry(manager: RunningManager):
    await manager.new_key()
    bad = "SCP-ak-wrongwrongwrongwrongwrongwrongwrongwrongwrong1"
    peer = await HubPeer.start(
        manager.url, manager.world.space_id, bad, "--reconnection-delay", "200"
    )
    try:
        ev = await peer.wait_for(event="abandoned")
        assert ev["reason"] == "403"
        await asyncio.sleep(1.0)
        assert peer.count(event="connecting") == 1
        assert await manager.hubs() == []
    finally:
        await peer.stop()


async def test_second_hub_with_a_live_id_gets_id_drop(manager: RunningManager):
    first, key = await _join(manager, "--id", "twin")
    second = await HubPeer.start(
        manager.url, manager.world.space_id, key, "--id", "twin", "--reconnection-delay", "200"
    )
    try:
        ev = await second.wait_for(event="abandoned")
        assert ev["reason"] == "9003"
        hub = await _wait_hub(manager, "twin", healthy=True)
        assert hub["isConnectionActive"]
        assert first.count(event="abandoned") == 0
    finally:
        await first.stop()
        await second.stop()


async def test_hub_limit_sends_limit_exceeded(manager: RunningManager):
    manager.svc.gate.settings = manager.svc.settings.with_overrides(hub_limit=1)
    first, key = await _join(manager, "--id", "one")
    second = await HubPeer.start(manager.url, manager.world.space_id, key, "--id", "two")
    try:
        assert (await second.wait_for(event="abandoned"))["reason"] == "9002"
        assert [h["id"] for h in await manager.hubs()] == ["one"]
    finally:
        await first.stop()
        await second.stop()


async def test_megabyte_each_way_through_channels(manager: RunningManager):
    peer, _ = await _join(manager, "--id", "bulk")
    try:
        await _wait_hub(manager, "bulk", healthy=True)
        live = manager.svc.registry.get(manager.world.space_id, "bulk")
        assert live is not None
        session = live.link.session  # type: ignore[attr-defined]

        channel = await session.open_channel()
        assert channel.number >= 2**31
        payload = bytes(i % 251 for i in range(1 << 20))
        req = h11.Request(
            method="POST",
            target="/api/v1/echo/count",
            headers=[("host", "hub"), ("content-length", str(len(payload)))],
        )
        status, body = await _http(channel, req, payload)
        assert status == 200
        assert b'"bytes":1048576' in body
        assert hashlib.sha256(payload).hexdigest().encode() in body

        channel = await session.open_channel()
        req = h11.Request(
            method="GET",
            target="/api/v1/echo/bytes/1048576",
            headers=[("host", "hub"), ("connection", "close")],
        )
        status, body = await _http(channel, req)
        assert status == 200 and body == payload
        await asyncio.sleep(0.2)
        assert len(session.channels) <= 1  # only the control channel stays open
    finally:
        await peer.stop()


async def test_hub_opened_channels_reach_the_space_api(manager: RunningManager):
    peer, _ = await _join(manager, "--id", "asker")
    space = manager.world.space_id
    try:
        resp = await peer.request("GET", f"/api/v1/cpm/{space}/api/v1/version")
        assert resp["status"] == 200 and "@scramjet/manager" in resp["body"]
        resp = await peer.request("GET", f"/api/v1/cpm/{space}/api/v1/list")
        assert resp["status"] == 200 and '"asker"' in resp["body"]
        # R1: no Sequence store yet, so a package fetch is a clean 404.
        resp = await peer.request("GET", f"/api/v1/cpm/{space}/api/v1/s3/undefined/abc.tar.gz")
        assert resp["status"] == 404
        # Another Space is not reachable through this Hub.
        resp = await peer.request("GET", f"/api/v1/cpm/{manager.world.other_space_id}/api/v1/list")
        assert resp["status"] == 403
    finally:
        await peer.stop()


async def test_revoking_the_key_sends_key_revoked_within_5s(manager: RunningManager):
    peer, key = await _join(manager, "--id", "revoked")
    try:
        await _wait_hub(manager, "revoked", healthy=True)
        started = time.monotonic()
        resp = await manager.client.delete(
            f"/api/v1/space/{manager.world.space_id}/apikey", headers={"x-revoke": key}
        )
        assert resp.status_code == 200
        ev = await peer.wait_for(timeout=5, event="abandoned")
        assert ev["reason"] == "9001"
        await peer.wait_for(timeout=5, event="disconnected")
        assert time.monotonic() - started < 5
        await _wait_hub(manager, "revoked", timeout=5, isConnectionActive=False)
        await asyncio.sleep(0.5)
        assert peer.count(event="connecting") == 1
    finally:
        await peer.stop()


async def test_killed_peer_is_disconnected_within_15s(manager: RunningManager):
    peer, _ = await _join(manager, "--id", "doomed")
    await _wait_hub(manager, "doomed", healthy=True)
    started = time.monotonic()
    peer.kill()
    hub = await _wait_hub(manager, "doomed", timeout=15, isConnectionActive=False, healthy=False)
    assert time.monotonic() - started < 15
    assert "lastDisconnected" in hub["info"] and hub["disconnectReason"]
    await peer.stop()


async def test_silent_hub_is_closed(manager: RunningManager):
    manager.svc.registry.healthy_after_s = 2.0
    manager.svc.supervisor.sweep_s = 0.5
    peer, _ = await _join(manager, "--id", "quiet", "--load-interval", "600000")
    try:
        hub = await _wait_hub(manager, "quiet", timeout=10, isConnectionActive=False)
        assert "no LOAD" in hub["disconnectReason"]
    finally:
        await peer.stop()
