"""The one way to speak HTTP to a Hub: HTTP/1.1 (manager.hubs.http1) over the channels of
its tunnel.

Every caller (the proxy, Sequence placement, the Space log, topic routes) goes through a
`HubClient`, which owns what they used to repeat: the Host header, body framing, the channel
open timeout, the per-Hub in-flight limit, keep-alive reuse of channels, and turning tunnel
and protocol failures into the `HubError` family (translated to a status once, at the web
boundary).

Why not httpcore's pool over a channel "network backend" (what this replaced): under `wrk`,
its pool machinery (anyio locks and cancel shields, a scan of every connection per request,
per-request async generators) cost more CPU than the HTTP work itself. Here a request takes
an idle channel off a short stack or opens one; nothing else is shared, so nothing needs a
lock. (Why not h11 either: manager/hubs/http1.py says.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import Protocol

from manager.hubs import http1
from manager.hubs.errors import (
    HubBusy,
    HubError,
    HubGone,
    HubProtocolError,
    HubTimeout,
    HubUnavailable,
)
from manager.tunnel.errors import ChannelOpenTimeout, TooManyChannels, TunnelClosed, TunnelError

Headers = list[tuple[bytes, bytes]]
Body = bytes | AsyncIterable[bytes] | None

HOST = b"hub"  # what a Hub sees as Host; it serves one site, so any name does
READ_SIZE = 256 * 1024
MAX_IDLE = 64  # keep-alive channels kept per Hub (more concurrent requests open new ones)
# Node's HTTP server closes a keep-alive socket idle for 5 s; reusing one that close is
# racing would fail a request the Hub never saw, so channels idle longer are not reused.
IDLE_EXPIRY_S = 4.0
DEFAULT_OPEN_TIMEOUT_S = 10.0


class ByteStream(Protocol):
    """What a request travels on: a tunnel channel (`manager.tunnel.channel.Channel`), or a
    connection to the replica holding the Hub (`manager.hubs.peers`)."""

    closed: asyncio.Event

    @property
    def has_data(self) -> bool: ...

    @property
    def at_eof(self) -> bool: ...

    async def read(self, max_bytes: int = 65536) -> bytes: ...

    async def write(self, data: bytes) -> None: ...

    def abort(self) -> None: ...


class StreamSource(Protocol):
    """Opens byte streams to one Hub (its tunnel) or to one peer replica."""

    name: str

    @property
    def is_closed(self) -> bool: ...

    async def open_channel(self, timeout: float = 10.0) -> ByteStream: ...


class _Conn:
    """One channel and the HTTP/1.1 state on it."""

    __slots__ = ("body_error", "channel", "http", "idle_since", "reused", "sender")

    def __init__(self, channel: ByteStream) -> None:
        self.channel = channel
        self.http = http1.ClientConnection()
        self.idle_since = 0.0
        self.sender: asyncio.Task[None] | None = None
        self.body_error: BaseException | None = None  # the request body's source failed
        self.reused = False  # taken from the idle stack, not opened for this request

    def stale(self, now: float) -> bool:
        ch = self.channel
        # Anything from the Hub on an idle channel (data, its end) means it is done with it.
        expired = now - self.idle_since > IDLE_EXPIRY_S
        return expired or ch.has_data or ch.at_eof or ch.closed.is_set()

    async def write(self, data: bytes) -> None:
        if data:
            await self.channel.write(data)

    async def next_event(self, hub_id: str) -> http1.Event:
        http = self.http
        while True:
            try:
                event = http.next_event()
            except http1.ProtocolError as exc:
                raise HubProtocolError(f"Invalid response from Hub {hub_id}: {exc}") from None
            if event is not http1.NEED_DATA:
                return event
            try:
                data = await self.channel.read(READ_SIZE)
            except TunnelError as exc:
                if self.body_error is not None:
                    raise self.body_error from None
                raise HubGone(f"Hub {hub_id} went away: {exc}") from None
            http.receive(data)  # b"" is the Hub's end of the channel


class HubResponse:
    """A Hub's answer: status and headers at once, the body as it arrives."""

    def __init__(self, conn: _Conn, hub_id: str, head: http1.Response) -> None:
        self._conn = conn
        self._hub_id = hub_id
        self.status = head.status
        self.headers = head.headers
        self.complete = False

    async def chunks(self) -> AsyncIterator[bytes]:
        """The body, chunk by chunk as the Hub sends it; HubError if it is cut short."""
        while not self.complete:
            event = await self._conn.next_event(self._hub_id)
            if type(event) is bytes:
                yield event
            elif event is http1.END:
                self.complete = True
            elif event is http1.CLOSED:
                raise HubGone(f"Hub {self._hub_id} closed the response early")

    async def read(self, limit: int = 16 * 1024 * 1024) -> bytes:
        """The whole body, for answers the manager itself reads (bounded by `limit`)."""
        out = bytearray()
        async for chunk in self.chunks():
            out += chunk
            if len(out) > limit:
                raise HubProtocolError(f"Hub {self._hub_id} answered more than {limit} bytes")
        return bytes(out)


