"""The fast lane (manager/web/fast_lane.py) against a running manager: a proxied GET whose
token is in the cache skips h11, the ASGI cycle and the middleware, and must answer exactly
what the full stack answers; a connection alternates between the two; what the lane
declines is served by uvicorn as if the lane were not there.

Which path served a request is read from `manager_fast_lane_requests_total`: a token's first
request goes the full way (it fills the token cache), later ones take the lane. So "the
same request, both ways" below is one fresh token's first and second request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from manager.config import Settings
from manager.services.tokens import IssuedToken, TokenService
from tests.conftest import bearer, eventually
from tests.interop.packages import hello_package
from tests.interop.peer import HubPeer, join_hub
from tests.interop.sth import HubFleet
from tests.running import RunningManager

HUB = "lane"


def lane_count(manager: RunningManager) -> float:
    value = manager.svc.metrics.registry.get_sample_value("manager_fast_lane_requests_total")
    assert value is not None
    return value


def hub_path(manager: RunningManager, rest: str, hub_id: str = HUB) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/sth/{hub_id}/api/v1/{rest}"


async def new_token(manager: RunningManager, org_id: str | None = None) -> IssuedToken:
    async with manager.svc.sessions() as s, s.begin():
        return await TokenService.create(
            s, org_id or manager.world.org_id, name="lane test", admin=org_id is None
        )


# Raw HTTP/1.1 on one socket: the lane's own bytes, keep-alive, pipelining


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]  # names lower-cased, in order
    body: bytes

    def header(self, name: str) -> str | None:
        return next((v for n, v in self.headers if n == name), None)

    def json(self) -> Any:
        return json.loads(self.body)


class Raw:
    """One client connection, written and read by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, manager: RunningManager) -> Raw:
        reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def head(self, timeout: float = 10) -> tuple[int, list[tuple[str, str]]]:
        raw = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        lines = raw[:-4].split(b"\r\n")
        assert lines[0].startswith(b"HTTP/1.1 "), raw
        headers = []
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers.append((name.decode().lower(), value.strip().decode("latin-1")))
        return int(lines[0].split(b" ")[1]), headers

    async def chunk(self, timeout: float = 10) -> bytes:
        """The next chunk of a chunked body (b"" for the last one)."""
        size = await asyncio.wait_for(self.reader.readuntil(b"\r\n"), timeout)
        n = int(size.split(b";")[0], 16)
        data = await asyncio.wait_for(self.reader.readexactly(n + 2), timeout)
        assert data.endswith(b"\r\n")
        return data[:-2]

    async def answer(self, timeout: float = 10) -> Answer:
        status, headers = await self.head(timeout)
        names = {n: v for n, v in headers}
        if "content-length" in names:
            body = await asyncio.wait_for(
                self.reader.readexactly(int(names["content-length"])), timeout
            )
        elif names.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while part := await self.chunk(timeout):
                parts.append(part)
            body = b"".join(parts)
        else:
            body = b""
        return Answer(status, headers, body)

    async def closed_by_server(self, timeout: float = 5) -> bool:
        return await asyncio.wait_for(self.reader.read(1), timeout) == b""

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()


def get(
    path: str, token: IssuedToken | str, *extra: str, eol: bytes = b"\r\n", request_id: str = ""
) -> bytes:
    value = token.token if isinstance(token, IssuedToken) else token
    lines = [f"GET {path} HTTP/1.1", "Host: manager", f"Authorization: Bearer {value}"]
    if request_id:
        lines.append(f"X-Request-Id: {request_id}")
    lines += extra
    return eol.join(line.encode() for line in lines) + eol + eol


async def both_ways(
    manager: RunningManager,
    path: str,
    *,
    request_id: str = "",
    org_id: str | None = None,
    lane: bool = True,
) -> tuple[Answer, Answer]:
    """`path` asked twice on one connection with a fresh token: the full stack answers the
    first request (the token is not cached yet), the lane the second (when `lane`; else the
    full stack again). Raw bytes, so that no client rewrites the path (`..`) on the way."""
    token = await new_token(manager, org_id)
    raw = await Raw.open(manager)
    try:
        before = lane_count(manager)
        await raw.send(get(path, token, request_id=request_id))
        full = await raw.answer()
        assert lane_count(manager) == before, "a token's first request took the lane"
        await raw.send(get(path, token, request_id=request_id))
        second = await raw.answer()
        assert lane_count(manager) == before + (1 if lane else 0), "the lane was (not) taken"
    finally:
        await raw.aclose()
    return full, second


