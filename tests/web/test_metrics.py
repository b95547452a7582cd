"""`/api/v1/metrics`: what an operator scrapes; platform admins only (it counts every Space)."""

from __future__ import annotations

import httpx

from manager.services.context import Services
from manager.services.tokens import TokenService
from tests.conftest import SQLITE_ONLY, World, bearer


@SQLITE_ONLY
async def test_metrics_for_admins_only(api: httpx.AsyncClient, svc: Services, world: World):
    resp = await api.get("/api/v1/metrics", headers=bearer(world.admin))
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in resp.text.splitlines()
        if line and not line.startswith("#")
    }
    assert values["manager_hubs_connected"] == 0
    assert values["manager_scrypt_runs_total"] == 0
    assert values["manager_asyncio_tasks"] >= 1
    assert values["manager_open_fds"] > 0
    assert values["manager_resident_memory_bytes"] > 10 * 1024 * 1024
    assert "# TYPE manager_scrypt_runs_total counter" in resp.text

    async with svc.sessions() as s, s.begin():
        user = await TokenService.create(s, world.org_id, name="not an admin")
    for headers in (bearer(user), bearer(world.other_user), {}):
        resp = await api.get("/api/v1/metrics", headers=headers)
        assert resp.status_code == 403
        assert resp.json() == {"message": "Forbidden"}
