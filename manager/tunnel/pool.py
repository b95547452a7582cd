"""httpcore over BPMux channels: a network backend whose "TCP connections" are channels of
one tunnel, so proxied requests get httpcore's HTTP/1.1, keep-alive pooling and streaming.

One pool per tunnel; it dies with the tunnel. Channel failures surface as httpcore's own
exceptions so callers handle one family of errors.
"""

from __future__ import annotations

import asyncio
import typing
from collections.abc import Iterable

import httpcore

from manager.tunnel.channel import Channel
from manager.tunnel.errors import ChannelOpenTimeout, ChannelReset, TooManyChannels, TunnelClosed
from manager.tunnel.session import TunnelSession

DEFAULT_OPEN_TIMEOUT_S = 10.0


class ChannelStream(httpcore.AsyncNetworkStream):
    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        try:
            if timeout is None:
                return await self.channel.read(max_bytes)
            return await asyncio.wait_for(self.channel.read(max_bytes), timeout)
        except TimeoutError:
            raise httpcore.ReadTimeout("no data from the Hub in time") from None
        except (ChannelReset, TunnelClosed) as exc:
            raise httpcore.ReadError(str(exc)) from None

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # httpcore writes b"" for an empty EndOfMessage: not an EOF
            return
        try:
            if timeout is None:
                await self.channel.write(buffer)
            else:
                await asyncio.wait_for(self.channel.write(buffer), timeout)
        except TimeoutError:
            raise httpcore.WriteTimeout("the Hub did not take data in time") from None
        except (ChannelReset, TunnelClosed) as exc:
            raise httpcore.WriteError(str(exc)) from None

    async def aclose(self) -> None:
        self.channel.abort()

    def get_extra_info(self, info: str) -> typing.Any:
        if info == "is_readable":
            # httpcore asks before reusing an idle keep-alive connection: a channel the Hub
            # ended (or wrote to unasked) must not carry the next request.
            return self.channel.at_eof or self.channel.closed.is_set() or self.channel.has_data
        return {"channel": self.channel.number}.get(info)


class TunnelBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, session: TunnelSession) -> None:
        self.session = session

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            channel = await self.session.open_channel(timeout or DEFAULT_OPEN_TIMEOUT_S)
        except ChannelOpenTimeout as exc:
            raise httpcore.ConnectTimeout(str(exc)) from None
        except (TunnelClosed, TooManyChannels) as exc:
            raise httpcore.ConnectError(str(exc)) from None
        return ChannelStream(channel)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("tunnels carry no unix sockets")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


def make_pool(session: TunnelSession, max_connections: int = 256) -> httpcore.AsyncConnectionPool:
    """Keep-alive channels to one Hub, at most `max_connections` requests in flight."""
    return httpcore.AsyncConnectionPool(
        network_backend=TunnelBackend(session),
        max_connections=max_connections,
        max_keepalive_connections=16,
        keepalive_expiry=30.0,
        http1=True,
        http2=False,
        retries=0,
    )
