"""Plans over the admin API (in-process app, SQLite and PostgreSQL): admins only, values
checked with clear 400s, Space creation over the org's plan → 409 naming plan and limit,
`GET …/config` shows each limit with its usage, refusals counted in the metrics."""

from __future__ import annotations

import httpx

from manager.web.rate_limit import TokenBuckets
from tests.conftest import World, bearer


async def test_only_admins_manage_plans(api: httpx.AsyncClient, world: World):
    user = bearer(world.other_user)
    assert (await api.get("/api/v1/plans", headers=user)).status_code == 403
    assert (await api.post("/api/v1/plans", headers=user, json={"name": "x"})).status_code == 403
    resp = await api.put(f"/api/v1/org/{world.other_org_id}/plan", headers=user, json={})
    assert resp.status_code == 403
    resp = await api.put(
        f"/api/v1/space/{world.other_space_id}/limits", headers=user, json={"hubsPerSpace": 9}
    )
    assert resp.status_code == 403
    resp = await api.patch("/api/v1/plans/default", headers=user, json={"hubsPerSpace": 9})
    assert resp.status_code == 403


async def test_plans_are_created_listed_and_changed(api: httpx.AsyncClient, world: World):
    h = bearer(world.admin)
    listed = (await api.get("/api/v1/plans", headers=h)).json()["plans"]
    assert listed == [
        {
            "name": "default",
            "hubsPerSpace": None,
            "spacesPerOrg": None,
            "storeBytesPerSpace": None,
            "requestsPerSecond": None,
            "burst": None,
        }
    ]
    made = await api.post(
        "/api/v1/plans", headers=h, json={"name": "small", "hubsPerSpace": 1, "burst": 4}
    )
    assert made.status_code == 201, made.text
    assert made.json()["hubsPerSpace"] == 1 and made.json()["burst"] == 4
    again = await api.post("/api/v1/plans", headers=h, json={"name": "small"})
    assert again.status_code == 409
    changed = await api.patch(
        "/api/v1/plans/small", headers=h, json={"hubsPerSpace": "unlimited", "spacesPerOrg": 2}
    )
    assert changed.status_code == 200
    assert changed.json()["hubsPerSpace"] is None and changed.json()["spacesPerOrg"] == 2
    assert changed.json()["burst"] == 4  # untouched
    names = [p["name"] for p in (await api.get("/api/v1/plans", headers=h)).json()["plans"]]
    assert names == ["default", "small"]


async def test_bad_values_get_clear_400s(api: httpx.AsyncClient, world: World):
    h = bearer(world.admin)
    cases = [
        ({"name": "Big Plan"}, "plan name"),
        ({"name": "p", "hubsPerSpace": -1}, "hubsPerSpace must be between 0"),
        ({"name": "p", "requestsPerSecond": 0}, "requestsPerSecond must be between 1"),
        ({"name": "p", "spacesPerOrg": True}, "spacesPerOrg must be a whole number"),
        ({"name": "p", "storeBytesPerSpace": 2**70}, "storeBytesPerSpace must be between"),
        ({"name": "p", "hubs": 1}, "unknown limit 'hubs'"),
        ({"name": "p", "burst": "4"}, "burst must be a whole number"),  # JSON: a number
        ({"name": "p\n"}, "plan name"),
    ]
    for body, text in cases:
        resp = await api.post("/api/v1/plans", headers=h, json=body)
        assert resp.status_code == 400, (body, resp.text)
        assert text in resp.json()["error"], resp.json()
    resp = await api.post("/api/v1/plans", headers=h, json=[1])
    assert resp.status_code == 400
    resp = await api.patch("/api/v1/plans/nope", headers=h, json={"hubsPerSpace": 1})
    assert resp.status_code == 404
    space_limits = f"/api/v1/space/{world.space_id}/limits"
    resp = await api.put(space_limits, headers=h, json={"spacesPerOrg": 1})
    assert resp.status_code == 400 and "unknown limit" in resp.json()["error"]
    resp = await api.put(space_limits, headers=h, json={"hubsPerSpace": None})
    assert resp.status_code == 400 and "'plan'" in resp.json()["error"]
    resp = await api.put(f"/api/v1/org/{world.org_id}/plan", headers=h, json={"plan": "nope"})
    assert resp.status_code == 404 and resp.json() == {"error": "Plan nope not found"}
    resp = await api.put("/api/v1/org/org-nope/plan", headers=h, json={"plan": "default"})
    assert resp.status_code == 404


