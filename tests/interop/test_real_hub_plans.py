"""README "Plans and limits", proven on real STH 1.0.1 Hubs, on SQLite and PostgreSQL.

- a plan of 1 Hub per Space (set with the README's CLI commands, in their own process, while
  the manager runs) admits the first Hub and sends the second LIMIT_EXCEEDED: the real Hub
  stops retrying, the audit stream records it (14003) and the metrics count it; raising the
  limit lets it in on its restart; lowering it again drops nobody and refuses the next one;
- a store upload over the Space's quota is a 413 naming plan and limit, and the store (its
  listing, the package bytes Hubs download, the files on disk) is unchanged;
- a token over its plan's request rate gets 429 with Retry-After on proxied Hub calls, its
  other calls go on, and it is served again once Retry-After has passed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from typing import Any

import httpx
import pytest

from tests.conftest import eventually
from tests.interop.packages import hello_package, node_package
from tests.interop.sth import HubFleet
from tests.interop.test_real_hub_stop_conditions import (
    ATTEMPT,
    DROPPED,
    assert_no_more_attempts,
    audit_records,
    in_log,
)
from tests.manager_process import BIN
from tests.running import RunningManager


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    """Both databases (tests/interop/conftest.py pins SQLite); `postgres` needs
    MANAGER_TEST_POSTGRES_URL."""
    kind: str = request.param
    return kind


async def space_manager(manager: RunningManager, *args: str) -> str:
    """`space-manager --data-dir D ARGS` as its own process on the manager's database."""
    settings = manager.svc.settings
    proc = await asyncio.create_subprocess_exec(
        str(BIN),
        "--data-dir",
        str(settings.data_dir),
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "MANAGER_DATABASE_URL": settings.effective_database_url},
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def hub_limit_in_force(manager: RunningManager, value: int | None) -> None:
    """The running manager has picked up a change the CLI made (within a few seconds)."""

    async def seen() -> bool:
        snapshot = await manager.svc.quotas.current()
        return snapshot.space_limit(manager.world.space_id, "hubsPerSpace").value == value

    await eventually(seen, f"the Hub limit {value} in force", timeout=10)


async def config_limits(manager: RunningManager) -> dict[str, Any]:
    resp = await manager.client.get(f"/api/v1/space/{manager.world.space_id}/api/v1/config")
    assert resp.status_code == 200
    return dict(resp.json()["config"]["limits"])


async def test_one_hub_per_space_then_raised_then_lowered(
    manager: RunningManager, real_hubs: HubFleet
):
    org = manager.world.org_id
    space = manager.world.space_id
    made = json.loads(await space_manager(manager, "plan", "create", "solo", "--hubs", "1"))
    assert made["hubsPerSpace"] == 1 and made["spacesPerOrg"] is None
    assert "is on plan solo" in await space_manager(manager, "org", "set-plan", org, "solo")
    await hub_limit_in_force(manager, 1)

    await real_hubs.start("first")
    second = await real_hubs.start("second", join=False)
    await in_log(second, DROPPED)
    await assert_no_more_attempts(second)
    assert second.log().count(ATTEMPT) == 1
    assert [h["id"] for h in await manager.hubs()] == ["first"]
    limits = await config_limits(manager)
    assert limits["plan"] == "solo"
    assert limits["hubsPerSpace"] == {"limit": 1, "used": 1, "source": "plan"}

    def refused(records: list[dict[str, Any]]) -> bool:
        return any(r["opCode"] == 14003 for r in records)

    records = [r for r in await audit_records(manager, refused) if r["opCode"] == 14003]
    assert len(records) == 1, records
    assert records[0]["hostId"] == "second" and records[0]["spaceId"] == space
    assert records[0]["reason"] == "LIMIT_EXCEEDED"
    assert (records[0]["plan"], records[0]["limit"], records[0]["max"]) == (
        "solo",
        "hubsPerSpace",
        1,
    )
    metrics = (await manager.client.get("/api/v1/metrics")).text
    assert 'manager_limit_refusals_total{limit="hubsPerSpace"} 1' in metrics

    # Raised: the refused Hub gets in when it is started again.
    await space_manager(manager, "plan", "set", "solo", "--hubs", "2")
    await hub_limit_in_force(manager, 2)
    await second.stop()
    await second.start()
    await real_hubs.wait_listed("second")

    # Lowered for this Space alone: nobody is dropped, the next Hub is refused.
    out = await space_manager(manager, "space", "set-limit", "--space", space, "--hubs", "1")
    assert json.loads(out)["hubsPerSpace"] == {"limit": 1, "source": "space"}
    await hub_limit_in_force(manager, 1)
    third = await real_hubs.start("third", join=False)
    await in_log(third, DROPPED)
    listed = {h["id"]: h for h in await manager.hubs()}
    assert listed["first"]["isConnectionActive"] and listed["second"]["isConnectionActive"]
    assert "third" not in listed
    limits = await config_limits(manager)
    assert limits["hubsPerSpace"] == {"limit": 1, "used": 2, "source": "space"}
    assert (
        'manager_limit_refusals_total{limit="hubsPerSpace"} 2'
        in (await manager.client.get("/api/v1/metrics")).text
    )


