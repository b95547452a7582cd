"""The Hub end of a WebSocket tunnel: one `Mux` pumped over a `websockets` client connection.

Binary messages carry the BPMux byte stream (message boundaries mean nothing); every channel
the manager opens becomes a `ChannelPort` handed to a handler task. Unlike the manager's own
`Channel`, a port gives window back only when the handler says the bytes are *used*
(`consumed`), so a slow local Hub slows the manager down instead of filling our memory.
Outgoing frames queue for one sender task that coalesces them into messages; past a
high-water mark writers pause. Knows nothing of HTTP, the local Hub or reconnecting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Final

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from manager.connector.errors import ChannelGone
from manager.mux import (
    ChannelClosed,
    ChannelEnded,
    ChannelOpened,
    ConnectionFailed,
    DataReceived,
    Mux,
    UsageError,
    WindowUpdated,
)

__all__ = ["ChannelPort", "Tunnel"]

log = logging.getLogger("manager.connector")

WINDOW: Final = 512 * 1024  # what we let the manager send per channel before a STATUS
MAX_MESSAGE: Final = 1024 * 1024  # the manager refuses messages over 4 MiB
HIGH_WATER: Final = 2 * 1024 * 1024
LOW_WATER: Final = 512 * 1024
KEEP_ALIVE_S: Final = 30.0


class ChannelPort:
    """One manager-opened channel: bytes in (kept until `consumed`), bytes out (as the
    manager's window and our carrier allow), and END either way."""

    def __init__(self, tunnel: Tunnel, number: int) -> None:
        self.tunnel = tunnel
        self.number = number
        self.peer_ended = False
        self.peer_error = False
        self.closed = False
        self._chunks: deque[bytes] = deque()
        self._readable = asyncio.Event()
        self._window = asyncio.Event()
        self._discard = False

    # events from the tunnel

    def on_data(self, data: bytes) -> None:
        if self._discard:
            self.tunnel.consumed(self.number, len(data))
            return
        self._chunks.append(data)
        self._readable.set()

    def on_end(self, error: bool) -> None:
        self.peer_ended = True
        self.peer_error = self.peer_error or error
        self._readable.set()

    def on_window(self) -> None:
        self._window.set()

    def on_closed(self) -> None:
        self.closed = True
        self.peer_ended = True
        self._readable.set()
        self._window.set()

    # for handlers

    async def read(self) -> bytes:
        """Everything received so far (b"" once the manager ended its side). The caller
        owes a `consumed(len(data))` once the bytes are where they were going."""
        while not self._chunks:
            if self.peer_ended:
                if self.peer_error:
                    raise ChannelGone(f"channel {self.number} reset by the manager")
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    def consumed(self, n: int) -> None:
        if n and not self.closed:
            self.tunnel.consumed(self.number, n)

    def allowance(self) -> int:
        return self.tunnel.mux.allowance(self.number)

    async def sendable(self) -> int:
        """Wait until the manager has room on this channel and our carrier is not backed
        up; returns how many bytes may be sent now."""
        while True:
            if self.closed:
                raise ChannelGone(f"channel {self.number} closed")
            self._window.clear()
            room = self.allowance()
            if room > 0:
                await self.tunnel.writable()
                if not self.closed and self.allowance() > 0:
                    return self.allowance()
                continue
            await self._window.wait()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            await self.sendable()
            view = view[self.tunnel.send(self.number, view) :]

    def end(self, *, error: bool = False) -> None:
        self.tunnel.end(self.number, error=error)

    def discard(self) -> None:
        """The handler is done: whatever still arrives is dropped and acknowledged at once,
        so the manager is never left waiting for window on a channel nobody reads."""
        self._discard = True
        dropped = sum(len(c) for c in self._chunks)
        self._chunks.clear()
        self.consumed(dropped)


Handler = Callable[[ChannelPort], Awaitable[None]]


class Tunnel:
    def __init__(self, ws: ClientConnection, on_channel: Handler, *, name: str = "tunnel") -> None:
        self.ws = ws
        self.on_channel = on_channel
        self.name = name
        self.mux = Mux(window=WINDOW, high_channels=False)
        self.ports: dict[int, ChannelPort] = {}
        self.failure: str | None = None
        self._out: deque[bytes] = deque()
        self._out_bytes = 0
        self._out_ready = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def run(self) -> None:
        """Pump until the WebSocket closes; then every port is closed and every handler
        cancelled. Close codes are left on `ws` for the caller to judge."""
        sender = asyncio.ensure_future(self._pump_out())
        keepalive = asyncio.ensure_future(self._keep_alive())
        try:
            async for message in self.ws:
                if isinstance(message, str):
                    self.failure = "text message on the tunnel"
                    await self.ws.close(1003, self.failure)
                    break
                self.mux.receive_data(message)
                self._dispatch()
                self.flush()
                if self.failure is not None:
                    await self.ws.close(1002, self.failure[:120])
                    break
        except ConnectionClosed:
            pass
        finally:
            self._closed = True
            self.mux.receive_eof()
            self._dispatch()
            for task in (sender, keepalive, *self._tasks):
                task.cancel()
            for task in (sender, keepalive, *self._tasks):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def close(self, code: int = 1000, reason: str = "") -> None:
        with contextlib.suppress(Exception):
            await self.ws.close(code, reason)

    # used by ports

    async def writable(self) -> None:
        await self._writable.wait()

    def send(self, number: int, data: memoryview) -> int:
        try:
            sent = self.mux.send(number, data)
        except UsageError as exc:
            raise ChannelGone(str(exc)) from None
        self.flush()
        return sent

    def end(self, number: int, *, error: bool = False) -> None:
        self.mux.end(number, error=error)
        self._dispatch()
        self.flush()

    def consumed(self, number: int, n: int) -> None:
        with contextlib.suppress(UsageError):
            self.mux.consumed(number, n)
        self.flush()

    def flush(self) -> None:
        frames = self.mux.data_to_send()
        if not frames or self._closed:
            return
        data = b"".join(frames)
        self._out.append(data)
        self._out_bytes += len(data)
        self._out_ready.set()
        if self._out_bytes > HIGH_WATER:
            self._writable.clear()

    # internals

    def _dispatch(self) -> None:
        for event in self.mux.events_received():
            if isinstance(event, DataReceived):
                port = self.ports.get(event.channel)
                if port is not None:
                    port.on_data(event.data)
            elif isinstance(event, WindowUpdated):
                if (port := self.ports.get(event.channel)) is not None:
                    port.on_window()
            elif isinstance(event, ChannelOpened):
                self._opened(event.channel)
            elif isinstance(event, ChannelEnded):
                if (port := self.ports.get(event.channel)) is not None:
                    port.on_end(event.error)
            elif isinstance(event, ChannelClosed):
                if (port := self.ports.pop(event.channel, None)) is not None:
                    port.on_closed()
            elif isinstance(event, ConnectionFailed):
                self.failure = f"protocol error: {event.reason}"
                log.warning("%s: %s", self.name, self.failure)

    def _opened(self, number: int) -> None:
        port = ChannelPort(self, number)
        self.ports[number] = port
        task = asyncio.get_running_loop().create_task(self._serve(port))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, port: ChannelPort) -> None:
        try:
            await self.on_channel(port)
        except ChannelGone:
            pass
        except Exception as exc:  # one bad channel must not cost the tunnel
            log.warning("%s: channel %d failed: %r", self.name, port.number, exc)
            port.end(error=True)
        finally:
            port.discard()

    async def _pump_out(self) -> None:
        while True:
            await self._out_ready.wait()
            self._out_ready.clear()
            while self._out:
                pieces = [self._out.popleft()]
                size = len(pieces[0])
                while self._out and size + len(self._out[0]) <= MAX_MESSAGE:
                    size += len(self._out[0])
                    pieces.append(self._out.popleft())
                try:
                    await self.ws.send(pieces[0] if len(pieces) == 1 else b"".join(pieces))
                finally:
                    self._out_bytes -= size
                if self._out_bytes < LOW_WATER:
                    self._writable.set()

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEP_ALIVE_S)
            self.mux.keep_alive()
            self.flush()