def header_names(headers: list[tuple[str, str]]) -> Counter[str]:
    return Counter(name for name, _ in headers)


def assert_same(full: Answer, lane: Answer) -> None:
    """Same status, body and header names; same header values but for the date and the
    request id (new per request unless the client sent one)."""
    assert lane.status == full.status, (full.body, lane.body)
    assert lane.body == full.body
    # The server's own Date, once: the Hub's is not passed on beside it.
    assert header_names(full.headers)["date"] == header_names(lane.headers)["date"] == 1
    assert header_names(lane.headers) == header_names(full.headers), (full.headers, lane.headers)
    for name, value in full.headers:
        if name not in ("date", "x-request-id"):
            assert (name, value) in lane.headers, (name, full.headers, lane.headers)


@pytest.fixture
async def hub(manager: RunningManager) -> AsyncIterator[HubPeer]:
    peer = await join_hub(manager, HUB)
    yield peer
    await peer.stop()


async def warm(manager: RunningManager, token: IssuedToken | None = None) -> IssuedToken:
    """A token the lane will take now: one proxied request with it went the full way (which
    also loaded the plan snapshot the lane needs)."""
    token = token or manager.world.admin
    resp = await manager.client.get(hub_path(manager, "version"), headers=bearer(token))
    assert resp.status_code == 200, resp.text
    return token


# a. A real STH 1.0.1 Hub, both ways


async def test_a_real_hub_answers_the_same_through_the_lane_and_the_full_stack(
    manager: RunningManager, real_hubs: HubFleet
):
    """The lane replaces h11 and the middleware for the hottest request there is: every byte
    a client sees (status, body, which headers, the request id) must stay what the full
    stack answers, on the real Hub the manager is built for."""
    await real_hubs.start(HUB)
    sent = await manager.client.post(hub_path(manager, "sequence"), content=hello_package())
    assert sent.status_code == 200, sent.text
    proxied_200 = manager.svc.metrics.registry.get_sample_value(
        "manager_proxied_requests_total", {"code": "200"}
    )

    full, lane = await both_ways(manager, hub_path(manager, "version"), request_id="lane-trace.1")
    assert full.status == 200 and "version" in full.json()  # the Hub's own answer
    assert_same(full, lane)
    assert full.header("x-request-id") == lane.header("x-request-id") == "lane-trace.1"

    full, lane = await both_ways(manager, hub_path(manager, "sequences"))
    assert [s["id"] for s in full.json()] == [sent.json()["id"]]
    assert_same(full, lane)
    assert full.header("x-request-id") != lane.header("x-request-id")  # each got a new id

    full, lane = await both_ways(manager, hub_path(manager, "instances"))
    assert full.json() == []
    assert_same(full, lane)

    full, lane = await both_ways(manager, hub_path(manager, "sequence/no-such-sequence"))
    assert full.status == 404  # the Hub's refusal, passed on
    assert_same(full, lane)
    # Both ways were proxied, counted and measured alike.
    after = manager.svc.metrics.registry.get_sample_value(
        "manager_proxied_requests_total", {"code": "200"}
    )
    assert after == (proxied_200 or 0) + 6


# b. Raw sockets: keep-alive, pipelining, partial heads, Connection: close, bad tokens


async def test_one_connection_alternates_between_the_lane_and_the_full_stack(
    manager: RunningManager, hub: HubPeer
):
    """Between two lane requests, uvicorn's h11 serves one the lane does not take: h11 and the
    lane share the socket, and neither may see the other's bytes or answer out of turn."""
    token = await warm(manager)
    version, spaces = hub_path(manager, "version"), "/api/v1/spaces"
    raw = await Raw.open(manager)
    try:
        before = lane_count(manager)
        await raw.send(get(version, token, request_id="one"))
        first = await raw.answer()
        assert lane_count(manager) == before + 1
        await raw.send(get(spaces, token, request_id="two"))
        second = await raw.answer()
        assert lane_count(manager) == before + 1  # not a Hub's path: the full stack's
        await raw.send(get(version, token, request_id="three"))
        third = await raw.answer()
        assert lane_count(manager) == before + 2
        await raw.send(get("/api/v1/version", token, request_id="four"))
        fourth = await raw.answer()
    finally:
        await raw.aclose()
    assert [a.header("x-request-id") for a in (first, second, third, fourth)] == [
        "one",
        "two",
        "three",
        "four",
    ]
    assert first.status == third.status == 200
    assert first.json()["service"] == third.json()["service"] == "@scramjet/host"
    assert second.status == 200 and manager.world.space_id in {s["id"] for s in second.json()}
    assert fourth.status == 200 and "version" in fourth.json()  # the manager's own
    assert first.header("connection") is None and third.header("connection") is None


