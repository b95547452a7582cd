"""`/healthz` and `/readyz`: no token, nothing leaked, the failing check named; and the
readiness checks themselves (a `lease` check is one `add` away)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from manager.config import Settings
from manager.services.context import Services
from manager.services.readiness import Readiness
from manager.web.app import create_app
from tests.conftest import free_port


async def test_healthy_and_ready_without_a_token(api: httpx.AsyncClient):
    resp = await api.get("/healthz")
    assert resp.status_code == 200 and resp.json() == {"alive": True}
    resp = await api.get("/readyz")
    assert resp.status_code == 200 and resp.json() == {"ready": True}
    assert resp.headers["x-request-id"]


async def test_draining_is_not_ready_but_alive(api: httpx.AsyncClient, svc: Services):
    svc.drain.start()
    resp = await api.get("/readyz")
    assert resp.status_code == 503
    assert resp.json() == {"ready": False, "failing": ["draining"]}
    assert (await api.get("/healthz")).status_code == 200


@pytest.fixture(
    params=[
        "postgresql+asyncpg://nobody:secret-pw@127.0.0.1:{port}/gone",
        "sqlite+aiosqlite:///{tmp}/no/such/folder/manager.db",
    ],
    ids=["postgres-closed-port", "sqlite-unreachable"],
)
async def unreachable(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    yield request.param.format(port=free_port(), tmp=tmp_path)


async def test_database_down_is_not_ready_and_says_only_which(unreachable: str, tmp_path: Path):
    settings = Settings(data_dir=tmp_path / "data", database_url=unreachable, port=free_port())
    svc = Services.build(settings)
    try:
        transport = httpx.ASGITransport(app=create_app(svc))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            resp = await client.get("/readyz")
            assert resp.status_code == 503
            assert resp.json() == {"ready": False, "failing": ["database"]}
            for leak in ("127.0.0.1", "nobody", "secret-pw", "sqlite", "Error", str(tmp_path)):
                assert leak not in resp.text
            health = await client.get("/healthz")
            assert health.status_code == 200 and health.json() == {"alive": True}
    finally:
        await svc.aclose()
        await _aiosqlite_threads_done()


async def _aiosqlite_threads_done() -> None:
    """A failed aiosqlite connect stops its worker thread a moment later, and that thread
    reports to the event loop: let it, before the test's loop closes."""
    for _ in range(200):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)


async def test_a_check_registered_later_counts_by_name():
    readiness = Readiness()
    lease = {"held": True}

    async def ok() -> bool:
        return True

    async def lease_held() -> bool:
        return lease["held"]

    readiness.add("database", ok)
    readiness.add("lease", lease_held)
    assert await readiness.failing() == []
    lease["held"] = False
    assert await readiness.failing() == ["lease"]
    with pytest.raises(ValueError, match="lease"):
        readiness.add("lease", ok)


async def test_raising_or_slow_checks_fail_and_cached_results_are_reused(monkeypatch):
    monkeypatch.setattr("manager.services.readiness.CHECK_TIMEOUT_S", 0.05)
    now = [0.0]
    readiness = Readiness(clock=lambda: now[0])
    calls = []

    async def broken() -> bool:
        calls.append("broken")
        raise OSError("connection refused to db.internal:5432")

    async def slow() -> bool:
        await asyncio.sleep(1)
        return True

    readiness.add("broken", broken, cache_s=1.0)
    readiness.add("slow", slow)
    assert await readiness.failing() == ["broken", "slow"]
    assert await readiness.failing() == ["broken", "slow"]
    assert calls == ["broken"]  # the second ask used the cached answer
    now[0] = 2.0
    await readiness.failing()
    assert calls == ["broken", "broken"]
