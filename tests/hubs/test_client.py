"""HubClient over a real tunnel session pair: a small h11 server plays the Hub's API on the
peer's channels (tests/tunnel/pair.py), so every frame is real and nothing is mocked."""

from __future__ import annotations

import asyncio
import json

import h11
import pytest

from manager.hubs.client import IDLE_EXPIRY_S, HubClient
from manager.hubs.errors import HubBusy, HubGone, HubProtocolError, HubTimeout, HubUnavailable
from manager.tunnel.channel import Channel
from tests.tunnel.pair import session_pair

BIG = bytes(i % 251 for i in range(3 * 1024 * 1024))
VERSION = json.dumps({"service": "@scramjet/host", "version": "1.0.1"}).encode()


class FakeHubApi:
    """Answers like a Hub on each channel it is given; counts what it saw."""

    def __init__(self) -> None:
        self.channels = 0
        self.requests: list[tuple[bytes, bytes, list[tuple[bytes, bytes]]]] = []
        self.echoed = 0
        self.stuck = asyncio.Event()  # set to release every request parked on /stuck
        self.reset_seen = asyncio.Event()

    async def __call__(self, channel: Channel) -> None:
        self.channels += 1
        conn = h11.Connection(h11.SERVER)
        while True:
            event = await self._next(conn, channel)
            if not isinstance(event, h11.Request):
                return
            self.requests.append((event.method, event.target, list(event.headers)))
            if not await self._answer(conn, channel, event):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    async def _next(self, conn: h11.Connection, channel: Channel) -> object:
        while True:
            event = conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                conn.receive_data(await channel.read())
            except Exception:
                self.reset_seen.set()
                return h11.ConnectionClosed()

    async def _body(self, conn: h11.Connection, channel: Channel) -> bytes:
        out = bytearray()
        while True:
            event = await self._next(conn, channel)
            if isinstance(event, h11.Data):
                out += event.data
            elif isinstance(event, h11.EndOfMessage):
                return bytes(out)
            else:
                raise AssertionError(f"request body cut: {event!r}")

    async def _answer(self, conn: h11.Connection, channel: Channel, req: h11.Request) -> bool:
        path = req.target
        if path == b"/api/v1/version":
            await self._body(conn, channel)
            head = [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(VERSION)),
            ]
            await channel.write(conn.send(h11.Response(status_code=200, headers=head)) or b"")
            await channel.write(conn.send(h11.Data(data=VERSION)) or b"")
            await channel.write(conn.send(h11.EndOfMessage()) or b"")
            return True
        if path == b"/echo":
            # Answers at once and echoes the body as it arrives (chunked), like a topic.
            head = [(b"transfer-encoding", b"chunked")]
            await channel.write(conn.send(h11.Response(status_code=200, headers=head)) or b"")
            while True:
                event = await self._next(conn, channel)
                if isinstance(event, h11.Data):
                    self.echoed += len(event.data)
                    await channel.write(conn.send(h11.Data(data=event.data)) or b"")
                elif isinstance(event, h11.EndOfMessage):
                    await channel.write(conn.send(h11.EndOfMessage()) or b"")
                    return True
                else:
                    return False
        if path == b"/cut":
            await self._body(conn, channel)
            head = [(b"content-length", b"1000")]
            await channel.write(conn.send(h11.Response(status_code=200, headers=head)) or b"")
            await channel.write(conn.send(h11.Data(data=b"x" * 10)) or b"")
            channel.abort()
            return False
        if path == b"/big":
            # 3 MiB framed by Content-Length, written in pieces that do not line up with it.
            await self._body(conn, channel)
            head = [(b"content-length", b"%d" % len(BIG))]
            await channel.write(conn.send(h11.Response(status_code=200, headers=head)) or b"")
            if req.method != b"HEAD":
                for at in range(0, len(BIG), 100_003):
                    await channel.write(conn.send(h11.Data(data=BIG[at : at + 100_003])) or b"")
            await channel.write(conn.send(h11.EndOfMessage()) or b"")
            return True
        if path == b"/overlong":
            await self._body(conn, channel)
            await channel.write(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n" + b"y" * 20)
            return False
        if path == b"/garbage":
            await self._body(conn, channel)
            await channel.write(b"HTTP/1.1 two hundred\r\n\r\n")
            return False
        if path == b"/stuck":
            await self.stuck.wait()
            return False
        if path == b"/forever":
            head = [(b"transfer-encoding", b"chunked")]
            await channel.write(conn.send(h11.Response(status_code=200, headers=head)) or b"")
            while True:
                try:
                    await channel.write(conn.send(h11.Data(data=b"tick\n")) or b"")
                except Exception:
                    self.reset_seen.set()
                    return False
                await asyncio.sleep(0.001)
        await self._body(conn, channel)
        await channel.write(
            conn.send(h11.Response(status_code=404, headers=[(b"content-length", b"0")])) or b""
        )
        await channel.write(conn.send(h11.EndOfMessage()) or b"")
        return True


async def test_small_requests_reuse_one_keep_alive_channel():
    api = FakeHubApi()
    async with session_pair(api) as (manager, _hub):
        client = HubClient(manager, "h1")
        for _ in range(5):
            status, body = await client.request(b"GET", b"/api/v1/version")
            assert (status, json.loads(body)["version"]) == (200, "1.0.1")
        assert api.channels == 1
        assert client.in_flight == 0
        # The client owns the Host header and the body framing.
        _, _, headers = api.requests[0]
        assert (b"host", b"hub") in headers
        status, _ = await client.request(b"GET", b"/nope")
        assert status == 404


async def test_a_body_streams_both_ways_with_back_pressure():
    """5 MiB through a 64 KiB window: it arrives whole and in order, chunk by chunk."""
    api = FakeHubApi()
    async with session_pair(api, window=64 * 1024) as (manager, _hub):
        client = HubClient(manager, "h1")
        block = bytes(range(256)) * 256  # 64 KiB

        async def body():
            for _ in range(80):
                yield block

        got = bytearray()
        async with client.stream(b"POST", b"/echo", [], body()) as response:
            assert response.status == 200
            async for chunk in response.chunks():
                got += chunk
                # The Hub is never more than a window (plus what is in flight) ahead of us.
                assert api.echoed - len(got) <= 3 * 64 * 1024
        assert got == block * 80
        assert response.complete


async def test_a_response_cut_short_raises_hub_gone():
    api = FakeHubApi()
    async with session_pair(api) as (manager, _hub):
        client = HubClient(manager, "h1")
        async with client.stream(b"GET", b"/cut") as response:
            assert response.status == 200
            with pytest.raises(HubGone):
                await response.read()
        # The next request gets a fresh channel and works.
        status, _ = await client.request(b"GET", b"/api/v1/version")
        assert status == 200 and api.channels == 2


async def test_a_body_framed_by_content_length_arrives_whole_and_the_channel_is_reused():
    """Such bodies are counted past h11; the channel must still be reusable afterwards, and a
    HEAD's Content-Length announces no body."""
    api = FakeHubApi()
    async with session_pair(api) as (manager, _hub):
        client = HubClient(manager, "h1")
        for _ in range(2):
            status, body = await client.request(b"GET", b"/big")
            assert status == 200 and body == BIG
        async with client.stream(b"HEAD", b"/big") as response:
            assert response.status == 200 and await response.read() == b""
            assert response.complete
        status, body = await client.request(b"GET", b"/api/v1/version")
        assert (status, json.loads(body)["version"]) == (200, "1.0.1")
        assert api.channels == 1


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (b"/garbage", "Invalid response from Hub h1"),
        (b"/overlong", "Hub h1: more than its Content-Length"),
    ],
)
async def test_an_invalid_answer_is_a_protocol_error(path: bytes, why: str):
    api = FakeHubApi()
    async with session_pair(api) as (manager, _hub):
        client = HubClient(manager, "h1")
        with pytest.raises(HubProtocolError, match=why):
            await client.request(b"GET", path)
        assert client.in_flight == 0
        assert client._idle == []  # that channel is not used again
        assert (await client.request(b"GET", b"/api/v1/version"))[0] == 200


