"""A draining replica refuses new tunnels with "try again" on both carriers (a Hub then
joins another replica), before spending a key check on them; the metrics count it."""

from __future__ import annotations

import asyncio

import pytest
import websockets

from tests.conftest import SQLITE_ONLY
from tests.running import RunningManager, manager
from tests.tunnel.rawhub import connect_head

__all__ = ["manager"]
pytestmark = SQLITE_ONLY  # nothing here touches the database's kind


async def test_connect_gets_503_with_retry_after(manager: RunningManager):
    key = await manager.new_key()
    manager.svc.drain.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    writer.write(connect_head(manager.world.space_id, key, hub_id="late"))
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert head.startswith(b"HTTP/1.1 503 ")
    assert b"\r\nRetry-After: 5\r\n" in head
    assert await asyncio.wait_for(reader.read(), 10) == b""  # and closed
    writer.close()
    assert manager.svc.gate.refused == {"draining": 1}
    assert manager.svc.gate.proofs.scrypt_runs == 0
    metrics = (await manager.client.get("/api/v1/metrics")).text
    assert 'manager_tunnel_admissions_total{outcome="draining"} 1.0' in metrics
    assert "manager_draining 1.0" in metrics


async def test_websocket_closes_with_try_again_later(manager: RunningManager):
    key = await manager.new_key()
    manager.svc.drain.start()
    org = manager.world.space_id.rsplit("-", 1)[0]
    url = f"ws://127.0.0.1:{manager.svc.settings.port}/api/v1/{org}/{manager.world.space_id}/"
    async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        with pytest.raises(websockets.ConnectionClosed) as err:
            await ws.recv()
    assert err.value.rcvd is not None and err.value.rcvd.code == 1013