async def test_requests_sent_while_a_lane_answer_streams_wait_their_turn(
    manager: RunningManager, hub: HubPeer
):
    """What a client sends while the lane streams an answer is held back, then served (by
    uvicorn, or by the lane) in order once the answer is out."""
    token = await warm(manager)
    raw = await Raw.open(manager)
    try:
        before = lane_count(manager)
        await raw.send(get(hub_path(manager, "echo/stream?interval=100&count=3"), token))
        status, headers = await raw.head()
        assert status == 200 and ("transfer-encoding", "chunked") in headers
        assert lane_count(manager) == before + 1
        assert await raw.chunk() == b"tick 0\n"
        await raw.send(get("/api/v1/version", token, request_id="then-full"))
        await raw.send(get(hub_path(manager, "version"), token, request_id="then-lane"))
        assert await raw.chunk() == b"tick 1\n"
        assert await raw.chunk() == b"tick 2\n"
        assert await raw.chunk() == b""
        full = await raw.answer()
        lane = await raw.answer()
    finally:
        await raw.aclose()
    assert (full.status, full.header("x-request-id")) == (200, "then-full")
    assert "version" in full.json()
    assert (lane.status, lane.header("x-request-id")) == (200, "then-lane")
    assert lane.json()["service"] == "@scramjet/host"


async def test_pipelined_proxied_gets_are_both_answered_in_order(
    manager: RunningManager, hub: HubPeer
):
    token = await warm(manager)
    raw = await Raw.open(manager)
    try:
        await raw.send(
            get(hub_path(manager, "echo/bytes/100"), token, request_id="p1")
            + get(hub_path(manager, "version"), token, request_id="p2")
        )
        first, second = await raw.answer(), await raw.answer()
        # and the connection is still good for the lane afterwards
        before = lane_count(manager)
        await raw.send(get(hub_path(manager, "version"), token, request_id="p3"))
        third = await raw.answer()
        assert lane_count(manager) == before + 1
    finally:
        await raw.aclose()
    assert (first.status, first.header("x-request-id"), len(first.body)) == (200, "p1", 100)
    assert (second.status, second.header("x-request-id")) == (200, "p2")
    assert second.json()["service"] == "@scramjet/host"
    assert (third.status, third.header("x-request-id")) == (200, "p3")


async def test_a_head_written_one_byte_at_a_time_is_answered_by_the_lane(
    manager: RunningManager, hub: HubPeer
):
    token = await warm(manager)
    raw = await Raw.open(manager)
    try:
        before = lane_count(manager)
        for byte in get(hub_path(manager, "version"), token, request_id="slow"):
            await raw.send(bytes([byte]))
            await asyncio.sleep(0.001)
        answer = await raw.answer()
    finally:
        await raw.aclose()
    assert (answer.status, answer.header("x-request-id")) == (200, "slow")
    assert answer.json()["service"] == "@scramjet/host"
    assert lane_count(manager) == before + 1


async def test_connection_close_through_the_lane_says_so_and_closes(
    manager: RunningManager, hub: HubPeer
):
    token = await warm(manager)
    raw = await Raw.open(manager)
    try:
        before = lane_count(manager)
        await raw.send(
            get(hub_path(manager, "echo/stream?interval=10&count=2"), token, "Connection: close")
        )
        answer = await raw.answer()
        assert lane_count(manager) == before + 1
        assert answer.status == 200 and answer.body == b"tick 0\ntick 1\n"
        assert answer.header("connection") == "close"
        assert await raw.closed_by_server()
    finally:
        await raw.aclose()


