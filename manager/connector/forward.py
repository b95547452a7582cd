"""A proxied channel: the manager's HTTP exchange piped to the local Hub over TCP.

Back-pressure both ways, so memory stays bounded whatever the sizes: bytes from the manager
are acknowledged (`consumed`, which reopens its window) only after they were written to the
Hub *and drained*; the Hub's socket is read only while the manager's window for this channel
has room (`sendable`). Half-closes map one to one (manager END → TCP write EOF, TCP EOF →
END); a broken side resets the other (`Channel.abort`, an ERROR_END / TCP abort). A Hub
that does not answer the connect gets the manager a 502 JSON response written by us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Final

from manager.connector.head import HeadSniffer, RequestHead, simple_response
from manager.connector.options import HubAddress
from manager.tunnel.channel import Channel
from manager.tunnel.errors import ChannelReset, TunnelClosed

__all__ = ["UNREACHABLE", "forward"]

log = logging.getLogger("manager.connector")

READ_SIZE: Final = 256 * 1024
CONNECT_TIMEOUT_S: Final = 5.0
UNREACHABLE: Final = "Local Hub not reachable"


async def forward(
    channel: Channel, head: RequestHead, sniffer: HeadSniffer, hub: HubAddress
) -> None:
    """Serve one channel: a new TCP connection per channel, the head sent as
    `RequestHead.for_hub` gives it (one exchange, so nothing goes stale), then raw bytes."""
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(hub.host, hub.port, limit=READ_SIZE), CONNECT_TIMEOUT_S
        )
    except (OSError, TimeoutError) as exc:
        log.debug("channel %d: local Hub not reachable: %r", channel.number, exc)
        await bad_gateway(channel, sniffer)
        return
    to_hub = asyncio.ensure_future(_to_hub(channel, writer, head, sniffer.seen))
    from_hub = asyncio.ensure_future(_from_hub(channel, reader))
    try:
        await asyncio.gather(to_hub, from_hub)
    except BaseException:
        writer.transport.abort()  # the tunnel went away under us: reset the Hub's side too
        raise
    else:
        writer.close()
    finally:
        for task in (to_hub, from_hub):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


async def _to_hub(
    channel: Channel, writer: asyncio.StreamWriter, head: RequestHead, seen: int
) -> None:
    """Manager → Hub. `seen` bytes (the head and what came with it) are already received."""
    pending = seen
    try:
        data = head.for_hub() + head.rest
        while True:
            if data:
                if writer.transport.is_closing():
                    raise ConnectionResetError("the local Hub closed the connection")
                writer.write(data)
                await writer.drain()
            channel.consumed(pending)
            data = await channel.read(channel.session.window)  # all there is: fewer drains
            pending = len(data)
            if not data:
                if writer.can_write_eof() and not writer.transport.is_closing():
                    writer.write_eof()
                return
    except (ChannelReset, TunnelClosed):  # the manager reset the channel: so do we, to the Hub
        writer.transport.abort()
        channel.abort()
    except OSError as exc:
        log.debug("channel %d: writing to the local Hub failed: %r", channel.number, exc)
        channel.abort()


async def _from_hub(channel: Channel, reader: asyncio.StreamReader) -> None:
    """Hub → manager, never reading more than the manager's window allows."""
    try:
        while True:
            room = await channel.sendable()
            data = await reader.read(min(room, READ_SIZE))
            if not data:
                await channel.end()
                return
            await channel.write(data)
    except OSError as exc:
        log.debug("channel %d: reading from the local Hub failed: %r", channel.number, exc)
        channel.abort()


async def bad_gateway(channel: Channel, sniffer: HeadSniffer) -> None:
    """Answer the request ourselves with 502; the rest of its body is dropped once we return
    (`TunnelSession` aborts a channel whose handler is done)."""
    channel.consumed(sniffer.seen)
    response = simple_response(sniffer.conn, 502, UNREACHABLE)
    if response:
        await channel.write(response)
    await channel.end()
