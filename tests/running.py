"""A real uvicorn manager in the test's own event loop, so tests can reach its internals."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from manager.services.context import Services
from manager.web.server import build_config
from tests.conftest import World, bearer


class SpaceCalls:
    """The default Space's calls the tests make, over `client` (admin token)."""

    client: httpx.AsyncClient
    world: Any  # anything with a `space_id`

    async def new_key(self, description: str = "interop") -> str:
        resp = await self.client.post(
            f"/api/v1/space/{self.world.space_id}/apikey", json={"description": description}
        )
        assert resp.status_code == 200, resp.text
        return str(resp.json()["accessKey"])

    async def hubs(self) -> list[dict]:
        resp = await self.client.get(f"/api/v1/space/{self.world.space_id}/api/v1/list")
        assert resp.status_code == 200
        return list(resp.json())

    async def hub(self, hub_id: str) -> dict:
        resp = await self.client.get(
            f"/api/v1/space/{self.world.space_id}/api/v1/sth/{hub_id}/info"
        )
        assert resp.status_code == 200, resp.text
        return dict(resp.json())


@dataclass
class RunningManager(SpaceCalls):
    svc: Services
    world: World
    url: str
    client: httpx.AsyncClient


@pytest.fixture
async def manager(svc: Services, world: World) -> AsyncIterator[RunningManager]:
    svc.registry.healthy_after_s = 15.0
    server = uvicorn.Server(build_config(svc, own_services=False))
    task = asyncio.get_running_loop().create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    url = f"http://127.0.0.1:{svc.settings.port}"
    async with httpx.AsyncClient(base_url=url, headers=bearer(world.admin), timeout=30) as client:
        yield RunningManager(svc, world, url, client)
    server.should_exit = True
    done, _ = await asyncio.wait({task}, timeout=15)
    if not done:
        # Say where the shutdown hangs before failing: every task's stack.
        where = io.StringIO()
        for other in asyncio.all_tasks():
            other.print_stack(limit=8, file=where)
        task.cancel()
        pytest.fail(f"the manager did not stop within 15 s; tasks:\n{where.getvalue()}")
    task.result()
