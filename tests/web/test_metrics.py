"""`/api/v1/metrics`: what an operator scrapes; platform admins only (it counts every Space)."""

from __future__ import annotations

import asyncio

import httpx
from prometheus_client.parser import text_string_to_metric_families

from manager.services.context import Services
from manager.services.metrics import CONTENT_TYPE
from manager.services.tokens import TokenService
from manager.web.metrics_port import start_metrics_server
from tests.conftest import SQLITE_ONLY, World, bearer, free_port


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


@SQLITE_ONLY
async def test_metrics_port_serves_metrics_without_a_token(svc: Services):
    port = free_port()
    server = await start_metrics_server("127.0.0.1", port, svc.metrics.render)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            resp = await client.get("/metrics")
            assert resp.status_code == 200
            assert resp.headers["content-type"] == CONTENT_TYPE
            names = {f.name for f in text_string_to_metric_families(resp.text)}
            assert {"manager_hubs_connected", "manager_draining"} <= names
            assert (await client.get("/api/v1/spaces")).status_code == 404
            assert (await client.post("/metrics")).status_code == 405
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"\x00not http\r\n\r\n")
        assert await asyncio.wait_for(reader.read(), 5) == b""  # dropped, no trace
        writer.close()
    finally:
        server.close()
        await server.wait_closed()
