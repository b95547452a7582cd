"""Every HTTP route × every kind of bad credential → 403 {"message":"Forbidden"}; another
organization's token gets the same answer for every route of a Space it does not own."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from starlette.routing import BaseRoute, Mount, Route

from manager.services.context import Services
from manager.services.tokens import TokenService
from manager.web.app import create_app
from tests.conftest import SQLITE_ONLY, World, bearer

FORBIDDEN = {"message": "Forbidden"}
PARAMS = {
    "space": "{space}",
    "hub": "h1",
    "id": "x1",
    "name": "t1",
    "bucket": "b",
    "file": "f.tar.gz",
    "rest": "version",
    "org": "o",
}
PUBLIC = {"/", "/healthz"}


def _walk(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    for route in routes:
        if isinstance(route, Mount):
            yield from _walk(list(route.routes), prefix + route.path)
        elif isinstance(route, Route):
            path = prefix + route.path
            if path in PUBLIC:
                continue
            concrete = re.sub(r"\{(\w+)(:\w+)?\}", lambda m: PARAMS[m.group(1)], path)
            for method in sorted(route.methods or {"GET", "POST", "PUT", "DELETE"}):
                if method != "HEAD":
                    yield method, concrete


def all_routes() -> list[tuple[str, str]]:
    from manager.web import platform_routes, space_routes

    return sorted(set(_walk([*platform_routes.routes, *space_routes.routes])))


ROUTES = all_routes()


def test_the_matrix_covers_the_api():
    paths = {p for _, p in ROUTES}
    assert "/api/v1/spaces" in paths
    assert "/api/v1/space/{space}/api/v1/sth/h1/api/v1/version" in paths
    assert len(ROUTES) > 30


@SQLITE_ONLY
@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_bad_credentials_are_forbidden_everywhere(svc: Services, world: World, method, path):
    async with svc.sessions() as s, s.begin():
        revoked = await TokenService.create(s, world.org_id, name="to revoke")
    async with svc.sessions() as s, s.begin():
        await TokenService.revoke(s, revoked.token_id)
    head, payload, _ = world.admin.token.split(".")
    credentials = {
        "none": {},
        "malformed": {"Authorization": "Bearer not-a-jwt"},
        "empty": {"Authorization": "Bearer "},
        "basic": {"Authorization": "Basic YTpi"},
        "wrong": {"Authorization": f"Bearer {head}.{payload}.{'A' * 43}"},
        "revoked": bearer(revoked),
        "other org": bearer(world.other_user),
    }
    url = path.format(space=world.space_id)
    transport = httpx.ASGITransport(app=create_app(svc))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        for name, headers in credentials.items():
            if name == "other org" and not url.startswith("/api/v1/space/"):
                continue  # middleware-level routes are the caller's own
            resp = await client.request(method, url, headers=headers, content=b"{}")
            assert resp.status_code == 403, (name, method, url, resp.text)
            assert resp.json() == FORBIDDEN, (name, method, url)
