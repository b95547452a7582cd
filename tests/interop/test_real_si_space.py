"""`si` 1.0.1 Space and Hub commands against the manager with real STH 1.0.1 Hubs, as a user
runs them (production profile): `si space ls|info|version|use|logs|audit`, `si space access
create|ls|revoke`, `si hub ls|use|info|version|load|logs|audit|disconnect|rm`.

Each test checks what `si` printed against what the manager's API (or the Hub itself) then
shows. `si` keeps its selected Space and Hub in a session file shared by the test's calls.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx

from tests.interop.packages import write_hello_package
from tests.interop.real_si import json_lines, space_get, terminal
from tests.interop.sth import HubFleet, Si
from tests.running import RunningManager


def by_id(hubs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {h["id"]: h for h in hubs}


async def test_si_space_ls_info_version_use_logs_audit(
    manager: RunningManager, real_hubs: HubFleet, si: Si, tmp_path: Path
) -> None:
    await real_hubs.start("hub-a")
    space_id = manager.world.space_id
    manager_version = await space_get(manager, "version")
    assert manager_version["service"] == "@scramjet/manager"

    # ls: the caller's Spaces, default first, as the middleware API lists them
    spaces = await si.json("space", "ls")
    assert spaces == (await manager.client.get("/api/v1/spaces")).json()
    assert spaces[0]["id"] == space_id

    info = await si.json("space", "info")
    assert info["spaceId"] == space_id
    assert info["version"] == manager_version
    assert info["managerClient"]["apiBase"] == f"{manager.url}/api/v1/space/{space_id}/api/v1"
    assert await si.json("space", "version") == manager_version

    used = await si.json("space", "use", space_id)
    assert used == {"name": space_id, **manager_version}
    unknown = await si.run("space", "use", "org-nope-manager", check=False)
    assert unknown.returncode == 1 and "with code 404" in unknown.stderr

    hub_version = await si.json("hub", "version")  # a proxied call, for the audit below
    assert hub_version["version"] == "1.0.1"
    # logs (the Space implied or named) and audit stream until stopped: read side by side
    t1, t2 = [await terminal(si, tmp_path / f"terminal-{n}") for n in (1, 2)]
    logs, named_logs, audit_lines = await asyncio.gather(
        si.stream("space", "logs", seconds=3),
        t1.stream("space", "logs", space_id, seconds=3),
        t2.stream("space", "audit", seconds=3),
    )

    # logs: every Hub's log, each line prefixed with its Hub id
    for lines in (logs, named_logs):
        assert lines and all(line.startswith("hub-a: ") for line in lines), lines[:3]
        messages = [json.loads(line.removeprefix("hub-a: "))["msg"] for line in lines]
        assert any(f"hub-a connected to {space_id}" in m for m in messages), messages

    # audit: the Space's records: access key created, Hub connected, proxied requests
    audit = json_lines(audit_lines)
    assert all(a["spaceId"] == space_id for a in audit), audit
    codes = {(a["opCode"], a["objectId"]) for a in audit}
    assert (14000, "hub-a") in codes, audit
    [key] = (await manager.client.get(f"/api/v1/space/{space_id}/apikey")).json()["accessKeys"]
    assert (15000, str(key["created"])) in codes, audit
    assert any(
        a["opCode"] == 15100
        and a["hostId"] == "hub-a"
        and a["objectId"] == "/api/v1/version"
        and a["status"] == 200
        for a in audit
    ), audit


async def test_si_1_0_1_space_selection_needs_space_use_and_hub_use_in_a_space_without_hubs(
    manager: RunningManager, real_hubs: HubFleet, si: Si
) -> None:
    """si 1.0.1 picks a default Space only together with a Hub: in a Space without Hubs nothing
    is selected until `si space use`, and a Hub that joins later needs `si hub use`. And
    since every command re-reads `/spaces` and falls back to the first Space when it has a
    Hub, `si space use` of another Space lasts only for that one command."""
    space_id = manager.world.space_id

    no_space = await si.run("space", "access", "ls", check=False)
    assert no_space.returncode == 1 and "No Space set" in no_space.stderr
    no_space = await si.run("hub", "ls", check=False)
    assert no_space.returncode == 1 and "No space selected" in no_space.stderr

    await si.run("space", "use", space_id)
    assert await si.json("space", "access", "ls") == {"accessKeys": []}
    assert await si.json("hub", "ls") == []

    await real_hubs.start("hub-a")
    assert [h["id"] for h in await si.json("hub", "ls")] == ["hub-a"]
    no_hub = await si.run("hub", "version", check=False)  # no Hub selected yet
    assert no_hub.returncode == 1 and f"/space/{space_id}/api/v1/sth/api/v1/version" in (
        no_hub.stderr
    )
    await si.run("hub", "use", "hub-a")
    assert (await si.json("hub", "version"))["service"] == "@scramjet/host"

    other = manager.world.other_space_id
    assert (await si.json("space", "use", other))["name"] == other
    again = await si.run("space", "info")
    assert json.loads(again.stdout)["spaceId"] == space_id
    assert f"Defaults set to: Space: {space_id}, Hub: hub-a" in again.stderr


async def test_si_space_access_create_ls_revoke(
    manager: RunningManager, real_hubs: HubFleet, si: Si
) -> None:
    space_id = manager.world.space_id
    await real_hubs.start("hub-a")  # joins with a key of its own, "real hub hub-a"

    async def api_keys() -> list[dict[str, Any]]:
        resp = await manager.client.get(f"/api/v1/space/{space_id}/apikey")
        return list(resp.json()["accessKeys"])

    listed = await si.json("space", "access", "ls")
    assert [k["description"] for k in listed["accessKeys"]] == ["real hub hub-a"]

    created = await si.json("space", "access", "create", "laptop key")
    assert created["accessKey"].startswith("SCP-ak-")
    assert created["description"] == "laptop key" and isinstance(created["created"], int)
    listed = await si.json("space", "access", "ls")
    assert {"created": created["created"], "description": "laptop key"} in listed["accessKeys"]
    assert all("accessKey" not in k for k in listed["accessKeys"])  # shown once only
    assert listed["accessKeys"] == await api_keys()

    # the key si made lets a Hub join; revoking it by id drops that Hub, not the other
    await real_hubs.start("hub-k", key=created["accessKey"])
    revoked = await si.json("space", "access", "revoke", "--id", str(created["created"]))
    assert revoked["keysRevoked"] == 1
    dropped = await real_hubs.wait_listed("hub-k", active=False)
    assert dropped["disconnectReason"] == "access key revoked"
    assert [k["description"] for k in await api_keys()] == ["real hub hub-a"]
    assert by_id(await manager.hubs())["hub-a"]["isConnectionActive"]

    neither = await si.run("space", "access", "revoke", check=False)
    assert neither.returncode == 1 and "Please provide one of the options" in neither.stderr

    revoked_all = await si.json("space", "access", "revoke", "--all")
    assert revoked_all["keysRevoked"] == 1
    await real_hubs.wait_listed("hub-a", active=False)
    assert await si.json("space", "access", "ls") == {"accessKeys": []}
    assert await api_keys() == []
    nothing = await si.run("space", "access", "revoke", "--all", check=False)
    assert nothing.returncode == 1 and "There are no keys to revoke" in nothing.stderr


async def test_si_hub_ls_use_info_version_load_logs_audit(
    manager: RunningManager, real_hubs: HubFleet, si: Si, tmp_path: Path
) -> None:
    space_id = manager.world.space_id
    # STH 1.0.1 splits --tags on "," without trimming; the manager trims " gpu" to "gpu".
    _, hub_b = await asyncio.gather(
        real_hubs.start("hub-a", description="first hub", tags="edge, gpu"),
        real_hubs.start("hub-b", description="second hub"),
    )

    listed = by_id(await si.json("hub", "ls"))
    assert set(listed) == {"hub-a", "hub-b"}
    assert listed["hub-a"]["description"] == "first hub"
    assert listed["hub-a"]["tags"] == ["edge", "gpu"]
    assert all(h["selfHosted"] and h["isConnectionActive"] for h in listed.values())
    api = by_id(await manager.hubs())
    for hub_id, hub in listed.items():
        for key in ("description", "tags", "selfHosted", "info"):
            assert hub[key] == api[hub_id][key]

    await si.run("hub", "use", "hub-b")
    info = await si.json("hub", "info")
    assert info["id"] == "hub-b" and info["description"] == "second hub"

    async with httpx.AsyncClient(timeout=5) as direct:
        assert await si.json("hub", "version") == (await direct.get(f"{hub_b.url}/version")).json()
    load = await si.json("hub", "load")
    assert load["memFree"] > 0 and load["memUsed"] > 0
    # hub-b's own load check: it lists hub-b's Sequence folder among its file systems
    assert any(fs["fs"] == str(hub_b.home / "sequences") for fs in load["fsSize"]), load

    logs = json_lines(await si.stream("hub", "logs", seconds=3))
    messages = [entry["msg"] for entry in logs]
    assert any(f"hub-b connected to {space_id}" in m for m in messages), messages
    assert not any("hub-a connected" in m for m in messages)

    # the Hub audits Sequence requests; the manager passes the caller as requestor
    sent = await si.json("seq", "send", str(write_hello_package(tmp_path / "hello.tar.gz")))
    audit = json_lines(await si.stream("hub", "audit", seconds=3))
    upload = [a for a in audit if a["opCode"] == 10100]  # POST /sequence
    assert [a["opState"] for a in upload] == ["START", "END"], audit
    assert all(a["requestorId"].startswith("tok_") for a in upload), upload
    assert any(a["opCode"] == 0 and a["objectId"] == sent["_id"] for a in audit), audit

    unknown = await si.run("hub", "use", "hub-nope", check=False)
    assert unknown.returncode == 1 and "Host not found" in unknown.stderr
    assert (await si.json("hub", "info"))["id"] == "hub-b"


async def test_si_hub_disconnect_and_rm(
    manager: RunningManager, real_hubs: HubFleet, si: Si
) -> None:
    space_id = manager.world.space_id
    await asyncio.gather(*(real_hubs.start(h) for h in ("hub-a", "hub-b", "hub-c")))
    await si.run("hub", "use", "hub-a")

    missing = await si.run("hub", "disconnect", space_id, check=False)
    assert missing.returncode == 1 and "Missing --id or --all" in missing.stderr

    dropped = await si.json("hub", "disconnect", space_id, "--id", "hub-b")
    assert dropped == {
        "managerId": space_id,
        "disconnected": [{"sthId": "hub-b", "reason": "disconnected by the Space"}],
    }
    hub_b = by_id(await si.json("hub", "ls"))["hub-b"]
    assert not hub_b["isConnectionActive"] and not hub_b["healthy"]
    assert hub_b["disconnectReason"] == "disconnected by the Space"
    await asyncio.sleep(2.5)  # longer than the STH's reconnection delay: it stays away
    assert not by_id(await manager.hubs())["hub-b"]["isConnectionActive"]

    connected = await si.run("hub", "rm", "hub-a", check=False)
    assert connected.returncode == 1 and "Hub hub-a is connected" in connected.stderr
    assert await si.json("hub", "rm", "hub-b") == {}
    assert await si.json("hub", "rm", "hub-c", "--force") == {}  # connected: dropped, deleted
    assert [h["id"] for h in await si.json("hub", "ls")] == ["hub-a"]
    assert [h["id"] for h in await manager.hubs()] == ["hub-a"]
    unknown = await si.run("hub", "rm", "hub-b", check=False)
    assert unknown.returncode == 1 and "Hub hub-b not found" in unknown.stderr

    dropped = await si.json("hub", "disconnect", space_id, "--all")
    assert [d["sthId"] for d in dropped["disconnected"]] == ["hub-a"]
    [hub_a] = await si.json("hub", "ls")
    assert not hub_a["isConnectionActive"]
