"""The control request in push mode: `Channel.sink` and `ControlStream.listen`, on a session
pair (tests/tunnel/pair.py) with the Hub's side written by hand, byte for byte, the way an
STH answers `POST /api/v1/platform` (hub-protocol.md §5)."""

from __future__ import annotations

import asyncio

from manager.tunnel.channel import Channel
from manager.tunnel.http import ControlStream
from manager.tunnel.session import TunnelSession
from tests.conftest import eventually
from tests.tunnel.pair import session_pair

WINDOW = 64 * 1024
OK_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n"
)


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class HubEnd:
    """The Hub's side of the control channel: keeps the channel, reads what comes."""

    def __init__(self) -> None:
        self.channel: Channel | None = None
        self.head = bytearray()

    async def __call__(self, channel: Channel) -> None:
        self.channel = channel
        while data := await channel.read():
            self.head += data  # the head, then the request body's chunks

    async def ready(self) -> Channel:
        await eventually(lambda: b"\r\n\r\n" in self.head, "the control request's head")
        assert self.channel is not None
        return self.channel


async def opened(manager: TunnelSession, hub_end: HubEnd) -> tuple[Channel, Channel]:
    """A channel with a request head sent on it: (the manager's end, the Hub's end)."""
    out = await manager.open_channel(timeout=2)
    await out.write(b"GET / HTTP/1.1\r\n\r\n")
    return out, await hub_end.ready()


async def test_sink_gets_what_was_queued_then_what_arrives_then_the_end():
    hub_end = HubEnd()
    async with session_pair(hub_end, window=WINDOW) as (manager, _):
        out, theirs = await opened(manager, hub_end)
        await theirs.write(b"queued ")
        await eventually(lambda: out.has_data, "bytes waiting in the channel")
        got: list[bytes] = []
        out.sink(got.append)
        assert got == [b"queued "]
        body = b"y" * (4 * WINDOW)  # more than a window: the sink gives window back itself
        await asyncio.wait_for(theirs.write(body), 5)
        await theirs.end()
        await eventually(lambda: got and got[-1] == b"", "the end")
        assert b"".join(got) == b"queued " + body
        assert got.count(b"") == 1 and not out.reset


async def test_sink_learns_of_a_reset():
    hub_end = HubEnd()
    async with session_pair(hub_end, window=WINDOW) as (manager, _):
        out, theirs = await opened(manager, hub_end)
        got: list[bytes] = []
        out.sink(got.append)
        theirs.abort()
        await eventually(lambda: got == [b""], "the end")
        assert out.reset


async def start_control(
    manager_side: TunnelSession, hub_end: HubEnd
) -> tuple[ControlStream, Channel]:
    channel = await manager_side.open_channel(timeout=2)
    control = ControlStream(channel)
    await control.start()
    return control, await hub_end.ready()


async def test_lines_reach_the_receiver_as_they_arrive_and_the_end_is_reported():
    hub_end = HubEnd()
    async with session_pair(hub_end, window=WINDOW) as (manager, _):
        control, theirs = await start_control(manager, hub_end)
        assert hub_end.head.startswith(b"POST /api/v1/platform HTTP/1.1\r\n")
        got = bytearray()
        await theirs.write(OK_HEAD + chunk(b'[7001,{"currentLoad":'))  # before anyone listens
        control.listen(got.extend)
        await eventually(lambda: got == b'[7001,{"currentLoad":', "the queued part")
        assert control.heard.is_set() and control.status == 200
        await theirs.write(chunk(b"0.5}]\n") + chunk(b"[7004,[]]\n"))
        await eventually(lambda: got.endswith(b"[7004,[]]\n"), "the rest")
        assert bytes(got) == b'[7001,{"currentLoad":0.5}]\n[7004,[]]\n'
        await control.send_line(b'[7000,{"id":"h"}]\n')  # writing goes on meanwhile
        await eventually(lambda: hub_end.head.endswith(b'[7000,{"id":"h"}]\n\r\n'), "a line out")
        await theirs.write(b"0\r\n\r\n")
        assert await asyncio.wait_for(control.ended(), 2) == "control channel ended"


async def test_refusals_end_the_stream_in_words():
    answers = {
        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n": "the Hub answered 503",
        b"SSH-2.0-not-http\r\n\r\n": "control channel failed: ",
    }
    for answer, words in answers.items():
        hub_end = HubEnd()
        async with session_pair(hub_end, window=WINDOW) as (manager, _):
            control, theirs = await start_control(manager, hub_end)
            got: list[bytes] = []
            control.listen(got.append)
            await theirs.write(answer)
            reason = await asyncio.wait_for(control.ended(), 2)
            assert words in reason and got == []


async def test_a_reset_or_a_silent_end_is_reported():
    for how in ("reset", "end"):
        hub_end = HubEnd()
        async with session_pair(hub_end, window=WINDOW) as (manager, _):
            control, theirs = await start_control(manager, hub_end)
            control.listen(lambda _: None)
            if how == "reset":
                theirs.abort()
                expected = "reset"
            else:
                await theirs.end()
                expected = "control channel failed"  # h11: no response before the end
            assert expected in await asyncio.wait_for(control.ended(), 2)
            assert control.heard.is_set()  # a newcomer's wait ends too


async def test_a_failing_receiver_ends_the_stream_not_the_tunnel():
    hub_end = HubEnd()
    async with session_pair(hub_end, window=WINDOW) as (manager, hub):
        control, theirs = await start_control(manager, hub_end)

        def broken(_: bytes) -> None:
            raise ValueError("no")

        control.listen(broken)
        await theirs.write(OK_HEAD + chunk(b"[7001,{}]\n"))
        assert "ValueError" in await asyncio.wait_for(control.ended(), 2)
        await theirs.write(chunk(b"[7001,{}]\n"))  # later bytes are dropped quietly
        other = await manager.open_channel(timeout=2)  # the session still carries channels
        await other.write(b"GET / HTTP/1.1\r\n\r\n")
        assert not manager.is_closed and not hub.is_closed