def store_files(manager: RunningManager) -> dict[str, str]:
    root = manager.svc.settings.data_dir / "store"
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


async def test_a_store_upload_over_quota_is_a_413_and_changes_nothing(manager: RunningManager):
    h = manager.client
    space = manager.world.space_id
    s3 = f"/api/v1/space/{space}/api/v1/s3"
    package = hello_package()
    bigger = node_package("bigger-seq", "// padding\n" + os.urandom(4000).hex())
    assert len(bigger) > len(package)
    quota = len(package) + 1000
    made = await h.post("/api/v1/plans", json={"name": "tiny", "storeBytesPerSpace": quota})
    assert made.status_code == 201, made.text
    resp = await h.put(f"/api/v1/org/{manager.world.org_id}/plan", json={"plan": "tiny"})
    assert resp.status_code == 200

    stored = await h.put(f"{s3}/kept", content=package)
    assert stored.status_code == 200, stored.text
    before = ((await h.get(s3)).json(), store_files(manager))

    for url in (f"{s3}/kept", f"{s3}/another", s3):  # replacing, new id, generated id
        over = await h.put(url, content=bigger)
        assert over.status_code == 413, over.text
        body = over.json()
        assert (body["plan"], body["limit"], body["max"]) == ("tiny", "storeBytesPerSpace", quota)
        assert f"storeBytesPerSpace {quota} of plan 'tiny'" in body["error"]
        assert ((await h.get(s3)).json(), store_files(manager)) == before
    # What a Hub downloads is still the package stored first.
    got = await h.get(f"/api/v1/space/{space}/api/v1/s3/undefined/kept.tar.gz")
    assert got.status_code == 200 and got.content == package
    limits = await config_limits(manager)
    assert limits["storeBytesPerSpace"] == {"limit": quota, "used": len(package), "source": "plan"}

    # The Space's own larger quota lets the same upload in.
    resp = await h.put(
        f"/api/v1/space/{space}/limits", json={"storeBytesPerSpace": len(package) + len(bigger)}
    )
    assert resp.status_code == 200
    assert (await h.put(f"{s3}/another", content=bigger)).status_code == 200
    metrics = (await h.get("/api/v1/metrics")).text
    assert 'manager_limit_refusals_total{limit="storeBytesPerSpace"} 3' in metrics


async def test_a_token_over_its_rate_gets_429_with_retry_after_and_recovers(
    manager: RunningManager, real_hubs: HubFleet
):
    h = manager.client
    resp = await h.post(
        "/api/v1/plans", json={"name": "metered", "requestsPerSecond": 1, "burst": 3}
    )
    assert resp.status_code == 201, resp.text
    await real_hubs.start("metered-hub")
    resp = await h.put(f"/api/v1/org/{manager.world.org_id}/plan", json={"plan": "metered"})
    assert resp.status_code == 200
    hub_api = f"/api/v1/space/{manager.world.space_id}/api/v1/sth/metered-hub/api/v1"

    # Together, so they all arrive well within the second it takes to earn one more.
    answers = await asyncio.gather(*(h.get(f"{hub_api}/version") for _ in range(4)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 200, 200, 429], [a.text for a in answers]
    assert "version" in next(a for a in answers if a.status_code == 200).json()  # the Hub's
    limited = next(a for a in answers if a.status_code == 429)
    retry_after = int(limited.headers["retry-after"])
    assert retry_after == 1
    body = limited.json()
    assert (body["plan"], body["limit"], body["max"], body["burst"]) == (
        "metered",
        "requestsPerSecond",
        1,
        3,
    )
    # Only proxied Hub calls are metered: the Space API still answers.
    assert (await h.get(f"/api/v1/space/{manager.world.space_id}/api/v1/list")).status_code == 200
    # Another organization's token is not affected.
    async with httpx.AsyncClient(
        base_url=manager.url,
        headers={"Authorization": f"Bearer {manager.world.other_user.token}"},
    ) as other:
        other_space = manager.world.other_space_id
        resp = await other.get(f"/api/v1/space/{other_space}/api/v1/sth/x/api/v1/version")
        assert resp.status_code != 429

    await asyncio.sleep(retry_after)
    again = await h.get(f"{hub_api}/version")
    assert again.status_code == 200, again.text
    metrics = (await h.get("/api/v1/metrics")).text
    assert 'manager_limit_refusals_total{limit="requestsPerSecond"} 1' in metrics
