"""`space-manager serve --workers 2`: two processes on one port, replicas of each other on
PostgreSQL. Hubs spread over both through the kernel (SO_REUSEPORT), and every Hub answers
through the shared port whichever worker takes the request."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from manager.db import migrate
from tests.conftest import eventually, postgres_url
from tests.interop.peer import HubPeer
from tests.manager_process import BIN, ManagerProcess
from tests.replicas.cluster import PEER_SECRET

HUBS = 120


async def worker_holdings(db_url: str, space: str) -> dict[str, list[str]]:
    engine = create_async_engine(db_url)
    try:
        async with engine.connect() as conn:
            rows = (await conn.execute(text("SELECT id, peer_url FROM replicas"))).all()
    finally:
        await engine.dispose()
    out: dict[str, list[str]] = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for replica, peer_url in rows:
            resp = await client.get(
                f"{peer_url}/_peer/v1/spaces/{space}/hubs",
                headers={"x-manager-peer-secret": PEER_SECRET},
            )
            out[replica] = [h["id"] for h in resp.json()["hubs"]]
    return out


async def test_two_workers_share_the_port_and_every_hub(tmp_path: Path) -> None:
    url = postgres_url()
    await asyncio.to_thread(migrate.downgrade, url, "base")
    proc = ManagerProcess(
        tmp_path / "data",
        env={"MANAGER_DATABASE_URL": url, "MANAGER_PEER_SECRET": PEER_SECRET},
        args=("--workers", "2"),
    )
    await asyncio.to_thread(proc.start)
    peers = None
    try:
        token = proc.token()
        assert token, proc.stdout
        headers = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=proc.url, timeout=30, headers=headers) as client:
            space = (await client.get("/api/v1/spaces")).json()[0]["id"]
            key = (await client.post(f"/api/v1/space/{space}/apikey", json={})).json()["accessKey"]

            async def both_up() -> bool:  # the first worker up answers before the other
                return len(await worker_holdings(url, space)) == 2

            await eventually(both_up, "both workers registered", timeout=30)
            peers = await HubPeer.start(
                proc.url, space, key, "--id", "w", "--count", str(HUBS), "--same-proof",
                "--load-interval", "2000",
            )  # fmt: skip

            async def all_listed() -> bool:
                resp = await client.get(f"/api/v1/space/{space}/api/v1/list")
                active = [h for h in resp.json() if h["isConnectionActive"] and h["healthy"]]
                return len(active) == HUBS

            await eventually(all_listed, f"{HUBS} Hubs listed, on any worker", timeout=60)
            held = await worker_holdings(url, space)
            assert len(held) == 2, held
            assert all(held.values()), (
                f"one worker holds every Hub: { {k: len(v) for k, v in held.items()} }"
            )
            assert sum(len(v) for v in held.values()) == HUBS
            for i in range(0, HUBS, 7):
                resp = await client.get(f"/api/v1/space/{space}/api/v1/sth/w-{i}/api/v1/version")
                assert resp.status_code == 200, resp.text
        assert proc.proc is not None
        proc.proc.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(proc.proc.wait, 60) == 0
    finally:
        if peers is not None:
            await peers.stop()
        await asyncio.to_thread(proc.stop)


def test_workers_need_postgresql(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(BIN), "--data-dir", str(tmp_path), "serve", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert done.returncode != 0
    assert "--workers 2 needs PostgreSQL" in done.stderr
    assert "Traceback" not in done.stderr


pytestmark = pytest.mark.filterwarnings("ignore::ResourceWarning")
