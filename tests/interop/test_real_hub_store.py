"""Starting a stored Sequence on a real STH 1.0.1 Hub.

STH 1.0.1 joined with `--platform-api` cannot fetch a package from the store itself (its
storage client is built on an empty CPM URL: `Invalid URL` before any request, then 404),
so the manager hands the package to the Hub before the start (placement.deliver).
"""

from __future__ import annotations

import asyncio

import httpx

from tests.interop.packages import hello_package
from tests.interop.sth import HubFleet
from tests.running import RunningManager


async def first_output_line(manager: RunningManager, path: str, timeout: float = 20) -> str:
    async def read() -> str:
        async with (
            httpx.AsyncClient(headers=manager.client.headers, timeout=timeout) as client,
            client.stream("GET", f"{manager.url}{path}") as resp,
        ):
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.strip():
                    return line
        raise AssertionError("output ended without a line")

    return await asyncio.wait_for(read(), timeout)


async def test_stored_sequence_starts_through_the_hub_path(
    manager: RunningManager, real_hubs: HubFleet
):
    await real_hubs.start("store-hub")
    space = f"/api/v1/space/{manager.world.space_id}/api/v1"
    hub = f"{space}/sth/store-hub/api/v1"
    put = await manager.client.put(f"{space}/s3/ticker", content=hello_package())
    assert put.status_code == 200, put.text

    started = []
    for _ in range(2):
        resp = await manager.client.post(f"{hub}/sequence/ticker/start", json={"appConfig": {}})
        assert resp.status_code == 200, resp.text
        started.append(resp.json()["id"])
    assert started[0] != started[1]

    # One copy on the Hub, running both Instances; its output is the Sequence's.
    sequences = (await manager.client.get(f"{hub}/sequences")).json()
    assert len(sequences) == 1, sequences
    assert sequences[0]["config"]["name"] == "hello-seq"
    assert sorted(sequences[0]["instances"]) == sorted(started)
    line = await first_output_line(manager, f"{hub}/instance/{started[0]}/output")
    assert "tick" in line

    # A name neither the Hub nor the store has is still the Hub's own 404.
    missing = await manager.client.post(f"{hub}/sequence/nope/start", json={"appConfig": {}})
    assert missing.status_code == 404


async def test_stored_sequence_starts_on_a_hub_chosen_by_tags(
    manager: RunningManager, real_hubs: HubFleet
):
    await real_hubs.start("plain-hub")
    await real_hubs.start("gpu-hub", tags="gpu")
    space = f"/api/v1/space/{manager.world.space_id}/api/v1"
    put = await manager.client.put(f"{space}/s3/ticker", content=hello_package())
    assert put.status_code == 200, put.text
    resp = await manager.client.post(
        f"{space}/sequence/ticker/start", json={"tags": ["gpu"], "appConfig": {}}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["hubId"] == "gpu-hub"
    line = await first_output_line(
        manager, f"{space}/sth/gpu-hub/api/v1/instance/{body['id']}/output"
    )
    assert "tick" in line
