"""Reaching a Hub that another replica holds: HTTP to that replica's peer route.

A request for a Hub whose tunnel is on replica B, arriving at replica A, goes to
`B/_peer/api/v1/space/<S>/api/v1/sth/<H>/...` with the shared peer secret and the epoch A's
route names. B serves it exactly as its own proxy would (stored-Sequence delivery, topic
announcements, audit), or answers 409 when it no longer holds that epoch: A then re-reads the
route once. Bodies wait for B's `100 Continue`, so a 409 leaves them unsent and the retry can
carry them. The HTTP is the same `HubClient` the tunnels use, over TCP connections kept
alive per peer.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import hmac
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from urllib.parse import quote, urlsplit

from manager.hubs.client import Body, HubClient, HubResponse, WholeAnswers
from manager.hubs.errors import HubTimeout, HubUnavailable
from manager.tunnel.errors import ChannelReset

SECRET_HEADER = b"x-manager-peer-secret"
EPOCH_HEADER = b"x-manager-hub-epoch"
PEER_PREFIX = "/_peer"
# Where a forwarded proxy call arrives: the caller's own path after PEER_PREFIX.
FORWARDED_PREFIX = PEER_PREFIX + "/api/v1/space/"
STALE_ROUTE = 409  # what a peer answers for an epoch it does not hold
STALE_HEADER = b"x-manager-stale-route"
HIGH_WATER = 1024 * 1024  # bytes read ahead from a peer before reading pauses


def peer_secret(server_secret: bytes, configured: str | None) -> str:
    """The configured peer secret, or one derived from the server secret (which every
    replica must share anyway: access keys are checked with it)."""
    if configured:
        return configured
    return hmac.new(server_secret, b"manager peer secret v1", hashlib.sha256).hexdigest()


def secret_matches(offered: bytes | None, secret: str) -> bool:
    return offered is not None and hmac.compare_digest(offered, secret.encode())


class _PeerStream(asyncio.Protocol):
    """One TCP connection as the byte stream `HubClient` reads and writes."""

    def __init__(self) -> None:
        # What the socket delivered, kept as the bytes objects it came in: a forwarded
        # download passes each on whole instead of copying it into and out of one buffer.
        self._inbox: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._eof = False
        self._error: str | None = None
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self.closed = asyncio.Event()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._inbox.append(data)
        self._buffered += len(data)
        self._readable.set()
        if self._buffered > HIGH_WATER and self.transport is not None:
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._readable.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        if exc is not None:
            self._error = str(exc) or type(exc).__name__
        self._readable.set()
        self._writable.set()
        self.closed.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    @property
    def has_data(self) -> bool:
        return bool(self._inbox)

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._inbox

    async def read(self, max_bytes: int = 65536) -> bytes:
        while not self._inbox:
            if self._eof:
                if self._error is not None:
                    raise ChannelReset(f"peer connection lost: {self._error}")
                return b""
            self._readable.clear()
            await self._readable.wait()
        data = self._inbox.popleft()
        if len(data) > max_bytes:
            self._inbox.appendleft(data[max_bytes:])
            data = data[:max_bytes]
        self._buffered -= len(data)
        if self._buffered < HIGH_WATER // 2 and self.transport is not None:
            self.transport.resume_reading()
        return data

    async def write(self, data: bytes) -> None:
        if self.closed.is_set() or self.transport is None:
            raise ChannelReset("peer connection closed")
        self.transport.write(data)
        await self._writable.wait()
        if self.closed.is_set():
            raise ChannelReset("peer connection closed")

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class PeerSource:
    """Opens TCP connections to one peer replica (its `MANAGER_PEER_URL`)."""

    def __init__(self, replica: str, peer_url: str) -> None:
        parts = urlsplit(peer_url)
        self.name = f"replica {replica}"
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme == "https"
        self.port = parts.port or (443 if self.tls else 80)
        self.base = parts.path.rstrip("/")

    @property
    def is_closed(self) -> bool:
        return False

    async def open_channel(self, timeout: float = 10.0) -> _PeerStream:
        loop = asyncio.get_running_loop()
        context = ssl.create_default_context() if self.tls else None
        try:
            _transport, stream = await asyncio.wait_for(
                loop.create_connection(_PeerStream, self.host, self.port, ssl=context), timeout
            )
        except TimeoutError:
            raise HubTimeout(f"{self.name} did not accept a connection in time") from None
        except OSError as exc:
            raise HubUnavailable(f"{self.name} is unreachable: {exc.strerror or exc}") from None
        return stream


Reroute = Callable[[], Awaitable[WholeAnswers | None]]  # a Hub client, local or remote


def is_stale(response: HubResponse) -> bool:
    """A peer's "I no longer hold that epoch", told apart from a Hub's own 409."""
    return response.status == STALE_ROUTE and any(
        name.lower() == STALE_HEADER for name, _ in response.headers
    )


class RemoteHubClient(WholeAnswers):
    """The `HubClient` interface for a Hub held by another replica, at a known epoch. A
    stale route (the peer's 409, or the peer gone) is looked up again once through
    `reroute`, which may find the Hub here, on a third replica, or nowhere."""

    def __init__(
        self,
        peer: HubClient,
        base: str,
        space_id: str,
        hub_id: str,
        epoch: int,
        secret: str,
        reroute: Reroute | None = None,
    ) -> None:
        self.peer = peer
        self.hub_id = hub_id
        self.epoch = epoch
        self.reroute = reroute
        self.prefix = (
            f"{base}{PEER_PREFIX}/api/v1/space/{quote(space_id, safe='')}"
            f"/api/v1/sth/{quote(hub_id, safe='')}"
        ).encode()
        self._headers = [(SECRET_HEADER, secret.encode()), (EPOCH_HEADER, str(epoch).encode())]

    @contextlib.asynccontextmanager
    async def stream(
        self,
        method: bytes,
        target: bytes,
        headers: Iterable[tuple[bytes, bytes]] = (),
        body: Body = None,
    ) -> AsyncIterator[HubResponse]:
        headers = list(headers)
        async with contextlib.AsyncExitStack() as stack:
            try:
                response = await stack.enter_async_context(
                    self.peer.stream(
                        method,
                        self.prefix + target,
                        [*headers, *self._headers],
                        body,
                        expect_continue=True,
                    )
                )
                stale = is_stale(response)
            except HubUnavailable:
                if self.reroute is None:
                    raise
                stale = True  # the holder is gone; the Hub may be back elsewhere
            if stale:
                await stack.aclose()
                fresh = await self.reroute() if self.reroute is not None else None
                if fresh is None:
                    raise HubUnavailable(f"Hub {self.hub_id} is not connected")
                response = await stack.enter_async_context(
                    fresh.stream(method, target, headers, body)
                )
            yield response
