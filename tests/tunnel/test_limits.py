"""Limits an operator relies on when one client misbehaves: tunnels per source address and
requests in flight per Hub. Each refusal must be immediate and say what limit was hit."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import replace

import httpx
import pytest

from manager.config import Settings
from tests.running import RunningManager
from tests.tunnel.rawhub import connect_head, join


@pytest.fixture
def limits(request: pytest.FixtureRequest) -> tuple[int, int]:
    """(MANAGER_MAX_TUNNELS_PER_SOURCE, MANAGER_MAX_REQUESTS_PER_HUB) for the test's manager."""
    return getattr(request, "param", (2, 2))


@pytest.fixture
def settings(settings: Settings, limits: tuple[int, int]) -> Settings:
    per_source, per_hub = limits
    return replace(settings, max_tunnels_per_source=per_source, max_requests_per_hub=per_hub)


async def _metrics(manager: RunningManager) -> str:
    resp = await manager.client.get("/api/v1/metrics")
    assert resp.status_code == 200, resp.text
    return resp.text


async def test_tunnels_per_source_address(manager: RunningManager):
    key = await manager.new_key("limits")
    first = await join(manager, key, "one")
    second = await join(manager, key, "two")
    third = await join(manager, key, "three")
    try:
        assert (first.status, second.status) == (200, 200)
        assert third.status == 429
        assert manager.svc.registry.get(manager.world.space_id, "three") is None
        assert 'manager_tunnels_refused_total{reason="per_source_limit"} 1' in (
            await _metrics(manager)
        )
        # A slot comes back when a tunnel ends.
        await first.close()
        deadline = time.monotonic() + 5
        while manager.svc.gate.tunnels_by_source.get("127.0.0.1", 0) > 1:
            assert time.monotonic() < deadline, manager.svc.gate.tunnels_by_source
            await asyncio.sleep(0.02)
        again = await join(manager, key, "three")
        assert again.status == 200
        await again.close()
    finally:
        for hub in (first, second, third):
            await hub.close()


async def test_a_refused_websocket_tunnel_gets_a_retry_later_code(manager: RunningManager):
    from websockets.asyncio.client import connect

    key = await manager.new_key("limits-ws")
    held = [await join(manager, key, f"held-{i}") for i in range(2)]
    org = manager.world.space_id.rsplit("-", 1)[0]
    url = f"ws://127.0.0.1:{manager.svc.settings.port}/api/v1/{org}/{manager.world.space_id}/"
    try:
        async with connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
            with pytest.raises(Exception):  # noqa: B017 - the close frame is what we check
                await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 4429
    finally:
        for hub in held:
            await hub.close()


async def test_requests_in_flight_per_hub(manager: RunningManager):
    """The raw Hub never answers proxied requests, so two stay in flight until cancelled."""
    key = await manager.new_key("busy")
    hub = await join(manager, key, "busy")
    url = f"/api/v1/space/{manager.world.space_id}/api/v1/sth/busy/api/v1/version"
    live = manager.svc.registry.get(manager.world.space_id, "busy")
    assert live is not None
    try:
        stuck = [asyncio.ensure_future(manager.client.get(url)) for _ in range(2)]
        deadline = time.monotonic() + 5
        while live.in_flight < 2:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        started = time.monotonic()
        resp = await manager.client.get(url)
        assert time.monotonic() - started < 2
        assert resp.status_code == 429
        assert "2 requests in flight" in resp.json()["error"]
        for task in stuck:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task
        deadline = time.monotonic() + 5
        while live.in_flight:
            assert time.monotonic() < deadline, live.in_flight
            await asyncio.sleep(0.02)
        # Room again: this one is admitted (and left waiting, so the client gives up).
        with contextlib.suppress(httpx.ReadTimeout):
            resp = await manager.client.get(url, timeout=0.5)
            pytest.fail(f"expected the Hub to stay silent, got {resp.status_code}")
    finally:
        await hub.close()


