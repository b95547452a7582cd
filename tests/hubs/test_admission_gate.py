"""A replica with no admission slot to spare turns tunnels away with "try again later" on both
carriers (CONNECT 503 with a jittered Retry-After, WebSocket close 1013) instead of hanging;
a tunnel that leaves while it waits gives its place back; the metrics show it all.

The test holds the only slot itself (`gate.admissions.enter()`), as a slow admission would."""

from __future__ import annotations

import asyncio
import re

import pytest
import websockets

from tests.conftest import SQLITE_ONLY, eventually
from tests.running import RunningManager, manager
from tests.tunnel.rawhub import connect_head

__all__ = ["manager"]
pytestmark = SQLITE_ONLY  # nothing here touches the database's kind


@pytest.fixture
def tight(manager: RunningManager) -> RunningManager:
    """One admission at a time, one waiting, for 0.3 s at most. Set on the running gate's
    queue: overriding `settings` here lost the `db_kind` parametrization on pytest 8.4.0 (the
    floors job)."""
    queue = manager.svc.gate.admissions
    queue.limit, queue.max_waiting, queue.max_wait_s = 1, 1, 0.3
    return manager


async def connect(manager: RunningManager, key: str, hub_id: str) -> bytes:
    """A CONNECT's answer head (the socket is closed after it)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    writer.write(connect_head(manager.world.space_id, key, hub_id=hub_id))
    try:
        return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    finally:
        writer.close()


def retry_after(head: bytes) -> int:
    found = re.search(rb"\r\nRetry-After: (\d+)\r\n", head)
    assert found, head
    return int(found.group(1))


async def test_no_slot_in_time_is_503_with_a_jittered_retry_after(tight: RunningManager):
    manager = tight
    key = await manager.new_key()
    gate = manager.svc.gate
    held = await gate.admissions.enter()
    t0 = asyncio.get_running_loop().time()
    heads = await asyncio.gather(*(connect(manager, key, f"h{i}") for i in range(12)))
    took = asyncio.get_running_loop().time() - t0
    assert all(h.startswith(b"HTTP/1.1 503 ") for h in heads), heads
    waits = [retry_after(h) for h in heads]
    assert all(2 <= w <= 10 for w in waits)
    assert len(set(waits)) > 1  # spread, so the refused come back at different times
    assert took < 5  # one waited 0.3 s, the others found the queue full at once
    assert gate.refused == {"busy": 12}
    assert gate.proofs.scrypt_runs == 0  # refused before any key work
    metrics = (await manager.client.get("/api/v1/metrics")).text
    assert 'manager_tunnels_refused_total{reason="busy"} 12.0' in metrics
    assert "manager_admissions_running 1.0" in metrics
    held.release()
    head = await connect(manager, key, "after")
    assert head.startswith(b"HTTP/1.1 200 "), head


async def test_websocket_closes_with_try_again_later(tight: RunningManager):
    manager = tight
    key = await manager.new_key()
    held = await manager.svc.gate.admissions.enter()
    org = manager.world.space_id.rsplit("-", 1)[0]
    url = f"ws://127.0.0.1:{manager.svc.settings.port}/api/v1/{org}/{manager.world.space_id}/"
    try:
        async with websockets.connect(
            url, additional_headers={"Authorization": f"Bearer {key}"}
        ) as ws:
            with pytest.raises(websockets.ConnectionClosed) as err:
                await ws.recv()
    finally:
        held.release()
    assert err.value.rcvd is not None and err.value.rcvd.code == 1013
    assert manager.svc.gate.refused == {"busy": 1}


async def test_a_tunnel_that_leaves_while_waiting_gives_its_place_back(
    tight: RunningManager,
):
    manager = tight
    key = await manager.new_key()
    gate = manager.svc.gate
    gate.admissions.max_wait_s = 30.0
    held = await gate.admissions.enter()
    _reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    writer.write(connect_head(manager.world.space_id, key, hub_id="leaver"))
    await eventually(lambda: gate.admissions.waiting == 1, "the tunnel waits", timeout=5)
    writer.close()
    await eventually(lambda: gate.admissions.waiting == 0, "its place is given back", timeout=5)
    held.release()
    assert (gate.admissions.running, gate.admissions.waiting) == (0, 0)
    assert gate.refused == {}
    head = await connect(manager, key, "next")
    assert head.startswith(b"HTTP/1.1 200 "), head
