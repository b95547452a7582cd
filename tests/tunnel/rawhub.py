"""A scriptable Hub in Python (our own Mux on the Hub side) for hostile-input tests: it can
behave like a Hub or send whatever bytes a test wants."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import TYPE_CHECKING

import h11

from manager.hubs.keys import make_proof
from manager.mux import ChannelEnded, ChannelOpened, ConnectionFailed, DataReceived, Mux

if TYPE_CHECKING:
    from tests.running import RunningManager


def connect_head(space: str, key: str | None, *, hub_id: str = "", extra: bytes = b"") -> bytes:
    org = space.rsplit("-", 1)[0]
    lines = [
        f"CONNECT /api/v1/{org}/{space}/ HTTP/1.1".encode(),
        b"x-sth-description: raw hub",
        b'x-sth-tags: ["raw"]',
        f"x-manager-id: {space}".encode(),
        f"x-sth-id: {hub_id}".encode(),
        f"x-org-id: {org}".encode(),
    ]
    if key is not None:
        lines.append(f'Authorization: Digest cnonce="{make_proof(key)}"'.encode())
    lines += [b"Host: 127.0.0.1", b"Connection: close"]
    return b"\r\n".join(lines) + b"\r\n" + extra + b"\r\n"


class RawHub:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.mux = Mux(window=16384, high_channels=False)
        self.control: int | None = None
        self.status: int | None = None
        self.closed = asyncio.Event()
        self.failed: str | None = None
        self._http: dict[int, h11.Connection] = {}
        self._task: asyncio.Task[None] | None = None
        self.mute = False  # drop everything the manager sends (never answer a channel)
        self.garbage = False  # answer new channels with bytes that are not HTTP
        self.deaf = asyncio.Event()  # set: stop reading the socket at all
        self.ended: dict[int, bool] = {}  # channels the manager ended: number -> with error

    @classmethod
    async def open(cls, port: int, head: bytes) -> RawHub:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(head)
        await writer.drain()
        hub = cls(reader, writer)
        response = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        hub.status = int(response.split(b" ", 2)[1])
        return hub

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._pump())

    async def _pump(self) -> None:
        try:
            while data := await self.reader.read(65536):
                if self.deaf.is_set():
                    await asyncio.Event().wait()  # never read again
                if self.mute:
                    continue
                self.mux.receive_data(data)
                for event in self.mux.events_received():
                    self._on_event(event)
                self._flush()
        except (ConnectionError, OSError):
            pass
        finally:
            self.closed.set()

    def _on_event(self, event: object) -> None:
        if isinstance(event, ChannelOpened):
            if self.garbage and self.control is not None:
                self.mux.send(event.channel, b"THIS IS NOT HTTP\r\n\r\n")
                self.mux.end(event.channel)
                return
            self._http[event.channel] = h11.Connection(h11.SERVER)
        elif isinstance(event, DataReceived):
            conn = self._http.get(event.channel)
            if conn is None:
                return
            self.mux.consumed(event.channel, len(event.data))
            conn.receive_data(event.data)
            while (ev := conn.next_event()) not in (h11.NEED_DATA, h11.PAUSED):
                if isinstance(ev, h11.Request) and ev.target == b"/api/v1/platform":
                    self.control = event.channel
                    head = conn.send(
                        h11.Response(status_code=200, headers=[("transfer-encoding", "chunked")])
                    )
                    self.mux.send(event.channel, head or b"")
                    self.send_control(
                        7001,
                        {
                            "avgLoad": 0.1,
                            "currentLoad": 0.2,
                            "memFree": 1,
                            "memUsed": 1,
                            "fsSize": [],
                        },
                    )
        elif isinstance(event, ChannelEnded):
            self.ended[event.channel] = event.error
        elif isinstance(event, ConnectionFailed):
            self.failed = event.reason

    def send_control(self, code: int, payload: object) -> None:
        self.send_control_raw(json.dumps([code, payload]).encode() + b"\n")

    def send_control_raw(self, line: bytes) -> None:
        assert self.control is not None
        chunk = f"{len(line):x}\r\n".encode() + line + b"\r\n"
        self.mux.send(self.control, chunk)
        self._flush()

    def _flush(self) -> None:
        for frame in self.mux.data_to_send():
            self.writer.write(frame)

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    async def wait_control(self, timeout: float = 10) -> None:
        async def until() -> None:
            while self.control is None:
                await asyncio.sleep(0.02)

        await asyncio.wait_for(until(), timeout)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        if self._task is not None:
            self._task.cancel()


async def join(manager: RunningManager, key: str, hub_id: str) -> RawHub:
    """A raw Hub through admission and into the registry (or refused: see `status`)."""
    head = connect_head(manager.world.space_id, key, hub_id=hub_id)
    hub = await RawHub.open(manager.svc.settings.port, head)
    if hub.status == 200:
        hub.start()
        await hub.wait_control()
        deadline = time.monotonic() + 5
        # Registered, and its record written (connects are written in batches).
        while not any(h["id"] == hub_id and h["isConnectionActive"] for h in await manager.hubs()):
            assert time.monotonic() < deadline, f"{hub_id} never registered"
            await asyncio.sleep(0.02)
    return hub
