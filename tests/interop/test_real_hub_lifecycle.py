"""Real STH 1.0.1 Hubs through the manager's lifecycle events: a manager restart with
Instances running, a Hub killed, a Hub back under its id, a key revoked."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import eventually
from tests.interop.packages import hello_package
from tests.interop.sth import HubFleet, RealHub
from tests.manager_process import manager_process
from tests.running import RunningManager


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Both databases here (tests/interop/conftest.py pins SQLite): tunnels come and go and
    their records are written on PostgreSQL too. `postgres` needs MANAGER_TEST_POSTGRES_URL."""
    kind: str = request.param
    return kind


async def start_hello(client: httpx.AsyncClient, hub_api: str) -> str:
    sent = await client.post(f"{hub_api}/sequence", content=hello_package())
    assert sent.status_code == 200, sent.text
    started = await client.post(
        f"{hub_api}/sequence/{sent.json()['id']}/start", json={"appConfig": {}}
    )
    assert started.status_code == 200, started.text
    return str(started.json()["id"])


async def test_manager_restart_with_three_real_hubs_running_instances(
    tmp_path: Path, monkeypatch: Any
):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    async with manager_process(tmp_path / "data") as manager:
        proc, client, space = manager.proc, manager.client, manager.world.space_id
        fleet = HubFleet(manager, tmp_path)
        try:
            names = ["r-1", "r-2", "r-3"]
            hubs = [await fleet.start(name) for name in names]
            base = f"/api/v1/space/{space}/api/v1"
            instances = {
                name: await start_hello(client, f"{base}/sth/{name}/api/v1") for name in names
            }

            async def listed() -> bool:
                got = (await client.get(f"{base}/instances")).json()
                return {(i["id"], i.get("location")) for i in got} >= {
                    (iid, name) for name, iid in instances.items()
                }

            await eventually(listed, "the three Instances in the Space list", timeout=10)
            before = {h["id"]: h for h in await manager.hubs()}

            await asyncio.to_thread(proc.stop)
            await asyncio.to_thread(proc.start)
            t0 = asyncio.get_running_loop().time()
            for name in names:
                await fleet.wait_listed(name, timeout=30)
            back_in = asyncio.get_running_loop().time() - t0
            await eventually(listed, "the Instances listed again after the restart", timeout=10)
            after = {h["id"]: h for h in await manager.hubs()}
            for name in names:
                assert after[name]["info"]["created"] == before[name]["info"]["created"]
                assert after[name]["instances"] == [instances[name]], after[name]
            # The Instances never stopped: each Hub still runs the one it had.
            for hub in hubs:
                async with httpx.AsyncClient() as direct:
                    ids = [i["id"] for i in (await direct.get(f"{hub.url}/instances")).json()]
                assert ids == [instances[hub.hub_id]]
            assert back_in < 30
        finally:
            await fleet.stop_all()


async def test_a_killed_hub_is_shown_disconnected_and_comes_back_under_its_id(
    manager: RunningManager, real_hubs: HubFleet
):
    hub = await real_hubs.start("mortal", description="kill me")
    t0 = asyncio.get_running_loop().time()
    hub.kill(signal.SIGKILL)
    await real_hubs.wait_listed("mortal", active=False, timeout=15)
    assert asyncio.get_running_loop().time() - t0 <= 15

    # The same Hub started again (same id, key and folder) is accepted at once.
    again = RealHub(hub.hub_id, hub.home, hub.port, hub.argv)
    real_hubs.hubs.append(again)
    await again.start()
    listed = await real_hubs.wait_listed("mortal", timeout=20)
    assert listed["description"] == "kill me"
    assert [h["id"] for h in await manager.hubs()] == ["mortal"]


async def test_a_revoked_key_stops_every_real_hub_using_it(
    manager: RunningManager, real_hubs: HubFleet
):
    key = await manager.new_key("shared")
    other_key = await manager.new_key("other")
    hubs = [await real_hubs.start(name, key=key) for name in ("k-1", "k-2")]
    bystander = await real_hubs.start("k-3", key=other_key)
    keys = (await manager.client.get(f"/api/v1/space/{manager.world.space_id}/apikey")).json()
    shared = next(k for k in keys["accessKeys"] if k["description"] == "shared")
    resp = await manager.client.delete(
        f"/api/v1/space/{manager.world.space_id}/apikey",
        headers={"x-revoke": str(shared["created"])},
    )
    assert resp.status_code == 200, resp.text
    for hub in hubs:
        await real_hubs.wait_listed(hub.hub_id, active=False, timeout=5)

    # They stop retrying: no new connection attempt in 3 of their 2 s retry intervals.
    attempts = [hub.log().count("Connecting to Manager") for hub in hubs]
    await asyncio.sleep(6.5)
    assert [hub.log().count("Connecting to Manager") for hub in hubs] == attempts
    listed = {h["id"]: h for h in await manager.hubs()}
    assert not listed["k-1"]["isConnectionActive"] and not listed["k-2"]["isConnectionActive"]
    assert listed["k-3"]["isConnectionActive"] and listed["k-3"]["healthy"]
    assert bystander.proc is not None and bystander.proc.poll() is None
