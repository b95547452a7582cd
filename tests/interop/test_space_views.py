"""Space-level views across two Hubs: the merged live log and the aggregates that the
control channels keep (sequences with `location`, topics with actors, summed load)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from tests.interop.peer import HubPeer, join_hub
from tests.running import RunningManager


@pytest.fixture
async def two_hubs(manager: RunningManager) -> AsyncIterator[tuple[HubPeer, HubPeer]]:
    key = await manager.new_key()
    peers = [await join_hub(manager, h, key=key, healthy=True) for h in ("hub-a", "hub-b")]
    yield peers[0], peers[1]
    for peer in peers:
        await peer.stop()


def space(manager: RunningManager, path: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/{path}"


async def test_merged_log_prefixes_every_line(manager: RunningManager, two_hubs):
    # Make both Hubs log something.
    for hub_id in ("hub-a", "hub-b"):
        await manager.client.get(space(manager, f"sth/{hub_id}/api/v1/version"))
    seen: set[str] = set()
    async with manager.client.stream("GET", space(manager, "log")) as resp:
        assert resp.status_code == 200

        async def read() -> None:
            async for line in resp.aiter_lines():
                hub_id, sep, rest = line.partition(": ")
                assert sep and hub_id in ("hub-a", "hub-b"), line
                assert rest
                seen.add(hub_id)
                if len(seen) == 2:
                    return

        await asyncio.wait_for(read(), 10)
    assert seen == {"hub-a", "hub-b"}


async def test_aggregates_across_hubs(manager: RunningManager, two_hubs):
    for hub_id in ("hub-a", "hub-b"):
        resp = await manager.client.post(
            space(manager, f"sth/{hub_id}/api/v1/sequence"), content=b"\x1f\x8b" + b"\0" * 64
        )
        assert resp.status_code == 200, resp.text
    resp = await manager.client.post(
        space(manager, "sth/hub-a/api/v1/topic/shared"),
        content=b'{"a":1}\n',
        headers={"content-type": "application/x-ndjson"},
    )
    assert resp.status_code in (200, 202)

    deadline = time.monotonic() + 5
    while True:
        seqs = (await manager.client.get(space(manager, "sequences"))).json()
        topics = (await manager.client.get(space(manager, "topics"))).json()
        if len(seqs) == 2 and topics:
            break
        assert time.monotonic() < deadline, (seqs, topics)
        await asyncio.sleep(0.1)
    assert sorted(s["location"] for s in seqs) == ["hub-a", "hub-b"]
    shared = next(t for t in topics if t["name"] == "shared")
    assert shared["contentType"] == "application/x-ndjson"
    assert {"role": "provider", "hostId": "hub-a"}.items() <= shared["actors"][0].items()

    load = (await manager.client.get(space(manager, "load"))).json()
    assert set(load["hubs"]) == {"hub-a", "hub-b"}
    assert load["memFree"] == sum(int(h["memFree"]) for h in load["hubs"].values())
