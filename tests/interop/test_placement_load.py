"""README "Space services": a Space-level start of a stored Sequence goes to "the least loaded
healthy [Hub] with the tags you name". Node Hub peers report the `currentLoad` the test sets
(`--current-load`, then the `load` command); when the loads flip, so does the choice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from tests.interop.packages import hello_package
from tests.interop.peer import HubPeer, join_hub
from tests.running import RunningManager


def space(manager: RunningManager, path: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/{path}"


@pytest.fixture
async def peers(manager: RunningManager) -> AsyncIterator[dict[str, HubPeer]]:
    key = await manager.new_key()
    started: dict[str, HubPeer] = {}
    try:
        for hub_id, tags, load in (
            ("gpu-busy", "gpu", "0.9"),
            ("gpu-idle", "gpu,big", "0.2"),
            ("cpu-idlest", "cpu", "0"),  # the least loaded of all, but without the tag
        ):
            started[hub_id] = await join_hub(
                manager, hub_id, "--tags", tags, "--current-load", load, key=key, healthy=True
            )
        yield started
    finally:
        for peer in started.values():
            await peer.stop()


async def set_load(manager: RunningManager, peer: HubPeer, hub_id: str, value: float) -> None:
    """Make the peer report `value` and wait until the manager has taken it in."""
    await peer.command({"cmd": "load", "peer": 0, "currentLoad": value})
    sent = await peer.wait_for(event="load_sent", currentLoad=value)
    assert sent["control"], sent
    deadline = asyncio.get_running_loop().time() + 5
    while True:
        live = manager.svc.registry.get(manager.world.space_id, hub_id)
        assert live is not None, f"{hub_id} is not connected"
        if (live.state.load or {}).get("currentLoad") == value:
            return
        assert asyncio.get_running_loop().time() < deadline, (hub_id, live.state.load)
        await asyncio.sleep(0.02)


async def start_by_tag(manager: RunningManager, tags: list[str]) -> str:
    resp = await manager.client.post(
        space(manager, "sequence/placed/start"), json={"tags": tags, "appConfig": {}}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["result"] == "success"
    return str(resp.json()["hubId"])


async def test_start_by_tags_picks_the_least_loaded_hub_and_follows_the_loads(
    manager: RunningManager, peers: dict[str, HubPeer]
):
    resp = await manager.client.put(space(manager, "s3/placed"), content=hello_package())
    assert resp.status_code == 200, resp.text
    for hub_id, load in (("gpu-busy", 0.9), ("gpu-idle", 0.2), ("cpu-idlest", 0.0)):
        await set_load(manager, peers[hub_id], hub_id, load)

    assert await start_by_tag(manager, ["gpu"]) == "gpu-idle"
    assert await start_by_tag(manager, ["gpu"]) == "gpu-idle"  # a start is not a load report

    # The loads flip: the choice follows at once.
    await set_load(manager, peers["gpu-idle"], "gpu-idle", 0.95)
    await set_load(manager, peers["gpu-busy"], "gpu-busy", 0.05)
    assert await start_by_tag(manager, ["gpu"]) == "gpu-busy"

    # Every tag named must be there: only gpu-idle has both, however loaded it is.
    assert await start_by_tag(manager, ["gpu", "big"]) == "gpu-idle"
    # No tags: the least loaded healthy Hub of the Space.
    assert await start_by_tag(manager, []) == "cpu-idlest"
    await set_load(manager, peers["cpu-idlest"], "cpu-idlest", 2.5)
    assert await start_by_tag(manager, []) == "gpu-busy"
