"""The connector's tunnel end (`hub_end`: the Hub's end of a `TunnelSession`) against a
scripted manager (a test-side Mux over a fake WebSocket): routing, 502 for a dead Hub, and
back-pressure both ways, with byte counts."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json

import h11
import pytest

from manager.connector import Connector, ConnectorOptions, HubAddress
from manager.connector.runner import WINDOW, hub_end
from manager.mux import ChannelEnded, DataReceived, HandshakeCompleted, Mux, WindowUpdated
from tests.conftest import free_port

MiB = 1 << 20


class FakeWebSocket:
    """A `MessageSocket` whose peer is the test."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.close_code: int | None = None

    async def receive_message(self) -> bytes | None:
        item = await self.inbox.get()
        if item is None:
            self.inbox.put_nowait(None)  # closed stays closed
        return item

    async def send_bytes(self, data: bytes) -> None:
        await self.outbox.put(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.close_code = code
        self.inbox.put_nowait(None)


class ScriptedManager:
    """The manager's side: a high-channel Mux whose events the test inspects."""

    def __init__(self, ws: FakeWebSocket) -> None:
        self.ws = ws
        self.mux = Mux(high_channels=True)
        self.received: dict[int, bytearray] = {}
        self.ended: set[int] = set()
        self.changed = asyncio.Event()
        self._task = asyncio.ensure_future(self._pump())

    async def _pump(self) -> None:
        while True:
            self.mux.receive_data(await self.ws.outbox.get())
            for ev in self.mux.events_received():
                if isinstance(ev, DataReceived):
                    self.received.setdefault(ev.channel, bytearray()).extend(ev.data)
                elif isinstance(ev, ChannelEnded):
                    self.ended.add(ev.channel)
                elif isinstance(ev, HandshakeCompleted | WindowUpdated):
                    pass
            self.flush()
            self.changed.set()

    def flush(self) -> None:
        frames = self.mux.data_to_send()
        if frames:
            self.ws.inbox.put_nowait(b"".join(frames))

    async def until(self, predicate, timeout: float = 10) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def open(self) -> int:
        number = self.mux.open_channel()
        self.flush()
        await self.until(lambda: self.mux.allowance(number) > 0)
        return number

    async def send(self, number: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            await self.until(lambda: self.mux.allowance(number) > 0)
            view = view[self.mux.send(number, view) :]
            self.flush()

    async def stop(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


@contextlib.asynccontextmanager
async def tunnel_to(hub_port: int):
    options = ConnectorOptions(
        hub=HubAddress("127.0.0.1", hub_port),
        platform_api="http://127.0.0.1:1",
        org="o",
        space="o-s",
        key="unused",
    )
    connector = Connector(options, environ={})
    ws = FakeWebSocket()
    session, carrier = hub_end(ws, connector._serve_channel, name="test tunnel")
    runner = asyncio.ensure_future(carrier.carry(session))
    manager = ScriptedManager(ws)
    try:
        yield manager
    finally:
        await ws.close()
        await asyncio.wait_for(runner, 5)
        await manager.stop()


def response_of(raw: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    client.receive_data(b"")
    head = client.next_event()
    assert isinstance(head, h11.Response)
    body = b""
    while isinstance(ev := client.next_event(), h11.Data):
        body += ev.data
    return head.status_code, dict(head.headers), body


async def test_dead_hub_gets_a_502_json_answer():
    async with tunnel_to(free_port()) as manager:
        ch = await manager.open()
        await manager.send(ch, b"GET /api/v1/version HTTP/1.1\r\nHost: hub\r\n\r\n")
        await manager.until(lambda: ch in manager.ended)
        status, headers, body = response_of(bytes(manager.received[ch]))
        assert status == 502 and headers[b"content-type"] == b"application/json"
        assert json.loads(body) == {"error": "Local Hub not reachable"}


async def test_garbage_on_a_channel_gets_400_and_the_tunnel_lives():
    async with tunnel_to(free_port()) as manager:
        ch = await manager.open()
        await manager.send(ch, b"\x00\x01 not http\r\n\r\n")
        await manager.until(lambda: ch in manager.ended)
        assert response_of(bytes(manager.received[ch]))[0] == 400
        ch2 = await manager.open()  # the tunnel still serves channels
        await manager.send(ch2, b"GET / HTTP/1.1\r\nHost: hub\r\n\r\n")
        await manager.until(lambda: ch2 in manager.ended)


async def test_upload_back_pressure_a_hub_that_does_not_read_stops_the_manager():
    reading = asyncio.Event()
    got = hashlib.sha256()
    total = 0

    async def hub(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal total
        await reading.wait()
        while chunk := await reader.read(MiB):
            if total == 0:
                head, _, chunk = chunk.partition(b"\r\n\r\n")
                assert b"Connection: close" in head
            got.update(chunk)
            total += len(chunk)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(hub, "127.0.0.1", 0)
    size = 64 * MiB
    body = bytes(range(256)) * (size // 256)
    async with server, tunnel_to(server.sockets[0].getsockname()[1]) as manager:
        ch = await manager.open()
        head = f"POST /api/v1/echo HTTP/1.1\r\nHost: hub\r\nContent-Length: {size}\r\n\r\n"
        sending = asyncio.ensure_future(manager.send(ch, head.encode() + body))
        await asyncio.sleep(1.0)
        sent = manager.mux._channels[ch].send_seq  # what the connector let us send
        assert not sending.done()
        # The connector holds at most one window; the rest sits in the kernel's socket buffers.
        assert sent < WINDOW + 16 * MiB, sent
        await asyncio.sleep(0.5)
        assert manager.mux._channels[ch].send_seq == sent  # and it stays stopped
        reading.set()
        await asyncio.wait_for(sending, 30)
        manager.mux.end(ch)
        manager.flush()
        await manager.until(lambda: ch in manager.ended)
    assert total == size and got.digest() == hashlib.sha256(body).digest()


async def test_download_back_pressure_the_hub_is_read_only_as_the_manager_consumes():
    written = 0
    size = 64 * MiB
    block = b"d" * MiB

    async def hub(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal written
        await reader.readuntil(b"\r\n\r\n")
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {size}\r\n\r\n".encode())
        for _ in range(size // MiB):
            writer.write(block)
            await writer.drain()
            written += len(block)
        writer.close()

    server = await asyncio.start_server(hub, "127.0.0.1", 0)
    async with server, tunnel_to(server.sockets[0].getsockname()[1]) as manager:
        ch = await manager.open()
        await manager.send(ch, b"GET /big HTTP/1.1\r\nHost: hub\r\n\r\n")
        await asyncio.sleep(1.0)
        held = len(manager.received.get(ch, b""))
        assert held <= manager.mux._window  # never past the window we advertised
        assert written < 32 * MiB, written  # the Hub is held back, not drained into memory
        taken = 0
        while ch not in manager.ended:
            pending = len(manager.received[ch]) - taken
            if pending:
                manager.mux.consumed(ch, pending)
                taken += pending
                manager.flush()
            manager.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(manager.changed.wait(), 1)
        assert written == size
        assert len(manager.received[ch]) > size  # the head plus every body byte


@pytest.mark.parametrize("error", [False, True])
async def test_manager_end_reaches_the_hub(error: bool):
    seen_eof = asyncio.Event()
    aborted = asyncio.Event()

    async def hub(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if await reader.read() == b"":
                seen_eof.set()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        except ConnectionError:
            aborted.set()
        finally:
            writer.close()

    server = await asyncio.start_server(hub, "127.0.0.1", 0)
    async with server, tunnel_to(server.sockets[0].getsockname()[1]) as manager:
        ch = await manager.open()
        await manager.send(
            ch, b"POST /x HTTP/1.1\r\nHost: hub\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        await asyncio.sleep(0.2)
        manager.mux.end(ch, error=error)
        manager.flush()
        if error:
            await manager.until(lambda: ch in manager.ended)
        else:
            await asyncio.wait_for(seen_eof.wait(), 5)  # END became a TCP half-close
            await manager.until(lambda: ch in manager.ended)
            assert bytes(manager.received[ch]).endswith(b"ok")