async def test_an_invalid_token_is_refused_as_without_the_lane(
    manager: RunningManager, hub: HubPeer
):
    """A token the cache does not vouch for never takes the lane: the auth middleware answers
    its usual 403, and the connection goes on serving (through the lane) afterwards."""
    token = await warm(manager)
    bogus = token.token[:-4] + ("AAAA" if not token.token.endswith("AAAA") else "BBBB")
    raw = await Raw.open(manager)
    try:
        before = lane_count(manager)
        for _ in range(2):  # the second time the refusal is cached: still not the lane's
            await raw.send(get(hub_path(manager, "version"), bogus, request_id="bad"))
            refused = await raw.answer()
            assert refused.status == 403
            assert refused.body == b'{"message":"Forbidden"}'
            assert refused.header("x-request-id") == "bad"
        await raw.send(get(hub_path(manager, "version"), "not-even-a-jwt"))
        assert (await raw.answer()).body == b'{"message":"Forbidden"}'
        assert lane_count(manager) == before
        await raw.send(get(hub_path(manager, "version"), token))
        assert (await raw.answer()).status == 200
        assert lane_count(manager) == before + 1
    finally:
        await raw.aclose()


async def test_a_revoked_token_leaves_the_lane_within_the_cache_time(
    manager: RunningManager, hub: HubPeer
):
    """The lane trusts the token cache; a token in constant use is looked up again in the
    background, so its revocation still shows within the cache time (2 s), as in the full
    stack, instead of the lane serving it for as long as it keeps being used."""
    token = await warm(manager, await new_token(manager))
    async with manager.svc.sessions() as s, s.begin():
        await TokenService.revoke(s, token.token_id)
    revoked_at = asyncio.get_running_loop().time()
    raw = await Raw.open(manager)
    try:
        while True:
            await raw.send(get(hub_path(manager, "version"), token))
            answer = await raw.answer()
            if answer.status == 403:
                break
            assert answer.status == 200
            assert asyncio.get_running_loop().time() - revoked_at < 3.5, "still served"
            await asyncio.sleep(0.05)
        before = lane_count(manager)
        await raw.send(get(hub_path(manager, "version"), token))
        assert (await raw.answer()).body == b'{"message":"Forbidden"}'
        assert lane_count(manager) == before
    finally:
        await raw.aclose()


async def test_a_lane_shaped_head_with_bare_lf_line_ends_is_still_answered(
    manager: RunningManager, hub: HubPeer
):
    """uvicorn's h11 serves a request whose lines end in LF alone (see the same request in
    TestLaneOff). With the lane on, that request must still be answered: by h11 if the lane
    declines it. Both a head all in LFs and one whose blank line alone is a bare LF."""
    token = await warm(manager)
    path = hub_path(manager, "version")
    all_lf = get(path, token, eol=b"\n")
    last_lf = get(path, token)[:-2] + b"\n"

    async def ask(request: bytes) -> Answer:
        raw = await Raw.open(manager)
        try:
            await raw.send(request)
            return await raw.answer(timeout=2)
        finally:
            await raw.aclose()

    answers = await asyncio.gather(ask(all_lf), ask(last_lf), return_exceptions=True)
    assert all(isinstance(a, Answer) and a.status == 200 for a in answers), answers


# c. The rate limit, through the lane


async def test_the_rate_limit_through_the_lane_answers_as_the_full_stack(
    manager: RunningManager, hub: HubPeer
):
    """The lane meters against the same buckets as the middleware, and its 429 is the same
    answer: body, Retry-After, headers."""
    h = manager.client
    resp = await h.post(
        "/api/v1/plans", json={"name": "lane-metered", "requestsPerSecond": 1, "burst": 2}
    )
    assert resp.status_code == 201, resp.text
    resp = await h.put(f"/api/v1/org/{manager.world.org_id}/plan", json={"plan": "lane-metered"})
    assert resp.status_code == 200, resp.text
    refusals = "manager_limit_refusals_total"
    refused_before = manager.svc.metrics.registry.get_sample_value(
        refusals, {"limit": "requestsPerSecond"}
    )

    token = await new_token(manager)
    path = hub_path(manager, "version")
    raw = await Raw.open(manager)
    try:
        before = lane_count(manager)
        answers = []
        for _ in range(4):  # the full stack, then the lane
            await raw.send(get(path, token))
            answers.append(await raw.answer())
        assert lane_count(manager) == before + 3
        # The token forgotten: its next request goes the full way, into the same bucket.
        await eventually(lambda: not manager.svc.tokens._lookups, "no token lookup running")
        manager.svc.tokens.forget_cache()
        await raw.send(get(path, token))
        full_429 = await raw.answer()
        assert lane_count(manager) == before + 3
    finally:
        await raw.aclose()
    assert [a.status for a in answers] == [200, 200, 429, 429], [a.body for a in answers]
    lane_429 = answers[2]
    assert full_429.status == 429
    assert_same(full_429, lane_429)
    assert lane_429.json() == {
        "error": "This token is over its rate: 1 requests/s with a burst of 2, "
        "the limit of plan 'lane-metered'",
        "plan": "lane-metered",
        "limit": "requestsPerSecond",
        "max": 1,
        "burst": 2,
    }
    assert lane_429.header("retry-after") == full_429.header("retry-after") == "1"
    refused = manager.svc.metrics.registry.get_sample_value(
        refusals, {"limit": "requestsPerSecond"}
    )
    assert refused == (refused_before or 0) + 3


