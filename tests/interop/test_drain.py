"""SIGTERM drains a `space-manager serve` process before it exits, with real-packages Hub
peers joined and requests running (manager/services/drain.py says why and how):

- /readyz turns 503 at once while /healthz answers 200 until the server stops listening;
- a slow proxied stream already running finishes whole;
- the tunnels close one by one over the drain window, not in one instant;
- the process exits 0 within grace + window + a little;
- and, logging as JSON, every line of its log is one JSON object, with one line at the
  drain's start and one at its end.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from tests.interop.peer import HubPeer, join_hub
from tests.manager_process import ManagerProcess, ProcessManager

GRACE_S = 8.0
WINDOW_S = 3.0
SLACK_S = 10.0
TICKS = 20  # the slow stream: one line every 200 ms, ~4 s in all


async def probe(url: str) -> int | None:
    """One probe on a fresh connection (as a kubelet does); None if nothing answered."""
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url)).status_code
    except httpx.TransportError:
        return None


def log_lines(manager: ManagerProcess) -> list[dict]:
    lines = [line for line in manager.logs().splitlines() if line.strip()]
    return [json.loads(line) for line in lines]  # each one must be a JSON object


def at(line: dict) -> float:
    return datetime.fromisoformat(line["time"].replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(120)
async def test_sigterm_drains_then_exits_0(tmp_path: Path, monkeypatch):
    monkeypatch.delenv("MANAGER_DATABASE_URL", raising=False)
    env = {
        "MANAGER_LOG_FORMAT": "json",
        "MANAGER_DRAIN_GRACE_S": str(GRACE_S),
        "MANAGER_DRAIN_WINDOW_S": str(WINDOW_S),
    }
    proc = ManagerProcess(tmp_path / "data", env=env)
    await asyncio.to_thread(proc.start)
    peers: list[HubPeer] = []
    token = proc.token()
    assert token
    client = httpx.AsyncClient(
        base_url=proc.url, timeout=30, headers={"Authorization": f"Bearer {token}"}
    )
    try:
        space = (await client.get("/api/v1/spaces")).json()[0]["id"]
        manager = ProcessManager(proc, client, space)
        for hub_id in ("d1", "d2", "d3"):
            peers.append(await join_hub(manager, hub_id))
        hub_api = f"/api/v1/space/{space}/api/v1/sth"

        async def slow_stream() -> tuple[int, list[str]]:
            url = f"{hub_api}/d1/api/v1/echo/stream?interval=200&count={TICKS}"
            async with client.stream("GET", url) as resp:
                return resp.status_code, [line async for line in resp.aiter_lines() if line]

        statuses: list[int] = []

        async def request_loop() -> None:
            async with httpx.AsyncClient(
                base_url=proc.url, timeout=10, headers=client.headers
            ) as c:
                while proc.proc is not None and proc.proc.poll() is None:
                    with contextlib.suppress(httpx.TransportError):
                        statuses.append((await c.get(f"{hub_api}/d2/api/v1/version")).status_code)
                    await asyncio.sleep(0.02)

        slow = asyncio.create_task(slow_stream())
        loop = asyncio.create_task(request_loop())
        await asyncio.sleep(0.5)
        assert not slow.done() and statuses and set(statuses) == {200}

        assert proc.proc is not None
        proc.send("term")
        sent = time.time()
        health: list[tuple[float, int | None]] = []
        ready: list[tuple[float, int | None]] = []
        while proc.proc.poll() is None and time.time() - sent < GRACE_S + WINDOW_S + SLACK_S:
            health.append((time.time() - sent, await probe(f"{proc.url}/healthz")))
            ready.append((time.time() - sent, await probe(f"{proc.url}/readyz")))
            await asyncio.sleep(0.1)
        rc = await asyncio.to_thread(proc.proc.wait, 5)
        took = time.time() - sent

        assert rc == 0
        assert took < GRACE_S + WINDOW_S + SLACK_S
        # Not ready from the first probe on; alive (every answer 200) until it stops listening.
        assert ready[0][1] == 503, ready[:3]
        assert {s for _, s in ready} <= {503, None}
        assert {s for _, s in health} <= {200, None}
        answered = [t for t, s in health if s == 200]
        assert answered and answered[-1] > WINDOW_S * 0.9, health
        first_gone = next((t for t, s in health if s is None), took)
        assert all(t < first_gone for t in answered), "healthz came back after going away"

        status, ticks = await asyncio.wait_for(slow, 10)
        assert status == 200 and len(ticks) == TICKS, ticks  # finished whole
        await loop
        assert 200 in statuses

        lines = log_lines(proc)
        closes = {
            line["hub"]: at(line)
            for line in lines
            if "disconnected: manager draining" in line["message"]
        }
        assert set(closes) == {"d1", "d2", "d3"}, closes
        spread = max(closes.values()) - min(closes.values())
        assert spread > WINDOW_S / 3, closes  # one by one, not in one instant
        assert closes["d1"] - sent > 3.0  # d1 waited for its stream (~4 s after the start)
        started = [line for line in lines if line["message"].startswith("drain started")]
        finished = [line for line in lines if line["message"].startswith("drain finished")]
        assert len(started) == 1 and "3 tunnels" in started[0]["message"]
        assert len(finished) == 1 and "3 tunnels closed" in finished[0]["message"]
        assert {line["replica"] for line in lines} == {f"{socket.gethostname()}:{proc.port}"}
    finally:
        await client.aclose()
        for peer in peers:
            await peer.stop()
        await asyncio.to_thread(proc.stop)
