"""When the connector comes back and when it stops: an id already connected and the Hub
limit stop it for good; a manager restart only costs a reconnect, with the id the manager
assigned kept."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import eventually
from tests.connector.fakehub import FakeHub
from tests.connector.helpers import (
    RunningConnector,
    connector_running,
    hub_entry,
    is_healthy,
    options_at,
    options_for,
)
from tests.manager_process import ManagerProcess
from tests.running import RunningManager


@pytest.fixture
async def fake_hub() -> AsyncIterator[FakeHub]:
    hub = await FakeHub().start()
    try:
        yield hub
    finally:
        await hub.stop()


async def test_an_id_already_connected_stops_the_newcomer(
    manager: RunningManager, fake_hub: FakeHub
):
    key = await manager.new_key()
    async with connector_running(options_for(manager, key, fake_hub.url, hub_id="twin")):
        await eventually(lambda: is_healthy(manager, "twin"))
        second = connector_running(options_for(manager, key, fake_hub.url, hub_id="twin"))
        async with second as newcomer:
            reason = await asyncio.wait_for(newcomer.task, 20)
        assert "id dropped" in reason or "4409" in reason
        assert await is_healthy(manager, "twin")  # the first one is untouched


async def test_the_hub_limit_stops_the_connector(manager: RunningManager, fake_hub: FakeHub):
    gate = manager.svc.gate
    gate.settings = dataclasses.replace(gate.settings, hub_limit=1)
    key = await manager.new_key()
    async with connector_running(options_for(manager, key, fake_hub.url, hub_id="first")):
        await eventually(lambda: is_healthy(manager, "first"))
        async with connector_running(
            options_for(manager, key, fake_hub.url, hub_id="second")
        ) as over:
            reason = await asyncio.wait_for(over.task, 20)
        assert "limit" in reason.lower()


async def test_manager_restart_reconnects_with_the_assigned_id(fake_hub: FakeHub, tmp_path: Path):
    manager = ManagerProcess(tmp_path / "data")
    await asyncio.to_thread(manager.start)
    try:
        headers = {"Authorization": f"Bearer {manager.token()}"}
        async with httpx.AsyncClient(base_url=manager.url, headers=headers) as client:
            space = (await client.get("/api/v1/spaces")).json()[0]["id"]
            key = (await client.post(f"/api/v1/space/{space}/apikey", json={})).json()["accessKey"]

            async def healthy(hub_id: str) -> bool:
                hubs = (await client.get(f"/api/v1/space/{space}/api/v1/list")).json()
                return any(h["id"] == hub_id and h["healthy"] for h in hubs)

            options = options_at(manager.url, space, key, fake_hub.url)
            async with connector_running(options) as connector:
                await asyncio.wait_for(connector.connected.wait(), 15)
                assigned = connector.hub_id
                await eventually(lambda: healthy(assigned))
                await asyncio.to_thread(manager.stop)
                await eventually(lambda: _cleared(connector), what="connector noticed")
                await asyncio.to_thread(manager.start)
                await eventually(lambda: healthy(assigned), timeout=20, what="back after restart")
                assert connector.hub_id == assigned
                hubs = (await client.get(f"/api/v1/space/{space}/api/v1/list")).json()
                assert [h["id"] for h in hubs] == [assigned]  # no second Hub record
    finally:
        await asyncio.to_thread(manager.stop)


async def _cleared(connector: RunningConnector) -> bool:
    return not connector.connected.is_set()


async def test_a_hub_answering_garbage_keeps_the_tunnel_but_not_health(
    manager: RunningManager, caplog: pytest.LogCaptureFixture
):
    asked: list[bytes] = []  # the request lines the "Hub" got

    async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        asked.append((await reader.read(65536)).split(b"\r\n", 1)[0])
        writer.write(b"\x00\x01 this is no HTTP\r\n\r\n")
        await writer.drain()
        writer.close()

    def load_checks() -> int:
        return sum(b"/load-check " in line for line in asked)

    server = await asyncio.start_server(garbage, "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    key = await manager.new_key()
    async with server, connector_running(options_for(manager, key, url, hub_id="junk")) as c:
        await asyncio.wait_for(c.connected.wait(), 15)

        async def registered() -> bool:
            # The connector is up once its control channel opens; the manager lists the
            # Hub a moment later (after its id and Hub limit checks).
            return manager.svc.registry.get(manager.world.space_id, "junk") is not None

        await eventually(registered, timeout=5, what="the Hub in the registry")
        live = manager.svc.registry.get(manager.world.space_id, "junk")
        assert live is not None

        # The connector asked the Hub for its load three times (at the start and two LOAD
        # intervals later), and the control channel carries its other messages ...
        async def asked_thrice() -> bool:
            return load_checks() >= 3 and live.state.network_info is not None

        await eventually(asked_thrice, what="three load checks and NETWORK_INFO")
        # ... but the manager got no LOAD for any of them, so the Hub is connected, unhealthy.
        assert live.state.load is None and live.state.load_at is None, live.state.load
        entry = await hub_entry(manager, "junk")
        assert entry is not None and entry["isConnectionActive"] and not entry["healthy"]
        resp = await manager.client.get(
            f"/api/v1/space/{manager.world.space_id}/api/v1/sth/junk/api/v1/version"
        )
        assert resp.status_code == 502  # the manager's own answer to a Hub speaking garbage
        assert c.connected.is_set() and c.stop_reason is None
    warnings = [r.getMessage() for r in caplog.records if r.name == "manager.connector"]
    assert sum("not usable" in w for w in warnings) == 1  # logged once, not every poll
