"""The JS clients of the real STH 1.0.1 release (`@scramjet/middleware-api-client`,
`@scramjet/api-client` with `ManagerClient` and `HostClient`, `@scramjet/client-utils`), loaded
from the STH dist, against the manager with a real STH 1.0.1 Hub: Space discovery, Hub calls
through the Space, aggregated views, a Space topic, the Store, audit and log streams, and the
access-key calls (`node/real-client-flow.js` prints what every call returned)."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from tests.interop.packages import write_hello_package
from tests.interop.sth import HubFleet
from tests.running import RunningManager

SCRIPT = Path(__file__).parent / "node" / "real-client-flow.js"


async def run_flow(manager: RunningManager, dist: Path, hub_id: str, package: Path) -> Any:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("node") or "node",
        str(SCRIPT),
        "--dist",
        str(dist),
        "--api",
        f"{manager.url}/api/v1",
        "--token",
        manager.world.admin.token,
        "--hub",
        hub_id,
        "--package",
        str(package),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), 90)
    except TimeoutError:
        proc.kill()
        out, err = await proc.communicate()
        raise AssertionError(f"real-client-flow.js hung: {err.decode()[-2000:]}") from None
    assert proc.returncode == 0, err.decode()[-3000:]
    return json.loads(out)


async def test_js_clients_1_0_1_space_flow(
    manager: RunningManager, real_hubs: HubFleet, tmp_path: Path
) -> None:
    await real_hubs.start("js-hub")
    package = write_hello_package(tmp_path / "hello.tar.gz")
    space_id = manager.world.space_id

    r = await run_flow(manager, real_hubs.dist, "js-hub", package)

    assert r["clientVersion"] == "1.0.1"
    assert r["middlewareVersion"]["apiVersion"] == "v1"
    assert r["spaces"][0]["id"] == space_id
    assert r["managerVersion"]["service"] == "@scramjet/manager"
    [hub] = [h for h in r["hosts"] if h["id"] == "js-hub"]
    assert hub["isConnectionActive"] and hub["healthy"] and hub["selfHosted"]
    assert r["load"]["memFree"] > 0
    assert isinstance(r["config"], dict)

    # Hub calls through the Space reach the real Hub
    assert r["hubVersion"] == {
        "service": "@scramjet/host",
        "apiVersion": "v1",
        "version": "1.0.1",
        "build": "source",
    }
    assert len(r["outputLines"]) >= 2 and all("tick" in line for line in r["outputLines"])
    assert any(
        s["id"] == r["sequenceId"] and s["location"] == "js-hub" for s in r["spaceSequences"]
    )
    assert any(s["id"] == r["sequenceId"] for s in r["spaceAllSequences"])
    [inst] = [i for i in r["spaceInstances"] if i["id"] == r["instanceId"]]
    assert inst["sequence"]["id"] == r["sequenceId"]
    assert r["kill"]["id"] == r["instanceId"] and r["kill"]["status"] == "killing"

    # Space topic: the reader got what the producer sent, and the topic is listed
    assert r["sendNamedData"] == "ok"
    assert r["topicLines"][:2] == ["Alice", "Bob"], r["topicLines"]
    assert any(t["name"] == "js-names" for t in r["topics"]), r["topics"]

    # Store
    assert r["storePut"]["id"] == "js-store" and r["storePut"]["name"] == "hello-seq"
    assert [i["id"] for i in r["storeItems"]] == ["js-store"]
    assert r["storeAfterDelete"] == []
    assert r["storePutNoId"]["id"] and r["storePutNoId"]["version"] == "1.0.0"
    assert r["storeAfterClear"] == []

    # Audit (Space and all Spaces) and the Space log, with the Hub's lines prefixed
    space_audit = [json.loads(line) for line in r["spaceAudit"]]
    assert any(
        a["opCode"] == 14000 and a["hostId"] == "js-hub" and a["spaceId"] == space_id
        for a in space_audit
    ), space_audit  # the Hub's connection
    mw_audit = [json.loads(line) for line in r["middlewareAudit"]]
    assert all(a["spaceId"] == space_id for a in mw_audit), mw_audit
    assert r["spaceLog"] and all(line.startswith("js-hub: ") for line in r["spaceLog"])

    # Access keys: created (shown once), listed with the trimmed description, revoked by
    # id, then all: the Hub that joined with one of them is disconnected
    created = r["keyCreated"]
    assert created["accessKey"].startswith("SCP-ak-") and created["description"] == "js key"
    assert {"created": created["created"], "description": "js key"} in r["keysListed"]["accessKeys"]
    assert r["keyRevoked"]["keysRevoked"] == 1
    assert created["created"] not in [k["created"] for k in r["keysAfterRevoke"]["accessKeys"]]
    assert r["revokeAll"]["keysRevoked"] == 1  # the key the Hub joined with
    assert r["keysAfterRevokeAll"] == {"accessKeys": []}
    [gone] = [h for h in r["hostsAfterRevokeAll"] if h["id"] == "js-hub"]
    assert not gone["isConnectionActive"] and gone["disconnectReason"] == "access key revoked"
    listed = await manager.hubs()
    assert [h["isConnectionActive"] for h in listed if h["id"] == "js-hub"] == [False]