async def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MANAGER_MAX_TUNNELS_PER_SOURCE", raising=False)
    monkeypatch.delenv("MANAGER_MAX_REQUESTS_PER_HUB", raising=False)
    got = Settings.from_env()
    assert (got.max_tunnels_per_source, got.max_requests_per_hub) == (1000, 256)  # README
    monkeypatch.setenv("MANAGER_MAX_TUNNELS_PER_SOURCE", "7")
    monkeypatch.setenv("MANAGER_MAX_REQUESTS_PER_HUB", "9")
    got = Settings.from_env()
    assert (got.max_tunnels_per_source, got.max_requests_per_hub) == (7, 9)
    monkeypatch.setenv("MANAGER_MAX_TUNNELS_PER_SOURCE", "0")
    monkeypatch.setenv("MANAGER_MAX_REQUESTS_PER_HUB", "0")
    got = Settings.from_env()
    assert (got.max_tunnels_per_source, got.max_requests_per_hub) == (0, 0)  # not the default


@pytest.mark.parametrize("limits", [(0, 0)], indirect=True)
async def test_zero_turns_the_limits_off(manager: RunningManager):
    """`0` means no limit (README): more tunnels from one address, and more requests in
    flight to one Hub, than the limit of 2 the other tests refuse at."""
    key = await manager.new_key("unlimited")
    hubs = [await join(manager, key, f"free-{i}") for i in range(4)]
    stuck: list[asyncio.Future[httpx.Response]] = []
    try:
        assert [hub.status for hub in hubs] == [200] * 4
        assert manager.svc.gate.tunnels_by_source.get("127.0.0.1") == 4
        live = manager.svc.registry.get(manager.world.space_id, "free-0")
        assert live is not None
        # The raw Hub never answers: every request admitted stays in flight.
        url = f"/api/v1/space/{manager.world.space_id}/api/v1/sth/free-0/api/v1/version"
        stuck = [asyncio.ensure_future(manager.client.get(url)) for _ in range(5)]
        deadline = time.monotonic() + 5
        while live.in_flight < 5:
            answered = [t.exception() or t.result().status_code for t in stuck if t.done()]
            assert not answered and time.monotonic() < deadline, (live.in_flight, answered)
            await asyncio.sleep(0.02)
        assert not any(task.done() for task in stuck)
        assert manager.svc.gate.refused == {}
    finally:
        for task in stuck:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, httpx.HTTPError):
                await task
        for hub in hubs:
            await hub.close()


async def test_channels_per_tunnel(manager: RunningManager, caplog: pytest.LogCaptureFixture):
    """Channels the Hub opens beyond the tunnel's limit are reset at once; the tunnel and
    the channels within the limit carry on."""
    key = await manager.new_key("channels")
    hub = await join(manager, key, "channels")
    live = manager.svc.registry.get(manager.world.space_id, "channels")
    assert live is not None
    session = live.link.session
    session.max_channels = len(session.channels) + 3
    try:
        opened = [hub.mux.open_channel() for _ in range(8)]
        hub._flush()
        deadline = time.monotonic() + 5
        while len(hub.ended) < 5:
            assert time.monotonic() < deadline, hub.ended
            await asyncio.sleep(0.02)
        assert sorted(hub.ended) == sorted(opened[3:])
        assert all(hub.ended.values())  # ERROR_END
        assert "channels open is the limit" in caplog.text
        assert not session.is_closed
        info = await manager.hub("channels")
        assert info["isConnectionActive"] is True
    finally:
        await hub.close()


async def test_tunnels_dropped_during_admission_give_their_slot_back(manager: RunningManager):
    """Hubs that vanish at every moment of admission (before the answer, right after the
    200, mid-handshake) must not use up their address's quota."""
    key = await manager.new_key("vanishing")
    port = manager.svc.settings.port
    for i in range(30):
        head = connect_head(manager.world.space_id, key, hub_id=f"gone-{i}")
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        await writer.drain()
        if i % 3:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        if i % 3 == 2:
            await asyncio.sleep(0.3)  # past the first-frame delay: the control channel opens
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    deadline = time.monotonic() + 10
    while manager.svc.gate.tunnels_by_source:
        assert time.monotonic() < deadline, manager.svc.gate.tunnels_by_source
        await asyncio.sleep(0.05)
