"""Access keys over the API (space-api.md M4–M7): five live keys, shown once, revocable."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import World, bearer


def _keys_url(world: World) -> str:
    return f"/api/v1/space/{world.space_id}/apikey"


async def _create(api: httpx.AsyncClient, world: World, description: str) -> httpx.Response:
    return await api.post(
        _keys_url(world), json={"description": description}, headers=bearer(world.admin)
    )


async def test_five_keys_then_409_and_list_hides_values(api: httpx.AsyncClient, world: World):
    made = []
    for i in range(5):
        resp = await _create(api, world, f"  key {i}  ")
        assert resp.status_code == 200, resp.text
        body = resp.json()
        assert body["description"] == f"key {i}"
        assert isinstance(body["created"], int)
        assert body["accessKey"].startswith("SCP-ak-") and len(body["accessKey"]) > 40
        made.append(body)
    assert len({m["created"] for m in made}) == 5

    sixth = await _create(api, world, "one too many")
    assert sixth.status_code == 409
    assert "5 access keys" in sixth.json()["error"]

    listed = await api.get(_keys_url(world), headers=bearer(world.admin))
    assert listed.status_code == 200
    keys = listed.json()["accessKeys"]
    assert keys == [{"created": m["created"], "description": m["description"]} for m in made]
    assert not any(m["accessKey"] in listed.text for m in made)


async def test_revoke_by_created_by_value_and_all(api: httpx.AsyncClient, world: World):
    a = (await _create(api, world, "a")).json()
    b = (await _create(api, world, "b")).json()
    c = (await _create(api, world, "c")).json()

    resp = await api.delete(
        _keys_url(world), headers={**bearer(world.admin), "x-revoke": str(a["created"])}
    )
    assert resp.status_code == 200
    assert resp.json()["keysRevoked"] == 1

    resp = await api.delete(
        _keys_url(world), headers={**bearer(world.admin), "x-revoke": b["accessKey"]}
    )
    assert resp.status_code == 200

    again = await api.delete(
        _keys_url(world), headers={**bearer(world.admin), "x-revoke": str(a["created"])}
    )
    assert again.status_code == 404
    assert again.json() == {"error": "Access key not found"}

    listed = (await api.get(_keys_url(world), headers=bearer(world.admin))).json()
    assert [k["created"] for k in listed["accessKeys"]] == [c["created"]]

    resp = await api.delete(
        _keys_url(world), headers={**bearer(world.admin), "x-revoke-all": "true"}
    )
    assert resp.json()["keysRevoked"] == 1
    assert (await api.get(_keys_url(world), headers=bearer(world.admin))).json() == {
        "accessKeys": []
    }
    # Revoked keys free their slots.
    for i in range(5):
        assert (await _create(api, world, f"new {i}")).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "Malformed JSON"),
        (b'{"description": "' + b"x" * 1001 + b'"}', 400, "longer than 1000"),
        (b'{"description": 5}', 400, "must be a string"),
        (b"[1,2]", 400, "JSON object"),
        (b"x" * (70 * 1024), 413, "larger than"),
    ],
)
async def test_bad_create_bodies(api: httpx.AsyncClient, world: World, body, status, needle):
    resp = await api.post(
        _keys_url(world),
        content=body,
        headers={**bearer(world.admin), "content-type": "application/json"},
    )
    assert resp.status_code == status
    assert needle in resp.json()["error"]
    listed = (await api.get(_keys_url(world), headers=bearer(world.admin))).json()
    assert listed == {"accessKeys": []}


async def test_revoke_needs_a_header(api: httpx.AsyncClient, world: World):
    resp = await api.delete(_keys_url(world), headers=bearer(world.admin))
    assert resp.status_code == 400
    assert "x-revoke" in resp.json()["error"]


async def test_other_orgs_cannot_touch_keys(api: httpx.AsyncClient, world: World):
    made = (await _create(api, world, "mine")).json()
    other = bearer(world.other_user)
    for method, extra in (
        ("GET", {}),
        ("POST", {}),
        ("DELETE", {"x-revoke": str(made["created"])}),
    ):
        resp = await api.request(method, _keys_url(world), headers={**other, **extra}, json={})
        assert resp.status_code == 403
        assert resp.json() == {"message": "Forbidden"}
    assert (
        len((await api.get(_keys_url(world), headers=bearer(world.admin))).json()["accessKeys"])
        == 1
    )
