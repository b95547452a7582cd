"""The WebSocket carrier: the same BPMux byte stream as a CONNECT tunnel, in binary messages.

Outgoing frames are queued and sent by one task; past a high-water mark the session is told
to pause writers (as a socket's pause_writing would), so a slow peer bounds our memory.
Text messages are a protocol error (close 1003); oversized messages are refused by the
receiving side's message-size limit (close 1009). Serves both ends: the manager's, over
Starlette's server WebSocket, and a Hub's (`space-manager connect`), over a `websockets`
client connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from manager.tunnel.session import TunnelSession

log = logging.getLogger("manager.tunnel")

HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
MAX_MESSAGE = 4 * 1024 * 1024
TEXT_MESSAGE = "text message on the tunnel"


class MessageSocket(Protocol):
    """A WebSocket as the carrier uses it."""

    async def receive_message(self) -> bytes | str | None:
        """The next message; None once the socket is closed."""
        ...

    async def send_bytes(self, data: bytes) -> None: ...

    async def close(self, code: int, reason: str) -> None: ...


def close_code_for(reason: str) -> tuple[int, str]:
    """The close code and reason for a session that ended for `reason`."""
    if reason.startswith("protocol error"):
        return 1002, reason
    if reason == TEXT_MESSAGE:
        return 1003, reason
    return 1000, reason or "tunnel closed"


class WebSocketCarrier:
    def __init__(
        self,
        ws: MessageSocket,
        close_code: Callable[[str], tuple[int, str]] = close_code_for,
        *,
        max_message: int = MAX_MESSAGE,
        high_water: int = HIGH_WATER,
        low_water: int = LOW_WATER,
    ) -> None:
        self.ws = ws
        self.close_code = close_code
        self.max_message = max_message
        self.high_water = high_water
        self.low_water = low_water
        self.session: TunnelSession | None = None
        self._queue: deque[bytes] = deque()
        self._queued = 0
        self._ready = asyncio.Event()
        self._closing: tuple[int, str] | None = None

    def write(self, chunks: list[bytes]) -> None:
        data = b"".join(chunks)
        if not data or self._closing is not None:
            return
        self._queue.append(data)
        self._queued += len(data)
        self._ready.set()
        if self._queued > self.high_water and self.session is not None:
            self.session.pause_writing()

    def close(self) -> None:
        if self._closing is None:
            reason = self.session.close_reason if self.session is not None else None
            self._closing = self.close_code(reason or "")
            self._ready.set()

    async def carry(self, session: TunnelSession) -> None:
        """Feed `session` what arrives and send what it writes, until either side ends it."""
        self.session = session
        sender = asyncio.ensure_future(self.pump_out())
        try:
            while not session.is_closed:
                message = await self.ws.receive_message()
                if message is None:
                    session.feed_eof("websocket closed")
                elif isinstance(message, str):
                    log.warning("%s: text message on a tunnel; closing", session.name)
                    session.close(TEXT_MESSAGE)
                else:
                    session.feed(message)
        except OSError as exc:
            session.feed_eof(f"websocket failed: {exc}")
        finally:
            session.close(session.close_reason or "websocket closed")
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(sender, 5)
            sender.cancel()

    async def pump_out(self) -> None:
        """Send queued frames in order; then the close, once the session ends."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                data = self._queue.popleft()
                self._queued -= len(data)
                # Coalesce small frames into one message; keep messages within bounds.
                while self._queue and len(data) + len(self._queue[0]) <= self.max_message:
                    more = self._queue.popleft()
                    self._queued -= len(more)
                    data += more
                await self.ws.send_bytes(data)
                if self._queued < self.low_water and self.session is not None:
                    self.session.resume_writing()
            if self._closing is not None:
                code, reason = self._closing
                with contextlib.suppress(Exception):
                    await self.ws.close(code, reason[:120])
                return


class ServerSocket:
    """Starlette's WebSocket (the manager's end) as a `MessageSocket`."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws

    async def receive_message(self) -> bytes | str | None:
        try:
            message = await self.ws.receive()
        except (WebSocketDisconnect, RuntimeError) as exc:
            raise ConnectionResetError(repr(exc)) from exc
        if message["type"] == "websocket.disconnect":
            return None
        data: bytes | None = message.get("bytes")
        return data if data is not None else str(message.get("text") or "")

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send_bytes(data)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code=code, reason=reason)


class ClientSocket:
    """A `websockets` client connection (a Hub's end) as a `MessageSocket`."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws

    async def receive_message(self) -> bytes | str | None:
        try:
            return await self.ws.recv()
        except ConnectionClosed:
            return None

    async def send_bytes(self, data: bytes) -> None:
        await self.ws.send(data)

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)


async def run_websocket_tunnel(
    ws: WebSocket,
    run: Callable[[TunnelSession], Awaitable[None]],
    *,
    name: str,
    close_code: Callable[[str], tuple[int, str]],
) -> None:
    """Carry one tunnel over an accepted WebSocket until either side ends it."""
    carrier = WebSocketCarrier(ServerSocket(ws), close_code)
    session = TunnelSession(carrier, name=name)
    runner = asyncio.ensure_future(run(session))
    try:
        await carrier.carry(session)
    finally:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(runner, 30)
