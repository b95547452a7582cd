"""The reverse proxy `/api/v1/space/S/api/v1/sth/H/api/v1/*` through a real-packages Hub peer:
streaming both ways, live streams, client and Hub leaving, errors, aggregation freshness."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.interop.peer import HubPeer, join_hub
from tests.running import RunningManager

MiB = 1 << 20


@pytest.fixture
async def hub(manager: RunningManager) -> AsyncIterator[HubPeer]:
    peer = await join_hub(manager, "px")
    yield peer
    await peer.stop()


def hub_url(manager: RunningManager, path: str, hub_id: str = "px") -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/sth/{hub_id}/api/v1/{path}"


def pattern(n: int) -> bytes:
    block = bytes(i % 251 for i in range(251 * 64))
    return (block * (n // len(block) + 1))[:n]


def session_of(manager: RunningManager):
    live = manager.svc.registry.get(manager.world.space_id, "px")
    assert live is not None
    return live.link.session  # type: ignore[attr-defined]


async def test_small_get(manager: RunningManager, hub: HubPeer):
    resp = await manager.client.get(hub_url(manager, "version"))
    assert resp.status_code == 200
    assert resp.json()["service"] == "@scramjet/host"
    assert resp.headers["access-control-allow-origin"] == "*"
    assert "keep-alive" not in resp.headers


async def test_download_and_upload_stream(manager: RunningManager, hub: HubPeer):
    size = 64 * MiB
    digest = hashlib.sha256()
    got = 0
    async with manager.client.stream("GET", hub_url(manager, f"echo/bytes/{size}")) as resp:
        assert resp.status_code == 200
        async for chunk in resp.aiter_raw():
            digest.update(chunk)
            got += len(chunk)
    assert got == size
    assert digest.hexdigest() == hashlib.sha256(pattern(size)).hexdigest()

    async def body() -> AsyncIterator[bytes]:
        chunk = pattern(MiB)
        for _ in range(64):
            yield chunk

    resp = await manager.client.post(hub_url(manager, "echo/count"), content=body())
    assert resp.status_code == 200
    assert resp.json() == {"bytes": size, "sha256": hashlib.sha256(pattern(MiB) * 64).hexdigest()}


async def test_live_stream_arrives_as_produced(manager: RunningManager, hub: HubPeer):
    started = time.monotonic()
    lines: list[tuple[float, str]] = []
    async with manager.client.stream(
        "GET", hub_url(manager, "echo/stream?interval=300&count=4")
    ) as resp:
        async for line in resp.aiter_lines():
            lines.append((time.monotonic() - started, line))
    assert [text for _, text in lines] == [f"tick {i}" for i in range(4)]
    assert lines[0][0] < 0.9 * lines[-1][0]  # the first line came long before the last


async def test_client_leaving_closes_the_channel(manager: RunningManager, hub: HubPeer):
    session = session_of(manager)
    await asyncio.sleep(0.3)
    baseline = len(session.channels)
    url = hub_url(manager, "echo/stream?interval=50&count=100000")
    async with (
        httpx.AsyncClient(base_url=manager.url, headers=manager.client.headers) as client,
        client.stream("GET", url) as resp,
    ):
        async for _ in resp.aiter_lines():
            break
        assert len(session.channels) == baseline + 1
    deadline = time.monotonic() + 5
    while len(session.channels) > baseline:
        assert time.monotonic() < deadline, "the proxied channel was not closed"
        await asyncio.sleep(0.05)


async def test_hub_dying_mid_stream_cuts_the_response(manager: RunningManager, hub: HubPeer):
    """The Hub going mid-stream ends the client's response within seconds, and as a cut-off
    body: the connection drops without the final chunk, so the client can tell it from a
    stream that ended (which the same client reads to its end without an error)."""
    url = hub_url(manager, "echo/stream?interval=50&count=3")
    async with manager.client.stream("GET", url) as resp:
        complete = [line async for line in resp.aiter_lines()]
    assert complete == ["tick 0", "tick 1", "tick 2"]

    lines: list[str] = []
    killed_at = 0.0
    url = hub_url(manager, "echo/stream?interval=50&count=100000")
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        async with asyncio.timeout(30):
            async with manager.client.stream("GET", url) as resp:
                assert resp.headers["transfer-encoding"] == "chunked"
                async for line in resp.aiter_lines():
                    lines.append(line)
                    if len(lines) == 3:
                        hub.kill()
                        killed_at = time.monotonic()
    assert killed_at, lines
    assert time.monotonic() - killed_at < 5, "the response outlived its Hub"
    assert lines[:3] == ["tick 0", "tick 1", "tick 2"]


async def test_errors(manager: RunningManager, hub: HubPeer):
    resp = await manager.client.get(hub_url(manager, "version", hub_id="nope"))
    assert resp.status_code == 404 and resp.json() == {"error": "Hub nope not found"}
    resp = await manager.client.get(hub_url(manager, "nothing-here"))
    assert resp.status_code == 404 and resp.headers["content-type"].startswith("application/json")
    for bad in ("a/../../../list", "a%2F..%2Fb", "%2e%2e/x", "a/./b"):
        resp = await manager.client.get(hub_url(manager, bad))
        assert resp.status_code in (400, 404), bad
        assert "error" in resp.json()
    other = f"/api/v1/space/{manager.world.other_space_id}/api/v1/sth/px/api/v1/version"
    resp = await manager.client.get(
        other, headers={"Authorization": f"Bearer {manager.world.other_user.token}"}
    )
    assert resp.status_code == 404  # px is not a Hub of the other Space


async def test_disconnected_hub_is_503(manager: RunningManager, hub: HubPeer):
    await hub.stop()
    deadline = time.monotonic() + 10
    while manager.svc.registry.get(manager.world.space_id, "px") is not None:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    resp = await manager.client.get(hub_url(manager, "version"))
    assert resp.status_code == 503
    assert resp.json() == {"error": "Hub px is not connected"}


async def test_uploaded_sequence_shows_in_space_sequences_within_1s(
    manager: RunningManager, hub: HubPeer
):
    resp = await manager.client.post(
        hub_url(manager, "sequence"),
        content=b"\x1f\x8b" + b"\0" * 100,
        headers={"content-type": "application/octet-stream"},
    )
    assert resp.status_code in (200, 202), resp.text
    seq_id = resp.json()["id"]
    deadline = time.monotonic() + 1.0
    space = f"/api/v1/space/{manager.world.space_id}/api/v1"
    while True:
        seqs = (await manager.client.get(f"{space}/sequences")).json()
        if any(s["id"] == seq_id for s in seqs):
            break
        assert time.monotonic() < deadline, "sequence not aggregated within 1 s"
        await asyncio.sleep(0.05)
    found = next(s for s in seqs if s["id"] == seq_id)
    assert found["location"] == "px"
    entities = (await manager.client.get(f"{space}/entities")).json()
    assert seq_id in entities["sequences"] and entities["hubs"] == ["px"]


async def test_many_concurrent_requests(manager: RunningManager, hub: HubPeer):
    results = await asyncio.gather(
        *(manager.client.get(hub_url(manager, "version")) for _ in range(300))
    )
    assert all(r.status_code == 200 for r in results)


async def test_expect_100_continue(manager: RunningManager, hub: HubPeer):
    body = pattern(300_000)
    reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    head = (
        f"POST {hub_url(manager, 'echo/count')} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {manager.world.admin.token}\r\n"
        f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n"
    )
    writer.write(head.encode())
    await writer.drain()
    interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert interim.startswith(b"HTTP/1.1 100 Continue")
    writer.write(body)
    await writer.drain()
    final = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert final.startswith(b"HTTP/1.1 200")
    rest = await asyncio.wait_for(reader.read(65536), 10)
    assert hashlib.sha256(body).hexdigest().encode() in rest
    writer.close()
    await writer.wait_closed()


async def test_empty_and_truncated_uploads(manager: RunningManager, hub: HubPeer):
    resp = await manager.client.post(hub_url(manager, "echo/count"), content=b"")
    assert resp.status_code == 200 and resp.json()["bytes"] == 0
    # A client that promises 1 MB and hangs up after 1 KB: the Hub must not wait forever.
    session = session_of(manager)
    await asyncio.sleep(0.2)
    baseline = len(session.channels)
    _reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    writer.write(
        f"POST {hub_url(manager, 'echo/count')} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {manager.world.admin.token}\r\nContent-Length: 1000000\r\n\r\n".encode()
        + b"x" * 1024
    )
    await writer.drain()
    await asyncio.sleep(0.3)
    writer.close()
    await writer.wait_closed()
    deadline = time.monotonic() + 5
    while len(session.channels) > baseline:
        assert time.monotonic() < deadline, "the half-sent upload left its channel open"
        await asyncio.sleep(0.05)
    assert (await manager.client.get(hub_url(manager, "version"))).status_code == 200


async def test_slow_reader_is_held_back_by_the_window(manager: RunningManager, hub: HubPeer):
    """A client that reads slowly pauses the Hub: the manager buffers at most one window."""
    session = session_of(manager)
    size = 32 * MiB
    got = 0
    peak = 0
    reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    writer.write(
        f"GET {hub_url(manager, f'echo/bytes/{size}')} HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {manager.world.admin.token}\r\n\r\n".encode()
    )
    await writer.drain()
    await reader.readuntil(b"\r\n\r\n")
    for _ in range(40):
        got += len(await reader.read(16384))
        await asyncio.sleep(0.02)
        peak = max(peak, *(len(ch._inbox) for ch in session.channels.values()))
    assert got < size // 4  # the client really is slow
    assert peak <= session.window
    writer.close()
    await writer.wait_closed()