async def test_the_in_flight_limit_refuses_at_once():
    api = FakeHubApi()
    async with session_pair(api) as (manager, _hub):
        client = HubClient(manager, "h1", max_in_flight=2)
        stuck = [asyncio.ensure_future(client.request(b"GET", b"/stuck")) for _ in range(2)]
        while client.in_flight < 2:
            await asyncio.sleep(0)
        with pytest.raises(HubBusy, match="2 requests in flight"):
            await client.request(b"GET", b"/api/v1/version")
        api.stuck.set()
        for task in stuck:
            with pytest.raises(HubGone):
                await task
        assert client.in_flight == 0
        status, _ = await client.request(b"GET", b"/api/v1/version")
        assert status == 200


async def test_leaving_a_stream_early_resets_the_channel():
    """A client that stops reading must stop the Hub producing (no endless stream into a
    channel nobody reads)."""
    api = FakeHubApi()
    async with session_pair(api) as (manager, _hub):
        client = HubClient(manager, "h1")
        async with client.stream(b"GET", b"/forever") as response:
            async for chunk in response.chunks():
                assert chunk.startswith(b"tick")
                break
        await asyncio.wait_for(api.reset_seen.wait(), 5)
        assert client.in_flight == 0


async def test_a_closed_tunnel_and_a_silent_hub():
    api = FakeHubApi()
    async with session_pair(api) as (manager, _hub):
        client = HubClient(manager, "h1", open_timeout=0.2)
        manager.carrier.black_hole = True  # type: ignore[attr-defined]
        with pytest.raises(HubTimeout, match="did not accept a channel"):
            await client.request(b"GET", b"/api/v1/version")
        manager.close("gone")
        with pytest.raises(HubUnavailable, match="Hub h1 is not connected"):
            await client.request(b"GET", b"/api/v1/version")


async def test_the_tunnel_dropping_mid_response_raises_hub_gone():
    api = FakeHubApi()
    async with session_pair(api) as (manager, _hub):
        client = HubClient(manager, "h1")
        async with client.stream(b"GET", b"/forever") as response:
            manager.close("carrier lost")
            with pytest.raises(HubGone):
                async for _ in response.chunks():
                    pass


async def test_a_channel_idle_longer_than_the_hubs_keep_alive_is_not_reused():
    api = FakeHubApi()
    async with session_pair(api) as (manager, _hub):
        client = HubClient(manager, "h1")
        assert (await client.request(b"GET", b"/api/v1/version"))[0] == 200
        assert (await client.request(b"GET", b"/api/v1/version"))[0] == 200
        assert api.channels == 1
        (idle,) = client._idle
        idle.idle_since -= IDLE_EXPIRY_S + 0.1  # as if it sat there past Node's 5 s
        assert (await client.request(b"GET", b"/api/v1/version"))[0] == 200
        assert api.channels == 2
        client.close()
        with pytest.raises(HubUnavailable):
            await client.request(b"GET", b"/api/v1/version")
