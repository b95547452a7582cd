"""The WebSocket carrier: the same BPMux byte stream as a CONNECT tunnel, in binary messages.

Outgoing frames are queued and sent by one task; past a high-water mark the session is told
to pause writers (as a socket's pause_writing would), so a slow peer bounds our memory.
Text messages are a protocol error (close 1003); oversized messages are refused by the
server's message-size limit (close 1009).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable

from starlette.websockets import WebSocket, WebSocketDisconnect

from manager.tunnel.session import TunnelSession

log = logging.getLogger("manager.tunnel")

HIGH_WATER = 1024 * 1024
LOW_WATER = 256 * 1024
MAX_MESSAGE = 4 * 1024 * 1024


class WebSocketCarrier:
    def __init__(self, ws: WebSocket, close_code: Callable[[str], tuple[int, str]]) -> None:
        self.ws = ws
        self.close_code = close_code
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
        if self._queued > HIGH_WATER and self.session is not None:
            self.session.pause_writing()

    def close(self) -> None:
        if self._closing is None:
            reason = self.session.close_reason if self.session is not None else None
            self._closing = self.close_code(reason or "")
            self._ready.set()

    async def pump_out(self) -> None:
        """Send queued frames in order; then the close, once the session ends."""
        while True:
            await self._ready.wait()
            self._ready.clear()
            while self._queue:
                data = self._queue.popleft()
                self._queued -= len(data)
                # Coalesce small frames into one message; keep messages within bounds.
                while self._queue and len(data) + len(self._queue[0]) <= MAX_MESSAGE:
                    more = self._queue.popleft()
                    self._queued -= len(more)
                    data += more
                await self.ws.send_bytes(data)
                if self._queued < LOW_WATER and self.session is not None:
                    self.session.resume_writing()
            if self._closing is not None:
                code, reason = self._closing
                with contextlib.suppress(Exception):
                    await self.ws.close(code=code, reason=reason[:120])
                return


async def run_websocket_tunnel(
    ws: WebSocket,
    run: Callable[[TunnelSession], Awaitable[None]],
    *,
    name: str,
    close_code: Callable[[str], tuple[int, str]],
) -> None:
    """Carry one tunnel over an accepted WebSocket until either side ends it."""
    carrier = WebSocketCarrier(ws, close_code)
    session = TunnelSession(carrier, name=name)
    carrier.session = session
    sender = asyncio.ensure_future(carrier.pump_out())
    runner = asyncio.ensure_future(run(session))
    try:
        while not session.is_closed:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                session.feed_eof("websocket closed")
                break
            data = message.get("bytes")
            if data is None:
                log.warning("%s: text message on a tunnel; closing", name)
                session.close("text message on the tunnel")
                break
            session.feed(data)
    except (WebSocketDisconnect, RuntimeError, OSError) as exc:
        session.feed_eof(f"websocket failed: {exc!r}")
    finally:
        session.close(session.close_reason or "websocket closed")
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(runner, 30)
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await asyncio.wait_for(sender, 5)
        sender.cancel()
