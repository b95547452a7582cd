"""Topics on real STH 1.0.1 Hubs through the manager.

A client's `POST /topic/<name>` through the manager used to hang on a real Hub: the Hub
answers only after it has announced the topic on its control channel and then seen the
request end, and through a tunnel the end arrived first (manager/hubs/announcements.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx

from tests.interop.packages import COUNTER_JS, PASS_THROUGH_JS, node_package
from tests.interop.sth import HubFleet
from tests.running import RunningManager

NDJSON = {"content-type": "application/x-ndjson"}


def hub_api(manager: RunningManager, hub_id: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/sth/{hub_id}/api/v1"


async def test_topic_post_through_the_manager_is_answered(
    manager: RunningManager, real_hubs: HubFleet
):
    hub = await real_hubs.start("poster")
    api = hub_api(manager, "poster")
    for body in (b'{"a":1}\n', b""):  # with a body and without one
        resp = await asyncio.wait_for(
            manager.client.post(f"{api}/topic/orders", content=body, headers=NDJSON), 10
        )
        assert resp.status_code == 200, resp.text
        assert resp.json() == {}
    # A refusal still comes back: the Hub announces nothing, so the end of the request
    # waits out the manager's hold (2 s). STH 1.0.1 answers a content-type clash with a 500.
    direct = httpx.post(
        f"{hub.url}/topic/orders", content=b"x", headers={"content-type": "text/plain"}
    )
    bad = await asyncio.wait_for(
        manager.client.post(
            f"{api}/topic/orders", content=b"x", headers={"content-type": "text/plain"}
        ),
        10,
    )
    assert bad.status_code == direct.status_code == 500, bad.text
    topics = (await manager.client.get(f"{api}/topics")).json()
    assert [t["topicName"] if "topicName" in t else t["topic"] for t in topics] == ["orders"]
    assert manager.svc.registry.get(manager.world.space_id, "poster") is not None
    live = manager.svc.registry.get(manager.world.space_id, "poster")
    assert live is not None and len(live.topic_announcements) == 0  # nobody left waiting


async def test_a_topic_posted_on_one_hub_reaches_a_reader_on_another(
    manager: RunningManager, real_hubs: HubFleet
):
    await real_hubs.start("producer-hub")
    await real_hubs.start("reader-hub")
    got: list[bytes] = []

    async def read() -> None:
        url = f"{manager.url}{hub_api(manager, 'reader-hub')}/topic/prices"
        async with (
            httpx.AsyncClient(headers=manager.client.headers, timeout=30) as client,
            client.stream("GET", url, headers=NDJSON) as resp,
        ):
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.strip():
                    got.append(line.encode())
                if len(got) == 3:
                    return

    reader = asyncio.ensure_future(read())
    await asyncio.sleep(1.0)  # the reader's Hub announces `requires` first
    lines = b"".join(json.dumps({"p": i}).encode() + b"\n" for i in range(3))
    resp = await asyncio.wait_for(
        manager.client.post(
            f"{hub_api(manager, 'producer-hub')}/topic/prices", content=lines, headers=NDJSON
        ),
        10,
    )
    assert resp.status_code == 200, resp.text
    await asyncio.wait_for(reader, 20)
    assert [json.loads(x) for x in got] == [{"p": 0}, {"p": 1}, {"p": 2}]


async def start_sequence(
    manager: RunningManager, hub_id: str, package: bytes, **payload: object
) -> str:
    api = hub_api(manager, hub_id)
    sent = await manager.client.post(
        f"{api}/sequence", content=package, headers={"content-type": "application/octet-stream"}
    )
    assert sent.status_code == 200, sent.text
    started = await manager.client.post(
        f"{api}/sequence/{sent.json()['id']}/start", json={"appConfig": {}, **payload}
    )
    assert started.status_code == 200, started.text
    return str(started.json()["id"])


async def read_output(
    manager: RunningManager, hub_id: str, instance: str, count: int, timeout: float
) -> list[dict]:
    url = f"{manager.url}{hub_api(manager, hub_id)}/instance/{instance}/output"
    out: list[dict] = []

    async def read() -> None:
        async with (
            httpx.AsyncClient(headers=manager.client.headers, timeout=timeout) as client,
            client.stream("GET", url) as resp,
        ):
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.strip():
                    out.append(json.loads(line))
                if len(out) >= count:
                    return

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), timeout)
    return out


async def test_10000_lines_between_real_sequences_on_two_hubs(
    manager: RunningManager, real_hubs: HubFleet
):
    """Producer on Hub A (provides `counts`), consumer on Hub B (requires it), both started
    through the manager: every line arrives at B, in order."""
    await real_hubs.start("topic-a")
    await real_hubs.start("topic-b")
    consumer = await start_sequence(manager, "topic-b", node_package("consumer", PASS_THROUGH_JS))
    await asyncio.sleep(1.0)
    await start_sequence(
        manager,
        "topic-a",
        node_package("counter", COUNTER_JS),
        args=[10000],
    )
    got = await read_output(manager, "topic-b", consumer, 10000, timeout=90)
    assert len(got) == 10000, f"{len(got)} lines arrived; last {got[-1:]}"
    assert [x["n"] for x in got] == list(range(10000))
    topics = (
        await manager.client.get(f"/api/v1/space/{manager.world.space_id}/api/v1/topics")
    ).json()
    counts = next(t for t in topics if t["name"] == "counts")
    roles = {(a["role"], a.get("hostId")) for a in counts["actors"]}
    assert ("provider", "topic-a") in roles and ("consumer", "topic-b") in roles, counts


async def test_producer_restarted_midway(manager: RunningManager, real_hubs: HubFleet):
    """The producer is killed while the topic flows and a new one takes over on the same Hub.

    What arrives from the killed producer is a gap-free, in-order prefix of what it made
    (what it had produced but its Hub had not yet passed on dies with it); everything the
    new producer makes arrives, in order, after it."""
    await real_hubs.start("topic-a")
    await real_hubs.start("topic-b")
    consumer = await start_sequence(manager, "topic-b", node_package("consumer", PASS_THROUGH_JS))
    await asyncio.sleep(1.0)
    package = node_package("counter", COUNTER_JS)
    first = await start_sequence(manager, "topic-a", package, args=[1_000_000, "first", 20])
    got: list[dict] = []
    url = f"{manager.url}{hub_api(manager, 'topic-b')}/instance/{consumer}/output"

    async def read() -> None:
        async with (
            httpx.AsyncClient(headers=manager.client.headers, timeout=120) as client,
            client.stream("GET", url) as resp,
        ):
            async for line in resp.aiter_lines():
                if line.strip():
                    got.append(json.loads(line))

    reader = asyncio.ensure_future(read())
    try:
        deadline = asyncio.get_running_loop().time() + 60
        while len(got) < 2000:
            assert asyncio.get_running_loop().time() < deadline, f"only {len(got)} lines"
            await asyncio.sleep(0.05)
        api = hub_api(manager, "topic-a")
        killed = await manager.client.post(f"{api}/instance/{first}/_kill", json={})
        assert killed.status_code in (200, 202), killed.text
        await asyncio.sleep(1.0)
        await start_sequence(manager, "topic-a", package, args=[5000, "second"])
        deadline = asyncio.get_running_loop().time() + 60
        while sum(1 for x in got if x["p"] == "second") < 5000:
            assert asyncio.get_running_loop().time() < deadline, "second producer's lines missing"
            await asyncio.sleep(0.05)
    finally:
        reader.cancel()
    firsts = [x["n"] for x in got if x["p"] == "first"]
    seconds = [x["n"] for x in got if x["p"] == "second"]
    assert firsts == list(range(len(firsts))) and len(firsts) >= 2000
    assert seconds == list(range(5000))
    assert [x["p"] for x in got] == ["first"] * len(firsts) + ["second"] * 5000
