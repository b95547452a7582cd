"""A network path that silently drops everything (no FIN, no RST): the manager notices the
missing LOAD reports and marks the Hub disconnected instead of trusting a dead socket."""

from __future__ import annotations

import asyncio
import contextlib
import time

from tests.interop.peer import HubPeer
from tests.running import RunningManager


class BlackholeRelay:
    """Forwards TCP both ways until `swallow()`; then reads and drops, never closes."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.black = False
        self.server: asyncio.Server | None = None
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    def swallow(self) -> None:
        self.black = True

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await src.read(65536):
                    if not self.black:
                        dst.write(data)
                        await dst.drain()
                while True:  # stay silent, keep the socket open
                    await asyncio.sleep(3600)

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.server is not None:
            self.server.close()


async def test_silent_path_marks_the_hub_disconnected(manager: RunningManager):
    manager.svc.registry.healthy_after_s = 3.0
    manager.svc.supervisor.sweep_s = 0.5
    relay = BlackholeRelay(manager.svc.settings.port)
    await relay.start()
    key = await manager.new_key()
    peer = await HubPeer.start(
        f"http://127.0.0.1:{relay.port}",
        manager.world.space_id,
        key,
        "--id",
        "behind-relay",
        "--load-interval",
        "500",
    )
    try:
        await peer.wait_for(event="control_opened")
        deadline = time.monotonic() + 10
        while not any(h["id"] == "behind-relay" and h["healthy"] for h in await manager.hubs()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        relay.swallow()
        started = time.monotonic()
        while any(
            h["id"] == "behind-relay" and h["isConnectionActive"] for h in await manager.hubs()
        ):
            assert time.monotonic() - started < 8, "a silent tunnel was kept"
            await asyncio.sleep(0.1)
        info = await manager.hub("behind-relay")
        assert info["healthy"] is False and "no LOAD" in info["disconnectReason"]
    finally:
        await peer.stop()
        await relay.close()