# d. The client leaving mid-stream


async def test_a_client_leaving_a_lane_stream_releases_the_hubs_channel(
    manager: RunningManager, hub: HubPeer
):
    token = await warm(manager)
    live = manager.svc.registry.get(manager.world.space_id, HUB)
    assert live is not None
    session = live.link.session  # type: ignore[attr-defined]
    raw = await Raw.open(manager)
    before = lane_count(manager)
    await raw.send(get(hub_path(manager, "echo/stream?interval=20&count=100000"), token))
    status, _ = await raw.head()
    assert status == 200 and await raw.chunk() == b"tick 0\n"
    assert lane_count(manager) == before + 1
    assert live.in_flight == 1
    during = len(session.channels)
    await raw.aclose()
    await eventually(lambda: live.in_flight == 0, "the proxied exchange ended", timeout=5)
    await eventually(lambda: len(session.channels) < during, "its channel closed", timeout=5)
    # and the manager serves on
    assert (await manager.client.get(hub_path(manager, "version"))).status_code == 200


# e. A Hub that is not there, or a Space the token may not use


async def test_refusals_are_the_same_through_the_lane(manager: RunningManager, hub: HubPeer):
    """Refusals come from the same code both ways (the proxy's, the exception handlers'):
    unknown Hub 404, a Hub that left 503, another org's Space, a path leaving /api/v1."""
    full, lane = await both_ways(manager, hub_path(manager, "version", hub_id="nope"))
    assert (full.status, full.json()) == (404, {"error": "Hub nope not found"})
    assert_same(full, lane)

    full, lane = await both_ways(
        manager, hub_path(manager, "version"), org_id=manager.world.other_org_id
    )
    assert full.status in (403, 404) and full.header("content-type") == "application/json"
    assert_same(full, lane)

    full, lane = await both_ways(manager, hub_path(manager, "a/../../../list"))
    assert full.status == 400 and "error" in full.json()
    assert_same(full, lane)

    gone = await join_hub(manager, "gone")
    await gone.stop()
    await eventually(
        lambda: manager.svc.registry.get(manager.world.space_id, "gone") is None, "gone gone"
    )
    full, lane = await both_ways(manager, hub_path(manager, "version", hub_id="gone"))
    assert (full.status, full.json()) == (503, {"error": "Hub gone is not connected"})
    assert_same(full, lane)


# e2. Another replica's forward (manager.web.peer) on the holder


def forward(manager: RunningManager, epoch: str, secret: str = "", eol: bytes = b"\r\n") -> bytes:
    """A forwarded GET as a replica sends it to the holder: no token, the peer secret, the
    Hub's epoch and the original caller."""
    lines = [
        f"GET /_peer{hub_path(manager, 'version')} HTTP/1.1",
        "Host: replica",
        f"X-Manager-Peer-Secret: {secret or manager.svc.peer_secret}",
        f"X-Manager-Hub-Epoch: {epoch}",
        "X-Mw-Billable: token-of-the-caller",
    ]
    return eol.join(line.encode() for line in lines) + eol + eol


