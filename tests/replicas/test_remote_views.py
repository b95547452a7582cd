"""The Space's lists across replicas: a replica answering `/list`, `/sequences` or `/load`
asks the other replicas for the Hubs they hold. The holder tags its answer (ETag over each
Hub's epoch, control-message count and health); an asker holding the current tag gets 304 and
keeps its views (manager.services.held_hubs). What is checked: the 304 happens, and the lists
never go stale for it: a Hub's new Sequence, its LOAD figures and its leaving show through
the other replica as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import eventually
from tests.interop.packages import hello_package
from tests.interop.peer import HubPeer
from tests.replicas.cluster import PEER_SECRET, Cluster, cluster

PEER = {"x-manager-peer-secret": PEER_SECRET}


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path, 2) as c:
        yield c


async def hub_on(c: Cluster, i: int, hub_id: str, key: str) -> HubPeer:
    """A Node-peer Hub joined to replica `i` itself (not through the balancer)."""
    return await HubPeer.start(
        c.replicas[i].url, c.world.space_id, key, "--id", hub_id, "--load-interval", "1000",
        "--quiet",
    )  # fmt: skip


async def listed(client: httpx.AsyncClient, space: str) -> dict[str, dict]:
    resp = await client.get(f"/api/v1/space/{space}/api/v1/list")
    assert resp.status_code == 200, resp.text
    return {h["id"]: h for h in resp.json()}


async def test_lists_through_another_replica_revalidate_and_stay_current(two: Cluster) -> None:
    c = two
    space = c.world.space_id
    key = await c.new_key("remote views")
    peers = [await hub_on(c, 0, "on-r0", key), await hub_on(c, 1, "on-r1", key)]
    try:
        r0, r1 = c.direct(0), c.direct(1)

        async def both_healthy() -> bool:
            hubs = await listed(r0, space)
            return all(hubs.get(h, {}).get("healthy") for h in ("on-r0", "on-r1"))

        await eventually(both_healthy, "both Hubs healthy in replica 0's list", timeout=30)

        # The holder's answer with load=0: tagged, without LOAD; the same tag again is a 304.
        path = f"/_peer/v1/spaces/{space}/hubs?load=0"
        first = await r1.get(path, headers=PEER)
        assert first.status_code == 200, first.text
        tag = first.headers["etag"]
        [entry] = first.json()["hubs"]
        assert entry["id"] == "on-r1" and entry["healthy"] is True and "load" not in entry
        again = await r1.get(path, headers={**PEER, "if-none-match": tag})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == tag
        stale = await r1.get(path, headers={**PEER, "if-none-match": '"another"'})
        assert stale.status_code == 200 and stale.headers["etag"] == tag
        # With load=1, or asked as an older release does (neither): every Hub's figures as
        # they are now, untagged.
        for older in (f"/_peer/v1/spaces/{space}/hubs?load=1", f"/_peer/v1/spaces/{space}/hubs"):
            loaded = await r1.get(older, headers={**PEER, "if-none-match": tag})
            assert loaded.status_code == 200 and "etag" not in loaded.headers
            assert isinstance(loaded.json()["hubs"][0]["load"], dict)
        # The peer route still wants the secret.
        assert (await r1.get(path, headers={"if-none-match": tag})).status_code in (401, 403)

        # Replica 0's lists, asked twice (the second time on a 304), show the same.
        assert (await listed(r0, space))["on-r1"]["sequences"] == []
        assert (await listed(r0, space))["on-r1"]["sequences"] == []

        # A change on the Hub replica 1 holds (a Sequence sent through replica 0, which
        # forwards it) shows through replica 0 in every list, and changes the tag.
        sent = await r0.post(
            f"/api/v1/space/{space}/api/v1/sth/on-r1/api/v1/sequence", content=hello_package()
        )
        assert sent.status_code == 200, sent.text
        seq_id = sent.json()["id"]

        async def sequence_shown() -> bool:
            return (await listed(r0, space))["on-r1"]["sequences"] == [seq_id]

        await eventually(sequence_shown, "the new Sequence in replica 0's list", timeout=10)
        on_hubs = (await r0.get(f"/api/v1/space/{space}/api/v1/sequences")).json()
        assert {(s["id"], s["location"]) for s in on_hubs} >= {(seq_id, "on-r1")}
        changed = await r1.get(path, headers={**PEER, "if-none-match": tag})
        assert changed.status_code == 200 and changed.headers["etag"] != tag

        # /load through replica 0 has the remote Hub's figures (asked with load=1).
        load = (await r0.get(f"/api/v1/space/{space}/api/v1/load")).json()
        assert set(load["hubs"]) == {"on-r0", "on-r1"}, load

        # The remote Hub leaving shows too, though replica 0 last saw it unchanged.
        await peers.pop().stop()

        async def gone() -> bool:
            return (await listed(r0, space))["on-r1"]["isConnectionActive"] is False

        await eventually(gone, "the stopped Hub shown disconnected by replica 0", timeout=15)
        assert (await listed(r0, space))["on-r0"]["isConnectionActive"] is True
    finally:
        for peer in peers:
            await peer.stop()
