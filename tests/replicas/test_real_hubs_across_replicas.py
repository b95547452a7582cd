"""Three replicas on PostgreSQL behind HAProxy (TCP mode), real STH 1.0.1 Hubs joined through
the balancer: every Hub answers through every replica, to `si` 1.0.1 and to the Python
client, and the Space's lists agree whichever replica is asked."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import eventually
from tests.interop.packages import COUNTER_JS, PASS_THROUGH_JS, hello_package, node_package
from tests.interop.real_si import write_echo_package
from tests.interop.sth import HubFleet, Si
from tests.interop.test_real_hub_topics import read_output, start_sequence
from tests.replicas.cluster import Cluster, cluster

HUBS = ("hub-a", "hub-b", "hub-c", "hub-d")


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path, 3) as c:
        yield c


@pytest.fixture
async def fleet(three: Cluster, tmp_path: Path) -> AsyncIterator[HubFleet]:
    hubs = HubFleet(three, tmp_path / "hubs")
    try:
        yield hubs
    finally:
        await hubs.stop_all()


async def holders(c: Cluster) -> dict[str, int]:
    out: dict[str, int] = {}
    for i, replica in enumerate(c.replicas):
        if replica.proc is not None:  # not stopped by the test
            for hub in await c.held(i):
                out[hub] = i
    return out


async def test_every_hub_answers_through_every_replica(
    three: Cluster, fleet: HubFleet, tmp_path: Path
) -> None:
    c = three
    await asyncio.gather(*(fleet.start(h) for h in HUBS))
    held = await holders(c)
    assert sorted(held) == sorted(HUBS)
    assert len(set(held.values())) >= 2, f"the balancer put every Hub on one replica: {held}"

    space = c.world.space_id
    for i in range(len(c.replicas)):
        client = c.direct(i)
        listed = {
            h["id"]: h for h in (await client.get(f"/api/v1/space/{space}/api/v1/list")).json()
        }
        for hub in HUBS:
            assert listed[hub]["isConnectionActive"] is True, (i, listed[hub])
            assert listed[hub]["healthy"] is True, (i, listed[hub])
            resp = await client.get(f"/api/v1/space/{space}/api/v1/sth/{hub}/api/v1/version")
            assert resp.status_code == 200, (i, hub, resp.text)
            assert resp.json()["service"] == "@scramjet/host"
            # One Date, the answering replica's: neither the Hub's nor the holder's beside it.
            assert len(resp.headers.get_list("date")) == 1, (i, hub, resp.headers)

    # si 1.0.1 against each replica in turn, each time on a Hub another replica holds.
    package = write_echo_package(tmp_path / "echo.tar.gz")
    for i in range(len(c.replicas)):
        hub = next(h for h in HUBS if held[h] != i)
        si = Si(tmp_path / f"si{i}", c.replicas[i].url, c.token)
        await si.configure()
        await si.run("hub", "use", hub)
        sent = await si.json("seq", "send", str(package))
        started = await si.json("seq", "start", sent["_id"])
        info = await si.json("inst", "info", started["_id"])
        assert info["sequence"]["id"] == sent["_id"]
        await si.run("inst", "kill", started["_id"])

        # ... and the Space's lists on yet another replica know the Instance's Hub.
        other = c.direct((i + 1) % len(c.replicas))

        async def seen(other=other, hub=hub, seq=sent["_id"]) -> bool:
            resp = await other.get(f"/api/v1/space/{space}/api/v1/sequences")
            return any(s["id"] == seq and s["location"] == hub for s in resp.json())

        await eventually(seen, f"sequence on {hub} listed by another replica", timeout=10)

    # The Python client (PyPI scramjet-api-client 1.1.1) through each replica.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from client.host_client import HostClient
        from client_utils.base_client import BaseClient

    BaseClient.setDefaultHeaders({"Authorization": f"Bearer {c.token}"})
    try:
        for i, replica in enumerate(c.replicas):
            hub = next(h for h in HUBS if held[h] != i)
            host = HostClient(f"{replica.url}/api/v1/space/{space}/api/v1/sth/{hub}/api/v1")
            assert (await host.get_version())["service"] == "@scramjet/host"
            sequence = await host.send_sequence(hello_package())
            instance = await sequence.start()
            assert (await instance.get_info())["id"] == instance.id
    finally:
        BaseClient.setDefaultHeaders({})


async def test_stale_route_is_never_served(three: Cluster, fleet: HubFleet) -> None:
    """A Hub that moves to another replica: requests through the others follow it (409 from
    the old holder, one fresh read), and never reach the old tunnel."""
    c = three
    hub = await fleet.start("hub-a")
    space = c.world.space_id
    before = (await holders(c))["hub-a"]
    for i in range(len(c.replicas)):  # every replica has the route cached now
        r = await c.direct(i).get(f"/api/v1/space/{space}/api/v1/sth/hub-a/api/v1/version")
        assert r.status_code == 200
    await hub.stop()
    await fleet.wait_listed("hub-a", active=False)
    for _ in range(6):  # come back through the balancer until another replica holds it
        await hub.start()
        await fleet.wait_listed("hub-a")
        if (await holders(c))["hub-a"] != before:
            break
        await hub.stop()
        await fleet.wait_listed("hub-a", active=False)
    now = (await holders(c))["hub-a"]
    assert now != before
    for i in range(len(c.replicas)):
        r = await c.direct(i).get(f"/api/v1/space/{space}/api/v1/sth/hub-a/api/v1/version")
        assert r.status_code == 200, (i, r.text)


async def test_revoke_and_disconnect_on_one_replica_drop_hubs_held_by_another(
    three: Cluster, fleet: HubFleet
) -> None:
    c = three
    space = c.world.space_id
    key = await c.new_key("to revoke")
    await asyncio.gather(*(fleet.start(h, key=key if h == "hub-a" else None) for h in HUBS))
    held = await holders(c)
    # Revoke hub-a's key on a replica that does not hold it: its holder drops it within 5 s.
    other = next(i for i in range(3) if i != held["hub-a"])
    t0 = asyncio.get_running_loop().time()
    resp = await c.direct(other).delete(f"/api/v1/space/{space}/apikey", headers={"x-revoke": key})
    assert resp.status_code == 200, resp.text
    await fleet.wait_listed("hub-a", active=False, timeout=5)
    assert asyncio.get_running_loop().time() - t0 < 5
    # Disconnect, asked of a replica that does not hold the Hub: answered once it is down.
    other = next(i for i in range(3) if i != held["hub-b"])
    resp = await c.direct(other).post(
        f"/api/v1/space/{space}/api/v1/disconnect", json={"id": "hub-b"}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["disconnected"] == [
        {"sthId": "hub-b", "reason": "disconnected by the Space"}
    ]
    listed = {h["id"]: h for h in await c.hubs()}
    assert listed["hub-b"]["isConnectionActive"] is False
    assert listed["hub-c"]["isConnectionActive"] is True


async def test_killed_replica_hubs_routable_again_through_the_balancer(
    three: Cluster, fleet: HubFleet
) -> None:
    c = three
    space = c.world.space_id
    await asyncio.gather(*(fleet.start(h) for h in HUBS))
    held = await holders(c)
    victim = max(set(held.values()), key=lambda i: list(held.values()).count(i))
    lost = [h for h, i in held.items() if i == victim]
    kept = [h for h, i in held.items() if i != victim]
    survivor = c.direct(next(i for i in range(3) if i != victim))
    t0 = asyncio.get_running_loop().time()
    c.replicas[victim].stop("kill")
    # Hubs elsewhere are not disturbed meanwhile.
    for hub in kept:
        r = await survivor.get(f"/api/v1/space/{space}/api/v1/sth/{hub}/api/v1/version")
        assert r.status_code == 200, r.text

    async def all_back() -> bool:
        for hub in lost:
            try:  # the balancer may still pick the dead replica until its check fails
                r = await c.client.get(f"/api/v1/space/{space}/api/v1/sth/{hub}/api/v1/version")
            except httpx.TransportError:
                return False
            if r.status_code != 200:
                return False
        return True

    await eventually(all_back, "the killed replica's Hubs routable again", timeout=30)
    took = asyncio.get_running_loop().time() - t0
    assert took < 30
    after = await holders(c)  # only live replicas answer; none lists the dead one's Hubs
    assert sorted(after) == sorted(HUBS) and victim not in after.values()


async def test_topic_between_hubs_on_different_replicas(three: Cluster, fleet: HubFleet) -> None:
    """Producer Sequence on a Hub one replica holds, consumer on a Hub another holds: every
    line arrives, in order (the provider's holder pushes into the consumer's holder)."""
    c = three
    await asyncio.gather(*(fleet.start(h) for h in HUBS))
    held = await holders(c)
    producer = HUBS[0]
    consumer_hub = next(h for h in HUBS if held[h] != held[producer])
    consumer = await start_sequence(c, consumer_hub, node_package("consumer", PASS_THROUGH_JS))
    await asyncio.sleep(1.0)
    await start_sequence(c, producer, node_package("counter", COUNTER_JS), args=[3000])
    got = await read_output(c, consumer_hub, consumer, 3000, timeout=60)
    assert len(got) == 3000, f"{len(got)} lines arrived; last {got[-1:]}"
    assert [x["n"] for x in got] == list(range(3000))


async def test_api_topic_reader_on_a_replica_with_no_hub_gets_a_provider_elsewhere(
    three: Cluster, fleet: HubFleet
) -> None:
    """A Space API client (si topic get, the Python client) reading a topic through a
    replica that holds no Hub of the Space gets what a Sequence on another replica's Hub
    provides, in order: the reader's replica relays the provider's holder's board."""
    c = three
    space = c.world.space_id
    await fleet.start(HUBS[0])
    held = await holders(c)
    reader_at = next(i for i in range(3) if i != held[HUBS[0]])
    assert await c.held(reader_at) == []
    lines: list[dict] = []

    async def read() -> None:
        async with c.direct(reader_at).stream(
            "GET",
            f"/api/v1/space/{space}/api/v1/topic/counts",
            headers={"content-type": "application/x-ndjson"},
            timeout=httpx.Timeout(60, read=60),
        ) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.strip():
                    lines.append(json.loads(line))
                if len(lines) >= 500:
                    return

    reader = asyncio.create_task(read())
    await asyncio.sleep(2.0)  # the reader's replica opens its relay
    await start_sequence(c, HUBS[0], node_package("counter", COUNTER_JS), args=[500])
    await asyncio.wait_for(reader, 60)
    assert [x["n"] for x in lines] == list(range(500))


async def test_space_level_start_on_a_hub_another_replica_holds(
    three: Cluster, fleet: HubFleet
) -> None:
    c = three
    space = c.world.space_id
    await asyncio.gather(*(fleet.start(h) for h in HUBS[:3]))
    held = await holders(c)
    hub = HUBS[0]
    asker = c.direct(next(i for i in range(3) if i != held[hub]))
    sent = await asker.post(
        f"/api/v1/space/{space}/api/v1/sth/{hub}/api/v1/sequence",
        content=hello_package(),
        headers={"content-type": "application/octet-stream"},
    )
    assert sent.status_code == 200, sent.text
    seq = sent.json()["id"]
    started = await asker.post(
        f"/api/v1/space/{space}/api/v1/sequence/{seq}/start", json={"hub": hub}
    )
    assert started.status_code == 200, started.text
    assert started.json()["hubId"] == hub and started.json()["sequenceId"] == seq
