"""A rolling restart of two replicas behind HAProxy (TCP mode, checking /readyz), under a
request loop to every Hub: each replica in turn gets SIGTERM, drains (not ready at once, its
tunnels closed over the window, so the Hubs rejoin the other replica), exits, and starts
again. No request to a Hub fails, and every Hub is back within 30 s."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import eventually
from tests.interop.sth import HubFleet
from tests.replicas.cluster import Cluster, cluster

HUBS = ("hub-a", "hub-b", "hub-c", "hub-d")


@pytest.fixture
async def two(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with cluster(tmp_path, 2) as c:
        yield c


async def test_rolling_restart_fails_no_request(two: Cluster, tmp_path: Path) -> None:
    c = two
    space = c.world.space_id
    fleet = HubFleet(c, tmp_path / "hubs")
    outcomes: Counter[str] = Counter()
    failures: list[str] = []
    stop = asyncio.Event()

    async def loop(hub: str) -> None:
        # A new connection per request: a kept-alive one is pinned by the balancer to the
        # replica it was opened to (TCP mode), and a client's keep-alive race with a closing
        # server is the client's to retry.
        limits = httpx.Limits(max_keepalive_connections=0)
        headers = {"Authorization": f"Bearer {c.token}"}
        async with httpx.AsyncClient(base_url=c.url, timeout=30, headers=headers, limits=limits) as client:  # fmt: skip
            while not stop.is_set():
                try:
                    r = await client.get(f"/api/v1/space/{space}/api/v1/sth/{hub}/api/v1/version")
                    ok = r.status_code == 200 and r.json().get("service") == "@scramjet/host"
                    detail = f"{r.status_code} {r.text[:200]}"
                except httpx.HTTPError as exc:
                    ok, detail = False, repr(exc)
                outcomes["ok" if ok else "failed"] += 1
                if not ok:
                    failures.append(f"{time.monotonic():.1f} {hub}: {detail}")
                await asyncio.sleep(0.02)

    try:
        await asyncio.gather(*(fleet.start(h) for h in HUBS))
        loops = [asyncio.create_task(loop(h)) for h in HUBS]
        await asyncio.sleep(2)
        restarts = []
        for i, replica in enumerate(c.replicas):
            t0 = time.monotonic()
            await asyncio.to_thread(replica.stop, "term")
            drained = time.monotonic() - t0
            await asyncio.to_thread(replica.start)

            async def all_back() -> bool:
                listed = {h["id"]: h for h in await c.hubs()}
                return all(listed[h]["isConnectionActive"] and listed[h]["healthy"] for h in HUBS)

            await eventually(all_back, f"every Hub back after restarting replica {i}", timeout=30)
            restarts.append((drained, time.monotonic() - t0))
            await asyncio.sleep(2)
        stop.set()
        await asyncio.gather(*loops)
    finally:
        stop.set()
        await fleet.stop_all()
    print(f"rolling restart: {dict(outcomes)}; per replica (drain s, back s): {restarts}")
    assert outcomes["ok"] > 100
    assert not failures, failures[:20]
