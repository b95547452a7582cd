"""Topics across Hubs and the Space API: data produced on Hub A reaches a consumer on Hub B
and Space-level readers, in order and complete; API producers reach Hub consumers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.interop.peer import HubPeer, join_hub
from tests.running import RunningManager

NDJSON = {"content-type": "application/x-ndjson"}


def space(manager: RunningManager, path: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/{path}"


@pytest.fixture
async def two_hubs(manager: RunningManager) -> AsyncIterator[dict[str, HubPeer]]:
    key = await manager.new_key()
    peers = {h: await join_hub(manager, h, key=key, healthy=True) for h in ("hub-a", "hub-b")}
    yield peers
    for peer in peers.values():
        await peer.stop()


async def _read_lines(
    client: httpx.AsyncClient, url: str, count: int, got: list[dict], ready: asyncio.Event
) -> None:
    async with client.stream("GET", url, headers=NDJSON) as resp:
        assert resp.status_code == 200
        ready.set()
        async for line in resp.aiter_lines():
            if line.strip():
                got.append(json.loads(line))
            if len(got) >= count:
                return


async def _wait_route(manager: RunningManager, role: str, hub_id: str, name: str) -> None:
    deadline = time.monotonic() + 10
    while not any(
        k[1] == name and k[2] == hub_id and k[4] == role for k in manager.svc.router.routes
    ):
        assert time.monotonic() < deadline, f"no {role} route for {hub_id}"
        await asyncio.sleep(0.05)


async def test_topic_from_hub_a_reaches_hub_b_and_the_space(manager: RunningManager, two_hubs):
    count = 500
    on_b: list[dict] = []
    on_space: list[dict] = []
    ready_b, ready_space = asyncio.Event(), asyncio.Event()
    reader_b = asyncio.ensure_future(
        _read_lines(
            manager.client, space(manager, "sth/hub-b/api/v1/topic/numbers"), count, on_b, ready_b
        )
    )
    reader_space = asyncio.ensure_future(
        _read_lines(manager.client, space(manager, "topic/numbers"), count, on_space, ready_space)
    )
    await ready_b.wait()
    await ready_space.wait()

    async def produce() -> AsyncIterator[bytes]:
        for i in range(count):
            yield json.dumps({"n": i}).encode() + b"\n"

    resp = await manager.client.post(
        space(manager, "sth/hub-a/api/v1/topic/numbers"), content=produce(), headers=NDJSON
    )
    assert resp.status_code in (200, 202), resp.text
    await asyncio.wait_for(asyncio.gather(reader_b, reader_space), 20)
    assert on_b == [{"n": i} for i in range(count)]
    assert on_space == [{"n": i} for i in range(count)]

    topics = (await manager.client.get(space(manager, "topics"))).json()
    numbers = next(t for t in topics if t["name"] == "numbers")
    roles = {(a["role"], a.get("hostId", a["type"])) for a in numbers["actors"]}
    assert ("provider", "hub-a") in roles and ("consumer", "hub-b") in roles


async def test_api_producer_reaches_a_hub_consumer(manager: RunningManager, two_hubs):
    got: list[dict] = []
    ready = asyncio.Event()
    reader = asyncio.ensure_future(
        _read_lines(manager.client, space(manager, "sth/hub-b/api/v1/topic/orders"), 3, got, ready)
    )
    await ready.wait()
    await _wait_route(manager, "push", "hub-b", "orders")
    resp = await manager.client.post(
        space(manager, "topic/orders"),
        content=b'{"o":1}\n{"o":2}\n{"o":3}\n',
        headers={**NDJSON, "x-end-stream": "false"},
    )
    assert resp.status_code == 202 and resp.json() == {}
    await asyncio.wait_for(reader, 10)
    assert got == [{"o": 1}, {"o": 2}, {"o": 3}]


async def test_space_topic_errors(manager: RunningManager, two_hubs):
    resp = await manager.client.post(space(manager, "topic/bad name!"), content=b"x")
    assert resp.status_code == 400 and resp.json() == {"error": "Topic id incorrect format"}
    resp = await manager.client.post(
        space(manager, "topic/t1"), content=b"x", headers={"content-type": "image/png"}
    )
    assert resp.status_code == 400 and resp.json() == {"error": "Unsupported content-type"}
    resp = await manager.client.post(
        space(manager, "topic/t1"),
        content=b"x\n",
        headers={"content-type": "text/plain", "x-end-stream": "true"},
    )
    assert resp.status_code == 200
    resp = await manager.client.post(space(manager, "topic/t1"), content=b"{}\n", headers=NDJSON)
    assert resp.status_code == 415
    assert resp.json() == {"error": "Acceptable Content-Type for t1 is text/plain"}


async def test_hub_leaving_stops_its_routes(manager: RunningManager, two_hubs):
    got: list[dict] = []
    ready = asyncio.Event()
    reader = asyncio.ensure_future(
        _read_lines(manager.client, space(manager, "sth/hub-b/api/v1/topic/flow"), 1000, got, ready)
    )
    await ready.wait()
    await _wait_route(manager, "push", "hub-b", "flow")
    await two_hubs["hub-b"].stop()
    # The proxied stream ends when its Hub goes, cut off (no last chunk), not as if complete.
    with pytest.raises(httpx.RemoteProtocolError, match="incomplete chunked read"):
        await asyncio.wait_for(reader, 5)
    assert len(got) < 1000
    deadline = time.monotonic() + 10
    while any(k[2] == "hub-b" for k in manager.svc.router.routes):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
