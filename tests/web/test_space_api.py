"""Space-level read endpoints in the shapes of space-api.md §3.5, and the URL quirks of §1.7."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import World, bearer


def space(world: World, path: str) -> str:
    return f"/api/v1/space/{world.space_id}/api/v1/{path}"


async def test_versions(api: httpx.AsyncClient, world: World):
    top = (await api.get("/api/v1/version", headers=bearer(world.admin))).json()
    assert top["service"] == "@scramjet/middleware" and top["apiVersion"] == "v1"
    sp = (await api.get(space(world, "version"), headers=bearer(world.admin))).json()
    assert sp["service"] == "@scramjet/manager"
    assert set(sp) == {"service", "apiVersion", "version", "build"}


async def test_empty_space_views(api: httpx.AsyncClient, world: World):
    h = bearer(world.admin)
    for path in ("list", "sequences", "instances", "topics"):
        resp = await api.get(space(world, path), headers=h)
        assert resp.status_code == 200 and resp.json() == [], path
    load = (await api.get(space(world, "load"), headers=h)).json()
    assert load["memFree"] == 0 and load["fsSize"] == [] and load["hubs"] == {}
    assert (await api.get(space(world, "load-check"), headers=h)).json() == load
    assert (await api.get(space(world, "entities"), headers=h)).json() == {
        "hubs": [],
        "topics": [],
        "sequences": [],
        "instances": [],
    }
    cfg = (await api.get(space(world, "config"), headers=h)).json()
    assert cfg["config"]["id"] == world.space_id
    health = (await api.get(space(world, "health"), headers=h)).json()
    assert health["uptime"] >= 0 and isinstance(health["timestamp"], int)


async def test_unknown_hub_info(api: httpx.AsyncClient, world: World):
    resp = await api.get(space(world, "sth/sth-9/info"), headers=bearer(world.admin))
    assert resp.status_code == 404
    assert resp.json() == {"error": "Hub sth-9 not found"}


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/nothing-here",
        "/api/v1/space/{space}/api/v1/nothing",
        "/api/v1/space/api/v1/sth/api/v1/sequences",
        "/api/v1/space//api/v1/sth//api/v1/sequences",
        "/elsewhere",
    ],
)
async def test_unknown_paths_are_json_4xx(api: httpx.AsyncClient, world: World, path):
    resp = await api.get(path.format(space=world.space_id), headers=bearer(world.admin))
    assert 400 <= resp.status_code < 500
    assert resp.headers["content-type"] == "application/json"
    assert "error" in resp.json() or resp.json() == {"message": "Forbidden"}


async def test_double_slashes_and_junk_queries(api: httpx.AsyncClient, world: World):
    h = bearer(world.admin)
    resp = await api.get(f"/api/v1//space/{world.space_id}//api/v1/list?parse=stream", headers=h)
    assert resp.status_code == 200 and resp.json() == []
    resp = await api.get(space(world, "version") + "?%7B%22json%22%3Atrue%7D", headers=h)
    assert resp.status_code == 200


async def test_wrong_method_is_json_405(api: httpx.AsyncClient, world: World):
    resp = await api.post(space(world, "list"), headers=bearer(world.admin))
    assert resp.status_code == 405
    assert resp.json() == {"error": "Method Not Allowed"}
    resp = await api.put("/api/v1/spaces", headers=bearer(world.admin))
    assert resp.status_code == 405


async def test_non_utf8_header_bytes(api: httpx.AsyncClient, world: World):
    headers = [
        (b"authorization", f"Bearer {world.admin.token}".encode()),
        (b"x-sth-description", b"caf\xe9 \xff\xfe"),
    ]
    resp = await api.get("/api/v1/spaces", headers=headers)
    assert resp.status_code == 200
    bad_auth = [(b"authorization", b"Bearer \xff\xfe\xfd.a.b")]
    resp = await api.get("/api/v1/spaces", headers=bad_auth)
    assert resp.status_code == 403 and resp.json() == {"message": "Forbidden"}
