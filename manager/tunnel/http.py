"""HTTP/1.1 on channels, through h11: serving the requests a Hub makes, and the manager's
long-lived control request whose request and response bodies both stay open.

Both directions of the control request stay open for the tunnel's life (hub-protocol.md P9),
so it is driven with h11 here; ordinary requests to a Hub go through `manager.hubs.client`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

import h11
from starlette.types import ASGIApp, Message

from manager.tunnel.channel import Channel
from manager.tunnel.errors import TunnelError

log = logging.getLogger("manager.tunnel")

READ_SIZE = 64 * 1024
MAX_HEAD = 64 * 1024


class HttpChannelError(TunnelError):
    """The peer sent something that is not the HTTP we expected."""


async def _next_event(conn: h11.Connection, channel: Channel) -> Any:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise HttpChannelError(str(exc)) from None
        if event is not h11.NEED_DATA:
            return event
        data = await channel.read(READ_SIZE)
        conn.receive_data(data)  # b"" tells h11 about EOF


async def serve_http(channel: Channel, app: ASGIApp, state: dict[str, Any]) -> None:
    """Serve one HTTP request arriving on `channel` with the ASGI `app`, then end it."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
    try:
        request = await _next_event(conn, channel)
    except HttpChannelError as exc:
        log.warning("channel %d: bad request from Hub: %s", channel.number, exc)
        await _write_simple(channel, conn, 400)
        return
    if not isinstance(request, h11.Request):
        await channel.end()
        return
    raw_path, _, query = request.target.partition(b"?")
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request.method.decode("ascii", "replace"),
        "scheme": "http",
        "path": unquote(raw_path.decode("latin-1")),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": [(k.lower(), v) for k, v in request.headers],
        "server": ("tunnel", 80),
        "client": ("hub", channel.number),
        "state": dict(state),
    }
    responder = _Responder(channel, conn)

    async def receive() -> Message:
        if responder.body_done:
            await channel.closed.wait()
            return {"type": "http.disconnect"}
        event = await _next_event(conn, channel)
        if isinstance(event, h11.Data):
            return {"type": "http.request", "body": bytes(event.data), "more_body": True}
        responder.body_done = True
        return {"type": "http.request", "body": b"", "more_body": False}

    try:
        await app(scope, receive, responder.send)
    finally:
        if not responder.started:
            await _write_simple(channel, conn, 500)
        await channel.end()


class _Responder:
    def __init__(self, channel: Channel, conn: h11.Connection) -> None:
        self.channel = channel
        self.conn = conn
        self.started = False
        self.finished = False
        self.body_done = False
        self._status = 200
        self._headers: list[tuple[bytes, bytes]] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self._status = int(message["status"])
            self._headers = [(bytes(k), bytes(v)) for k, v in message.get("headers", [])]
            return
        if message["type"] != "http.response.body" or self.finished:
            return
        if not self.started:
            self.started = True
            names = {k.lower() for k, _ in self._headers}
            if b"content-length" not in names:
                self._headers.append((b"transfer-encoding", b"chunked"))
            self._headers.append((b"connection", b"close"))
            await self._write(h11.Response(status_code=self._status, headers=self._headers))
        body = message.get("body", b"")
        if body:
            await self._write(h11.Data(data=body))
        if not message.get("more_body", False):
            self.finished = True
            await self._write(h11.EndOfMessage())

    async def _write(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            await self.channel.write(data)


async def _write_simple(channel: Channel, conn: h11.Connection, status: int) -> None:
    try:
        body = b'{"error":"Bad Request"}' if status == 400 else b'{"error":"Internal Server Error"}'
        head = h11.Response(
            status_code=status,
            headers=[
                ("content-type", "application/json"),
                ("content-length", str(len(body))),
                ("connection", "close"),
            ],
        )
        for event in (head, h11.Data(data=body), h11.EndOfMessage()):
            data = conn.send(event)
            if data:
                await channel.write(data)
    except (h11.LocalProtocolError, TunnelError):
        pass
    await channel.end()


class ControlStream:
    """The manager's `POST /api/v1/platform` on a channel: lines out, lines in (spec §5).

    The Hub's answer is pushed to a receiver as it arrives (`listen`) rather than awaited
    piece by piece. Why: this request lasts as long as the tunnel, and awaiting each LOAD
    (every 5 s per Hub) parked a coroutine chain, a future and h11's event until the next;
    with 10,000 Hubs joining, those chains were most of the ~300,000 young objects a
    generation-1 collection walked, and young collections stalled the loop for 7 s in all
    over one `bench.scale` run (3.4 s without them; gc.callbacks)."""

    def __init__(self, channel: Channel, host: str = "hub") -> None:
        self.channel = channel
        self.host = host
        self._conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
        self._lock = asyncio.Lock()
        self._receiver: Callable[[bytes], None] | None = None
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.heard = asyncio.Event()  # the first body bytes came (or the answer ended)
        self.status: int | None = None

    async def start(self) -> None:
        head = h11.Request(
            method="POST",
            target="/api/v1/platform",
            headers=[
                ("host", self.host),
                ("content-type", "application/x-ndjson"),
                ("transfer-encoding", "chunked"),
            ],
        )
        await self.channel.write(self._conn.send(head) or b"")

    async def send_line(self, line: bytes) -> None:
        async with self._lock:
            data = self._conn.send(h11.Data(data=line))
            if data:
                await self.channel.write(data)

    def listen(self, receiver: Callable[[bytes], None]) -> None:
        """Give each piece of the Hub's response body to `receiver` as it arrives (called
        from the tunnel's reading; an exception from it ends the stream, not the tunnel's
        reading). The answer must be a 200."""
        self._receiver = receiver
        self.channel.sink(self._received)

    async def ended(self) -> str:
        """Wait for the Hub's answer to end; why it did, in words."""
        return await asyncio.shield(self._ended)

    def _received(self, data: bytes) -> None:
        if self._ended.done():
            return
        if not data and self.channel.reset:
            self._finish(f"control channel failed: channel {self.channel.number} reset")
            return
        self._conn.receive_data(data)  # b"" tells h11 about EOF
        try:
            while not self._ended.done():
                event = self._conn.next_event()
                if event is h11.NEED_DATA:
                    return
                self._event(event)
        except h11.RemoteProtocolError as exc:
            self._finish(f"control channel failed: {exc}")
        except Exception as exc:
            log.exception("channel %d: control line handling failed", self.channel.number)
            self._finish(f"control channel failed: {exc!r}")

    def _event(self, event: Any) -> None:
        if isinstance(event, h11.Response):
            self.status = event.status_code
            if event.status_code != 200:
                self._finish(f"control channel failed: the Hub answered {event.status_code}")
        elif isinstance(event, h11.Data):
            self.heard.set()
            if self._receiver is not None:
                self._receiver(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            self._finish("control channel ended")

    def _finish(self, reason: str) -> None:
        if not self._ended.done():
            self._ended.set_result(reason)
        self.heard.set()
        # The channel, this stream and the receiver (which knows the Hub) refer to each
        # other: unlinked, a Hub that leaves is freed at once by reference counting, not by
        # the next full collection; anything still arriving is dropped.
        self._receiver = None
        self.channel.sink(_dropped)


def _dropped(data: bytes) -> None:
    """The sink of a control channel whose stream has ended."""