async def test_a_space_over_the_orgs_plan_is_a_409_naming_plan_and_limit(
    api: httpx.AsyncClient, world: World
):
    h = bearer(world.admin)
    user = bearer(world.other_user)
    await api.post("/api/v1/plans", headers=h, json={"name": "duo", "spacesPerOrg": 2})
    resp = await api.put(f"/api/v1/org/{world.other_org_id}/plan", headers=h, json={"plan": "duo"})
    assert resp.status_code == 200 and resp.json()["plan"]["name"] == "duo"

    made = await api.post("/api/v1/spaces", headers=user, json={"name": "second"})
    assert made.status_code == 200, made.text
    assert made.json()["orgId"] == world.other_org_id and made.json()["name"] == "second"
    over = await api.post("/api/v1/spaces", headers=user, json={"name": "third"})
    assert over.status_code == 409
    body = over.json()
    assert body["plan"] == "duo" and body["limit"] == "spacesPerOrg" and body["max"] == 2
    assert body["used"] == 2
    assert "spacesPerOrg 2 of plan 'duo'" in body["error"]
    spaces = (await api.get("/api/v1/spaces", headers=user)).json()
    assert len(spaces) == 2  # nothing made

    # A user cannot create in another org; the admin can, and the admin's org is unlimited.
    resp = await api.post("/api/v1/spaces", headers=user, json={"orgId": world.org_id})
    assert resp.status_code == 403
    resp = await api.post("/api/v1/spaces", headers=h, json={"orgId": world.org_id})
    assert resp.status_code == 200

    # Raising the limit lets the next one in.
    await api.patch("/api/v1/plans/duo", headers=h, json={"spacesPerOrg": 3})
    assert (await api.post("/api/v1/spaces", headers=user, json={})).status_code == 200

    metrics = (await api.get("/api/v1/metrics", headers=h)).text
    assert 'manager_limit_refusals_total{limit="spacesPerOrg"} 1' in metrics
    assert 'manager_limit_refusals_total{limit="hubsPerSpace"} 0' in metrics


async def test_config_shows_each_limit_and_its_usage(api: httpx.AsyncClient, world: World):
    h = bearer(world.admin)
    url = f"/api/v1/space/{world.space_id}/api/v1/config"
    config = (await api.get(url, headers=h)).json()["config"]
    assert config["hubLimit"] == 0  # as before plans: none
    limits = config["limits"]
    assert limits["plan"] == "default"
    assert limits["hubsPerSpace"] == {"limit": None, "used": 0, "source": "plan"}
    assert limits["spacesPerOrg"] == {"limit": None, "used": 1, "source": "plan"}
    assert limits["accessKeys"] == {"limit": 5, "used": 0, "source": "fixed"}

    await api.post(
        "/api/v1/plans",
        headers=h,
        json={
            "name": "pro",
            "hubsPerSpace": 10,
            "storeBytesPerSpace": 5000,
            "requestsPerSecond": 7,
        },
    )
    await api.put(f"/api/v1/org/{world.org_id}/plan", headers=h, json={"plan": "pro"})
    await api.post(f"/api/v1/space/{world.space_id}/apikey", headers=h, json={})
    resp = await api.put(
        f"/api/v1/space/{world.space_id}/limits", headers=h, json={"hubsPerSpace": 3}
    )
    assert resp.json()["hubsPerSpace"] == {"limit": 3, "source": "space"}
    limits = (await api.get(url, headers=h)).json()["config"]["limits"]
    assert limits["plan"] == "pro"
    assert limits["hubsPerSpace"] == {"limit": 3, "used": 0, "source": "space"}
    assert limits["storeBytesPerSpace"] == {"limit": 5000, "used": 0, "source": "plan"}
    assert limits["requestsPerSecond"] == {"limit": 7, "source": "plan"}
    assert limits["accessKeys"]["used"] == 1

    # Back to the plan's value.
    resp = await api.put(
        f"/api/v1/space/{world.space_id}/limits", headers=h, json={"hubsPerSpace": "plan"}
    )
    assert resp.json()["hubsPerSpace"] == {"limit": 10, "source": "plan"}


def test_token_bucket_allows_the_burst_then_the_rate():
    now = [100.0]
    buckets = TokenBuckets(clock=lambda: now[0])
    assert [buckets.take("t", rate=2, burst=3) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("t", rate=2, burst=3) == 0.5  # one request refills in 1/2 s
    assert buckets.take("other", rate=2, burst=3) == 0.0  # each token has its own bucket
    now[0] += 0.5
    assert buckets.take("t", rate=2, burst=3) == 0.0
    assert buckets.take("t", rate=2, burst=3) > 0
    now[0] += 60
    assert [buckets.take("t", rate=2, burst=3) for _ in range(4)][:3] == [0.0, 0.0, 0.0]
