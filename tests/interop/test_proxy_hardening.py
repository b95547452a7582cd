"""Proxy hardening (the class of Rancher CVE-2021-31999): headers named in `Connection`,
hop-by-hop headers and the caller's credentials never reach a Hub; ambiguous framing
(duplicate Content-Length, Content-Length with Transfer-Encoding), oversized heads,
smuggled requests, traversal and encoded slashes are refused before they reach one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.interop.peer import HubPeer, join_hub
from tests.running import RunningManager


@pytest.fixture
async def hub(manager: RunningManager) -> AsyncIterator[HubPeer]:
    peer = await join_hub(manager, "hard")
    yield peer
    await peer.stop()


def url(manager: RunningManager, path: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/sth/hard/api/v1/{path}"


async def raw_exchange(manager: RunningManager, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", manager.svc.settings.port)
    writer.write(request)
    await writer.drain()
    chunks = []
    try:
        while data := await asyncio.wait_for(reader.read(65536), 5):
            chunks.append(data)
    except (TimeoutError, ConnectionError):
        pass
    writer.close()
    return b"".join(chunks)


def head(manager: RunningManager, method: str, path: str, *lines: str) -> bytes:
    text = [
        f"{method} {url(manager, path)} HTTP/1.1",
        "Host: x",
        "Connection: close",
        f"Authorization: Bearer {manager.world.admin.token}",
        *lines,
    ]
    return ("\r\n".join(text) + "\r\n\r\n").encode()


async def test_hop_by_hop_and_credentials_are_not_forwarded(manager: RunningManager, hub: HubPeer):
    resp = await manager.client.get(
        url(manager, "echo/headers"),
        headers={
            "Connection": "keep-alive, x-secret-hop",
            "x-secret-hop": "1",
            "Keep-Alive": "timeout=99",
            "TE": "trailers",
            "Trailer": "x-late",
            "Upgrade": "h2c",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Cookie": "session=abc",
            "x-mw-billable": "forged",
            "x-keep-me": "yes",
        },
    )
    assert resp.status_code == 200
    seen = {k.lower() for k in resp.json()["headers"]}
    for name in (
        "x-secret-hop",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-authorization",
        "cookie",
        "authorization",
    ):
        assert name not in seen, name
    assert resp.json()["headers"]["x-keep-me"] == "yes"
    assert resp.json()["headers"]["x-mw-billable"] == manager.world.admin.token_id
    # ...and the Hub's hop-by-hop headers do not come back to the client.
    assert "x-hop" not in resp.headers and "keep-alive" not in resp.headers


@pytest.mark.parametrize(
    "lines",
    [
        ("Content-Length: 5", "Content-Length: 6"),
        ("Content-Length: 5", "Transfer-Encoding: chunked"),
        ("Transfer-Encoding: gzip, chunked",),
        ("x-big: " + "a" * 70_000,),
    ],
    ids=["duplicate-content-length", "cl-and-te", "te-not-chunked-last", "oversized-head"],
)
async def test_ambiguous_framing_is_refused(manager: RunningManager, hub: HubPeer, lines):
    before = (await manager.client.get(url(manager, "echo/headers"))).json()["seen"]
    answer = await raw_exchange(manager, head(manager, "POST", "echo/headers", *lines) + b"hello")
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1") else 0
    assert status in (0, 400, 413, 431, 501) or (
        lines[0].startswith("Content-Length: 5")
        and status == 200
        and b'"bytes":5' in answer
        and answer.count(b"HTTP/1.1") == 1
    ), answer[:300]
    after = (await manager.client.get(url(manager, "echo/headers"))).json()["seen"]
    assert after - before <= 2  # at most the one (well-framed) request, never a smuggled one


async def test_a_smuggled_request_stays_a_body(manager: RunningManager, hub: HubPeer):
    inner = b"GET /api/v1/echo/headers HTTP/1.1\r\nHost: hub\r\n\r\n"
    before = (await manager.client.get(url(manager, "echo/headers"))).json()["seen"]
    resp = await manager.client.post(url(manager, "echo/headers"), content=inner)
    assert resp.json()["bytes"] == len(inner)
    after = (await manager.client.get(url(manager, "echo/headers"))).json()["seen"]
    assert after - before == 2  # our POST and this GET; the inner request was only bytes


@pytest.mark.parametrize(
    "path",
    ["../../../../api/v1/spaces", "a/%2e%2e/%2e%2e/x", "a%2Fb", "a%5Cb", "%2f", "a/./b", "..%2f"],
)
async def test_traversal_and_encoded_slashes(manager: RunningManager, hub: HubPeer, path: str):
    answer = await raw_exchange(manager, head(manager, "GET", path))
    status = int(answer.split(b" ", 2)[1])
    assert status in (400, 404), answer[:200]
    body = answer.split(b"\r\n\r\n", 1)[1]
    assert b'"error"' in body