class WholeAnswers:
    """`request` over a class's `stream`, for the small exchanges the manager reads whole
    itself; shared by the local (`HubClient`) and the remote (`RemoteHubClient`) client."""

    def stream(
        self,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: Body = None,
    ) -> contextlib.AbstractAsyncContextManager[HubResponse]:
        raise NotImplementedError

    async def request(
        self,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: Body = None,
        limit: int = 16 * 1024 * 1024,
    ) -> tuple[int, bytes]:
        """Status and whole body of a small exchange the manager makes itself."""
        async with self.stream(method, target, headers, body) as response:
            return response.status, await response.read(limit)


class HubClient(WholeAnswers):
    """HTTP to one Hub over its tunnel, made with the tunnel and closed with it; or, over
    TCP, to one peer replica (`manager.hubs.peers`)."""

    def __init__(
        self,
        session: StreamSource,
        hub_id: str = "",
        *,
        max_in_flight: int = 0,
        open_timeout: float = DEFAULT_OPEN_TIMEOUT_S,
    ) -> None:
        self.session = session
        self.hub_id = hub_id or session.name
        self.max_in_flight = max_in_flight
        self.open_timeout = open_timeout
        self.in_flight = 0
        self._idle: list[_Conn] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        """No new requests: the tunnel is gone or going (a drain closes the client first)."""
        return self._closed or self.session.is_closed

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: Body = None,
        *,
        expect_continue: bool = False,
    ) -> AsyncIterator[HubResponse]:
        """Send a request and yield the response once its head arrives; the body streams
        both ways with the channel's back-pressure. Leaving the block early (or an error)
        resets the channel, so the Hub stops producing. With `expect_continue` the body
        waits for the server's `100 Continue`: a final answer instead (a peer's 409 for a
        stale route) leaves the body unread, so the caller can send it elsewhere."""
        if self.closed:
            raise HubUnavailable(f"Hub {self.hub_id} is not connected")
        limit = self.max_in_flight
        if limit and self.in_flight >= limit:
            raise HubBusy(
                f"Hub {self.hub_id} already has {limit} requests in flight (the limit); retry later"
            )
        self.in_flight += 1
        conn: _Conn | None = None
        response: HubResponse | None = None
        try:
            conn = await self._checkout()
            try:
                response = await self._exchange(
                    conn, method, target, headers, body, expect_continue
                )
            except (HubGone, HubProtocolError):
                # A kept-alive channel or connection the other side closed just as we reused
                # it: it never saw the request. Retry once on a fresh one, if the body (if
                # any) can still be sent.
                unsent = body is None or isinstance(body, bytes)
                unsent = unsent or (expect_continue and conn.sender is None)
                if not conn.reused or not unsent:
                    raise
                conn.channel.abort()
                conn = None
                conn = await self._checkout(fresh=True)
                response = await self._exchange(
                    conn, method, target, headers, body, expect_continue
                )
            yield response
        finally:
            self.in_flight -= 1
            if conn is not None:
                await self._checkin(conn, response)

    def close(self) -> None:
        """The tunnel is going: drop idle channels and refuse new requests."""
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.channel.abort()

    # internals

    async def _checkout(self, *, fresh: bool = False) -> _Conn:
        now = time.monotonic()
        while self._idle and not fresh:
            conn = self._idle.pop()
            if not conn.stale(now):
                conn.reused = True
                return conn
            conn.channel.abort()
        try:
            channel = await self.session.open_channel(self.open_timeout)
        except ChannelOpenTimeout:
            raise HubTimeout(f"Hub {self.hub_id} did not accept a channel in time") from None
        except TooManyChannels:
            raise HubBusy(f"Hub {self.hub_id} has too many open channels; retry later") from None
        except TunnelClosed:
            raise HubUnavailable(f"Hub {self.hub_id} is not connected") from None
        return _Conn(channel)

    async def _checkin(self, conn: _Conn, response: HubResponse | None) -> None:
        http = conn.http
        if conn.sender is not None:
            sender, conn.sender = conn.sender, None
            if not sender.done():
                conn.channel.abort()
                sender.cancel()
            with contextlib.suppress(BaseException):
                await sender
        reusable = response is not None and response.complete and http.reusable and not self._closed
        if not reusable:
            conn.channel.abort()
            return
        now = time.monotonic()
        # Keep the stack short and fresh: channels the Hub has closed meanwhile go now.
        self._idle = [c for c in self._idle if not c.stale(now)]
        if len(self._idle) >= MAX_IDLE:
            conn.channel.abort()
            return
        conn.http = http1.ClientConnection()
        conn.idle_since = now
        self._idle.append(conn)

    async def _exchange(
        self,
        conn: _Conn,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]],
        body: Body,
        expect_continue: bool = False,
    ) -> HubResponse:
        http = conn.http
        head = [(b"host", HOST), *headers]
        if body is None:
            expect_continue = False
        elif expect_continue:
            head.append((b"expect", b"100-continue"))
        framed = any(name in (b"content-length", b"transfer-encoding") for name, _ in head)
        if isinstance(body, bytes):
            if not framed:
                head.append((b"content-length", str(len(body)).encode()))
        elif body is not None and not framed:
            head.append((b"transfer-encoding", b"chunked"))
        try:
            data = http.request(method, target, head)
            if expect_continue:
                await conn.write(data)
                event = await conn.next_event(self.hub_id)
                if type(event) is http1.Response and not event.informational:
                    return HubResponse(conn, self.hub_id, event)
                if type(event) is not http1.Response:
                    raise HubGone(f"Hub {self.hub_id} closed the channel without answering")
                data = b""
            if isinstance(body, bytes):
                await conn.write(data + http.data(body) + http.end())
            elif body is None:
                await conn.write(data + http.end())
            else:
                await conn.write(data)
                # The body goes out while the answer comes in: a Hub may answer (or echo)
                # before the body ends, and must not deadlock waiting for us to read.
                conn.sender = asyncio.ensure_future(self._send_body(conn, body))
        except http1.LocalError as exc:
            raise HubProtocolError(f"Request not sendable to Hub {self.hub_id}: {exc}") from None
        except TunnelError:
            # The Hub may have answered (say, an error) and closed before taking the whole
            # body: read what it said; with nothing there, reading raises HubGone.
            pass
        while True:
            event = await conn.next_event(self.hub_id)
            if type(event) is http1.Response:
                if event.informational:
                    continue
                return HubResponse(conn, self.hub_id, event)
            raise HubGone(f"Hub {self.hub_id} closed the channel without answering")

    async def _send_body(self, conn: _Conn, body: AsyncIterable[bytes]) -> None:
        http = conn.http
        try:
            async for chunk in body:
                if chunk:
                    await conn.write(http.data(chunk))
            await conn.write(http.end())
        except TunnelError:
            pass  # the reading side hears of it too, and says what the Hub answered if anything
        except Exception as exc:
            # The body's source failed (say, the client uploading it left), or it did not
            # match its Content-Length: end the exchange, and let the caller see that error
            # rather than the reset it causes.
            conn.body_error = exc
            conn.channel.abort()


__all__ = ["HubClient", "HubError", "HubResponse"]