async def test_a_forward_from_another_replica_takes_the_lane_and_answers_the_same(
    manager: RunningManager, hub: HubPeer
):
    """A replica that does not hold a Hub forwards its calls to the holder; on the holder
    the lane takes them as it takes a cached token (the forwarder authenticated and counted
    the call). The full stack (here: the same head with bare LF line ends, which the lane
    leaves to h11) answers the same, refusals included; a wrong secret never takes the lane."""
    live = manager.svc.registry.get(manager.world.space_id, HUB)
    assert live is not None
    epoch = str(live.epoch)
    raw = await Raw.open(manager)
    try:
        pairs = []
        for held in (epoch, str(live.epoch + 1)):  # the epoch held, then a stale one
            before = lane_count(manager)
            await raw.send(forward(manager, held))
            lane = await raw.answer()
            assert lane_count(manager) == before + 1
            await raw.send(forward(manager, held, eol=b"\n"))
            full = await raw.answer()
            assert lane_count(manager) == before + 1
            pairs.append((full, lane))
        before = lane_count(manager)
        await raw.send(forward(manager, "x"))
        no_epoch = await raw.answer()
        await raw.send(forward(manager, epoch, secret="not-the-secret"))
        no_secret = await raw.answer()
        assert lane_count(manager) == before
    finally:
        await raw.aclose()
    (full, lane), (stale_full, stale_lane) = pairs
    assert full.status == 200 and full.json()["service"] == "@scramjet/host"
    assert_same(full, lane)
    assert stale_full.status == 409
    assert_same(stale_full, stale_lane)
    assert no_epoch.status == 400 and no_secret.status == 403


# f. MANAGER_FAST_LANE=off


class TestLaneOff:
    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        return replace(settings, fast_lane=False)

    async def test_nothing_takes_the_lane_and_answers_are_the_same(
        self, manager: RunningManager, hub: HubPeer
    ):
        """With the lane off every request goes through uvicorn and the middleware: the
        counter stays 0 and a token's later requests answer as its first; including the one
        the lane cannot answer (bare LF line ends), which h11 serves."""
        full, again = await both_ways(manager, hub_path(manager, "version"), lane=False)
        assert full.status == 200
        assert_same(full, again)
        full, again = await both_ways(
            manager, hub_path(manager, "version", hub_id="nope"), lane=False
        )
        assert full.status == 404
        assert_same(full, again)

        token = await warm(manager)
        raw = await Raw.open(manager)
        try:
            await raw.send(get(hub_path(manager, "version"), token, request_id="x1"))
            first = await raw.answer()
            await raw.send(get("/api/v1/spaces", token, request_id="x2"))
            second = await raw.answer()
            await raw.send(get(hub_path(manager, "version"), token, eol=b"\n"))
            bare_lf = await raw.answer(timeout=5)
        finally:
            await raw.aclose()
        assert (first.status, first.header("x-request-id")) == (200, "x1")
        assert (second.status, second.header("x-request-id")) == (200, "x2")
        assert bare_lf.status == 200 and bare_lf.json()["service"] == "@scramjet/host"
        assert lane_count(manager) == 0
        metrics = manager.svc.metrics.render().decode()
        assert "manager_fast_lane_requests_total 0.0" in metrics


# The keep-alive timeout with the lane

KEEP_ALIVE_S = 0.6


@pytest.fixture
def short_keep_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """The `manager` fixture's server with a keep-alive timeout of KEEP_ALIVE_S (not 30 s)."""
    import tests.running

    real = tests.running.build_config

    def build(*args: Any, **kwargs: Any) -> Any:
        config = real(*args, **kwargs)
        config.timeout_keep_alive = KEEP_ALIVE_S
        return config

    monkeypatch.setattr(tests.running, "build_config", build)


async def test_keep_alive_counts_from_the_last_lane_answer(
    short_keep_alive: None, manager: RunningManager, hub: HubPeer
):
    """The lane keeps one keep-alive timer per connection and, when it fires, looks at when
    the last answer went out: a connection used every third of the timeout stays open well
    past it, and one left idle is closed once the timeout has passed."""
    token = await warm(manager)
    raw = await Raw.open(manager)
    try:
        before = lane_count(manager)
        for _ in range(9):  # 3 timeouts long
            await raw.send(get(hub_path(manager, "version"), token))
            assert (await raw.answer()).status == 200
            await asyncio.sleep(KEEP_ALIVE_S / 3)
        assert lane_count(manager) == before + 9
        idle_from = asyncio.get_running_loop().time()
        assert await raw.closed_by_server(timeout=KEEP_ALIVE_S * 4)
        idle = asyncio.get_running_loop().time() - idle_from
        assert KEEP_ALIVE_S * 0.5 <= idle <= KEEP_ALIVE_S * 3, idle
    finally:
        await raw.aclose()
