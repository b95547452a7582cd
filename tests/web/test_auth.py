"""Bearer tokens: JWT-shaped, hashed at rest, 403 {"message":"Forbidden"} for anything else."""

from __future__ import annotations

import base64
import json
import re

import httpx
import pytest

from manager.services.context import Services
from manager.services.tokens import TokenService, token_id_of
from tests.conftest import World, bearer

FORBIDDEN = {"message": "Forbidden"}
JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+$")


def test_tokens_are_jwt_shaped(world: World):
    token = world.admin.token
    assert JWT_SHAPE.match(token)
    head = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert head["kid"] == world.admin.token_id
    assert token_id_of(token) == world.admin.token_id


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer aaa.bbb.ccc"},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Bearer e30.e30.e30"},
    ],
)
async def test_missing_or_bad_tokens_are_forbidden(api: httpx.AsyncClient, world: World, headers):
    for path in (
        "/api/v1/spaces",
        "/api/v1/version",
        f"/api/v1/space/{world.space_id}/api/v1/list",
    ):
        resp = await api.get(path, headers=headers)
        assert resp.status_code == 403
        assert resp.json() == FORBIDDEN
        assert resp.headers["content-type"] == "application/json"


async def test_wrong_secret_with_a_real_token_id(api: httpx.AsyncClient, world: World):
    head, payload, _sig = world.admin.token.split(".")
    forged = f"{head}.{payload}.{'A' * 43}"
    resp = await api.get("/api/v1/spaces", headers=bearer(forged))
    assert resp.status_code == 403


async def test_revoked_token_is_forbidden(api: httpx.AsyncClient, svc: Services, world: World):
    assert (await api.get("/api/v1/spaces", headers=bearer(world.other_user))).status_code == 200
    async with svc.sessions() as s, s.begin():
        await TokenService.revoke(s, world.other_user.token_id)
    svc.tokens.forget_cache()
    resp = await api.get("/api/v1/spaces", headers=bearer(world.other_user))
    assert resp.status_code == 403
    assert resp.json() == FORBIDDEN


async def test_spaces_lists_own_org_first(api: httpx.AsyncClient, world: World):
    mine = (await api.get("/api/v1/spaces", headers=bearer(world.other_user))).json()
    assert [s["id"] for s in mine] == [world.other_space_id]
    admin = (await api.get("/api/v1/spaces", headers=bearer(world.admin))).json()
    assert admin[0]["id"] == world.space_id
    assert {s["id"] for s in admin} == {world.space_id, world.other_space_id}


@pytest.mark.parametrize("suffix", ["version", "list", "sequences", "instances", "config"])
async def test_other_org_and_unknown_spaces_look_alike(
    api: httpx.AsyncClient, world: World, suffix
):
    user = bearer(world.other_user)
    foreign = await api.get(f"/api/v1/space/{world.space_id}/api/v1/{suffix}", headers=user)
    unknown = await api.get(f"/api/v1/space/org-nope-manager/api/v1/{suffix}", headers=user)
    assert foreign.status_code == unknown.status_code == 403
    assert foreign.json() == unknown.json() == FORBIDDEN


async def test_admin_gets_404_for_unknown_space(api: httpx.AsyncClient, world: World):
    resp = await api.get("/api/v1/space/org-nope-manager/api/v1/list", headers=bearer(world.admin))
    assert resp.status_code == 404
    assert resp.json() == {"error": "Space org-nope-manager not found"}
