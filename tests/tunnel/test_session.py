"""TunnelSession run as either end of a tunnel (tests/tunnel/pair.py, no sockets): which
channel numbers each end opens, and the explicit-consume mode a Hub's end uses, where window
goes back to the peer only for bytes the application says it has used."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from manager.mux.channel import CHANNEL_SPACE
from manager.tunnel.channel import Channel
from manager.tunnel.errors import TunnelClosed
from tests.conftest import eventually
from tests.tunnel.pair import session_pair

WINDOW = 64 * 1024


class Inbox:
    """A Hub-side handler that keeps every channel it is given."""

    def __init__(self) -> None:
        self.channels: list[Channel] = []

    async def __call__(self, channel: Channel) -> None:
        self.channels.append(channel)
        await channel.closed.wait()

    async def first(self) -> Channel:
        return await eventually(lambda: self.channels and self.channels[0], "a channel")


async def still_pending(task: asyncio.Future[object], seconds: float = 0.2) -> bool:
    await asyncio.sleep(seconds)
    return not task.done()


async def test_each_end_opens_channels_from_its_own_range():
    inbox, served = Inbox(), Inbox()
    async with session_pair(inbox) as (manager, hub):
        manager.on_channel = served
        ours = await manager.open_channel(timeout=2)
        theirs = await hub.open_channel(timeout=2)
        again = await hub.open_channel(timeout=2)
        assert ours.number == CHANNEL_SPACE  # the manager counts up from 2**31 ...
        assert (theirs.number, again.number) == (0, 1)  # ... a Hub from 0, like the STH
        await eventually(lambda: len(served.channels) == 2, "the Hub's channels served")
        assert [c.number for c in served.channels] == [0, 1]
        assert [c.number for c in inbox.channels] == [CHANNEL_SPACE]


async def test_explicit_consume_holds_the_sender_until_the_reader_consumes():
    inbox = Inbox()
    body = bytes(range(256)) * (4 * WINDOW // 256)
    async with session_pair(inbox, window=WINDOW, explicit_consume=True) as (manager, _):
        out = await manager.open_channel(timeout=2)
        sending = asyncio.ensure_future(out.write(body))
        channel = await inbox.first()
        got = bytearray()
        while len(got) < WINDOW:  # reading alone gives nothing back ...
            got += await channel.read(WINDOW)
        assert await still_pending(sending)
        assert len(got) == WINDOW and manager.allowance(out.number) == 0
        channel.consumed(WINDOW // 8)  # ... nor does a little (STATUS goes per quarter)
        assert await still_pending(sending)
        assert manager.allowance(out.number) == 0
        channel.consumed(WINDOW // 8)
        while len(got) < WINDOW + WINDOW // 4:  # a quarter came free: that much more arrives
            got += await asyncio.wait_for(channel.read(WINDOW), 2)
        assert await still_pending(sending)
        assert len(got) == WINDOW + WINDOW // 4 and manager.allowance(out.number) == 0
        channel.consumed(len(got))  # the rest of what was read is used now (and no more)
        while len(got) < len(body):  # from here on every byte read is used at once
            data = await channel.read(WINDOW)
            got += data
            channel.consumed(len(data))
        await asyncio.wait_for(sending, 5)
        assert hashlib.sha256(got).digest() == hashlib.sha256(body).digest()


async def test_consume_on_read_is_still_the_default():
    inbox = Inbox()
    body = b"x" * (4 * WINDOW)
    async with session_pair(inbox, window=WINDOW) as (manager, _):
        out = await manager.open_channel(timeout=2)
        sending = asyncio.ensure_future(out.write(body))
        channel = await inbox.first()
        got = bytearray()
        while len(got) < len(body):
            got += await channel.read(WINDOW)  # no `consumed` anywhere
        await asyncio.wait_for(sending, 5)
        assert got == body


async def test_abort_gives_back_what_was_read_but_not_consumed():
    inbox = Inbox()
    async with session_pair(inbox, window=WINDOW, explicit_consume=True) as (manager, hub):
        out = await manager.open_channel(timeout=2)
        await out.write(b"a" * 1000)
        channel = await inbox.first()
        assert await channel.read() == b"a" * 1000
        channel.abort()
        assert hub.mux.buffered(channel.number) == 0  # nothing left owed to the peer
        await eventually(lambda: out.at_eof, "the reset seen by the manager")


async def test_sendable_waits_for_the_peers_window():
    inbox = Inbox()
    async with session_pair(inbox, window=WINDOW, explicit_consume=True) as (manager, _):
        out = await manager.open_channel(timeout=2)
        await out.write(b"hello")
        channel = await inbox.first()
        assert await channel.sendable() == WINDOW
        await channel.write(b"r" * WINDOW)
        room = asyncio.ensure_future(channel.sendable())
        assert await still_pending(room)  # the manager has read nothing yet
        taken = 0
        while taken < WINDOW:  # reading there gives the window back
            taken += len(await out.read(WINDOW))
        assert await asyncio.wait_for(room, 5) >= WINDOW // 4


async def test_no_writing_after_our_own_end():
    inbox = Inbox()
    async with session_pair(inbox, window=WINDOW) as (manager, _):
        out = await manager.open_channel(timeout=2)
        await out.end()
        with pytest.raises(TunnelClosed):
            await asyncio.wait_for(out.write(b"late"), 2)
