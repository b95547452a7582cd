"""A WebSocket tunnel whose peer stops answering pings is dropped within 15 s: the manager
pings every 5 s and gives a pong 10 s.

The peer here keeps sending LOAD all along, so the missing-LOAD check (which closes a tunnel
after 15 s without one) cannot be what drops it, and it sends no pings of its own and never
closes its socket: only the manager's ping timeout is left to end the tunnel.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from tests.conftest import eventually
from tests.connector.helpers import Host018, connector_running, is_gone, is_healthy, options_at
from tests.running import RunningManager

PING_INTERVAL_S = 5.0  # manager/web/server.py, README
PING_TIMEOUT_S = 10.0


class DeafRelay:
    """Forwards TCP both ways until `deafen()`; from then on what the manager sends is read
    and dropped (its pings never arrive, so no pong goes back) while what the peer sends
    still goes through. Never closes a socket itself; notes when the manager closed its."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.deaf = False
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.manager_closed_at: float | None = None
        self.peer_closed_at: float | None = None

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def deafen(self) -> None:
        self.deaf = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def upstream() -> None:  # peer -> manager, always
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    up_writer.write(data)
                    await up_writer.drain()
            self.peer_closed_at = self.peer_closed_at or time.monotonic()

        async def downstream() -> None:  # manager -> peer, until deafened
            with contextlib.suppress(ConnectionError):
                while data := await up_reader.read(65536):
                    if not self.deaf:
                        writer.write(data)
                        await writer.drain()
            self.manager_closed_at = self.manager_closed_at or time.monotonic()

        await asyncio.gather(upstream(), downstream())

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()


async def test_websocket_peer_not_answering_pings_is_dropped_within_15s(
    manager: RunningManager, host018: Host018, monkeypatch: pytest.MonkeyPatch
):
    # The connector's own keepalive would close the tunnel from its side (pings every 10 s,
    # 10 s for the pong); without it the peer is deaf but keeps talking.
    monkeypatch.setattr("manager.connector.runner.PING_S", None)
    assert manager.svc.registry.healthy_after_s >= 15.0  # the missing-LOAD limit
    relay = DeafRelay(manager.svc.settings.port)
    await relay.start()
    key = await manager.new_key()
    options = options_at(
        f"http://127.0.0.1:{relay.port}",
        manager.world.space_id,
        key,
        host018.url,
        hub_id="quiet-ws",
    )
    assert options.load_interval <= 1.0
    try:
        async with connector_running(options):
            await eventually(lambda: is_healthy(manager, "quiet-ws"), what="quiet-ws healthy")
            live = manager.svc.registry.get(manager.world.space_id, "quiet-ws")
            assert live is not None
            relay.deafen()
            deafened = time.monotonic()
            last_load = 0.0

            async def gone() -> bool:
                nonlocal last_load
                last_load = max(last_load, live.state.load_at or 0.0)
                return await is_gone(manager, "quiet-ws")

            await eventually(gone, timeout=25, what="the deaf tunnel dropped")
            took = time.monotonic() - deafened
            # The first ping after deafen() goes out within 5 s; 10 s later its pong is late.
            assert PING_TIMEOUT_S - 0.5 <= took <= PING_INTERVAL_S + PING_TIMEOUT_S + 1.0, took
            # LOAD kept arriving until the end, far inside the missing-LOAD limit ...
            assert last_load > deafened + took - 3.0, (last_load - deafened, took)
            # ... and it was the manager that hung up, not the peer.
            assert relay.manager_closed_at is not None and relay.peer_closed_at is None
            reason = (await manager.hub("quiet-ws"))["disconnectReason"]
            assert reason and "no LOAD" not in reason, reason
    finally:
        await relay.close()
