"""The real Hub: @scramjet/host 0.18.7 (process adapter, joined to nothing) made a Space
member by `space-manager connect` over a WebSocket. Everything is checked through the
manager's own API and proxy, as a user would see it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.conftest import eventually, free_port
from tests.connector.helpers import (
    BIN,
    ConnectorProcess,
    Host018,
    connector_running,
    hub_entry,
    is_gone,
    is_healthy,
    options_for,
    pack_hello,
)
from tests.running import RunningManager

pytestmark = pytest.mark.interop


def space_api(manager: RunningManager, path: str) -> str:
    return f"/api/v1/space/{manager.world.space_id}/api/v1/{path}"


def hub_api(manager: RunningManager, hub_id: str, path: str) -> str:
    return space_api(manager, f"sth/{hub_id}/api/v1/{path}")


async def test_hub_joins_healthy_with_its_identity(manager: RunningManager, host018: Host018):
    key = await manager.new_key()
    options = options_for(
        manager, key, host018.url, hub_id="edge-1", description="old hub", tags=("a", "b")
    )
    async with connector_running(options):
        await eventually(lambda: is_healthy(manager, "edge-1"), what="edge-1 healthy")
        entry = await hub_entry(manager, "edge-1")
        assert entry is not None
        assert entry["description"] == "old hub" and entry["tags"] == ["a", "b"]
        version = await manager.client.get(hub_api(manager, "edge-1", "version"))
        assert version.status_code == 200 and version.json() == {"version": "0.18.7"}
        load = (await manager.client.get(space_api(manager, "load"))).json()
        assert load["memFree"] > 0  # LOAD from the Hub's /load-check reached the Space
    await eventually(lambda: is_gone(manager, "edge-1"), what="edge-1 disconnected")


async def test_sequence_upload_start_output_and_kill_through_the_proxy(
    manager: RunningManager, host018: Host018, tmp_path: Path
):
    key = await manager.new_key()
    package = pack_hello(tmp_path / "hello.tar.gz").read_bytes()
    async with connector_running(options_for(manager, key, host018.url, hub_id="seq-hub")):
        await eventually(lambda: is_healthy(manager, "seq-hub"))
        client = manager.client
        sent = await client.post(
            hub_api(manager, "seq-hub", "sequence"),
            content=package,
            headers={"content-type": "application/octet-stream"},
        )
        assert sent.status_code == 200, sent.text
        sequence_id = sent.json()["id"]

        async def listed(path: str, item_id: str) -> bool:
            resp = await client.get(space_api(manager, path))
            return any(item["id"] == item_id for item in resp.json())

        await eventually(lambda: listed("sequences", sequence_id), what="Sequence in the Space")

        started = await client.post(
            hub_api(manager, "seq-hub", f"sequence/{sequence_id}/start"),
            json={"appConfig": {}, "args": [0, "tick"]},
        )
        assert started.status_code == 200, started.text
        instance_id = started.json()["id"]

        # The output streams through manager → WebSocket → connector → Hub as it is made.
        # (Read at once: 0.18.7 hands a late first reader its backlog in one piece.)
        lines: list[tuple[float, str]] = []
        output = hub_api(manager, "seq-hub", f"instance/{instance_id}/output")
        async with client.stream("GET", output) as resp:
            assert resp.status_code == 200
            buffer = ""
            async for text in resp.aiter_text():
                buffer += text
                while "\n" in buffer:
                    line, buffer = buffer.split("\n", 1)
                    lines.append((time.monotonic(), line))
                if len(lines) >= 10:
                    break
        assert [line for _, line in lines[:10]] == [f"tick {n}" for n in range(1, 11)]
        assert lines[9][0] - lines[0][0] > 0.8  # 200 ms apart: live, not buffered

        await eventually(lambda: listed("instances", instance_id), what="instance in the Space")
        (instance,) = [
            i
            for i in (await client.get(space_api(manager, "instances"))).json()
            if i["id"] == instance_id
        ]
        assert instance["sequence"]["id"] == sequence_id  # 0.18's bare id, normalised

        killed = await client.post(
            hub_api(manager, "seq-hub", f"instance/{instance_id}/_kill"), json={}
        )
        assert killed.status_code == 202, killed.text

        async def instance_gone() -> bool:
            return not await listed("instances", instance_id)

        await eventually(instance_gone, what="instance gone from the Space")
        deleted = await client.delete(
            hub_api(manager, "seq-hub", f"sequence/{sequence_id}"),
            headers={"content-type": "application/json"},
        )
        assert deleted.status_code == 200, deleted.text

        async def sequence_gone() -> bool:
            return not await listed("sequences", sequence_id)

        await eventually(sequence_gone, what="Sequence gone from the Space")


async def test_a_call_after_the_hubs_keep_alive_timeout_still_works(
    manager: RunningManager, host018: Host018
):
    """Node closes idle keep-alive sockets after 5 s; the manager keeps idle channels for
    30 s. One exchange per channel means no stale channel is ever reused."""
    key = await manager.new_key()
    async with connector_running(options_for(manager, key, host018.url, hub_id="idle-hub")):
        await eventually(lambda: is_healthy(manager, "idle-hub"))
        resp = await manager.client.get(hub_api(manager, "idle-hub", "version"))
        assert resp.status_code == 200
        await asyncio.sleep(6)
        resp = await manager.client.get(hub_api(manager, "idle-hub", "sequences"))
        assert resp.status_code == 200 and isinstance(resp.json(), list)


async def test_the_manager_assigns_an_id_when_none_is_given(
    manager: RunningManager, host018: Host018
):
    key = await manager.new_key()
    async with connector_running(options_for(manager, key, host018.url)) as connector:
        await asyncio.wait_for(connector.connected.wait(), 15)
        assigned = connector.hub_id
        assert assigned
        await eventually(lambda: is_healthy(manager, assigned))


async def test_killed_connector_shows_disconnected_and_comes_back(
    manager: RunningManager, host018: Host018, tmp_path: Path
):
    key = await manager.new_key()
    log = tmp_path / "connect.log"
    proc = await ConnectorProcess.start(manager, key, host018.url, log, "--id", "k-hub")
    try:
        await eventually(lambda: is_healthy(manager, "k-hub"), what="k-hub healthy")
        proc.proc.kill()  # SIGKILL: no goodbye
        await proc.proc.wait()
        await eventually(lambda: is_gone(manager, "k-hub"), what="k-hub gone", timeout=15)
    finally:
        await proc.stop()
    proc = await ConnectorProcess.start(manager, key, host018.url, log, "--id", "k-hub")
    try:
        await eventually(lambda: is_healthy(manager, "k-hub"), what="k-hub back")
    finally:
        await proc.stop()
    assert "connected as k-hub" in proc.text()


async def test_revoked_key_stops_the_connector_for_good(
    manager: RunningManager, host018: Host018, tmp_path: Path
):
    key = await manager.new_key()
    proc = await ConnectorProcess.start(
        manager, key, host018.url, tmp_path / "connect.log", "--id", "r-hub"
    )
    try:
        await eventually(lambda: is_healthy(manager, "r-hub"))
        resp = await manager.client.delete(
            f"/api/v1/space/{manager.world.space_id}/apikey", headers={"x-revoke": key}
        )
        assert resp.status_code == 200, resp.text
        assert await proc.wait(20) == 3
        await eventually(lambda: is_gone(manager, "r-hub"))
        await asyncio.sleep(2)
        assert await is_gone(manager, "r-hub")  # and nobody came back
    finally:
        await proc.stop()
    text = proc.text()
    assert "stopped (access key revoked" in text
    assert text.count("connecting to") == 1  # no second attempt
    assert key not in text  # the key is never logged


async def test_wrong_key_stops_with_4403(manager: RunningManager, host018: Host018, tmp_path: Path):
    await manager.new_key()
    proc = await ConnectorProcess.start(
        manager, "SCP-ak-not-a-real-key-at-all", host018.url, tmp_path / "c.log", "--id", "w"
    )
    try:
        assert await proc.wait(20) == 3
    finally:
        await proc.stop()
    assert "close code 4403" in proc.text()
    assert await hub_entry(manager, "w") is None


async def test_local_hub_down_tunnel_up_unhealthy_and_502_then_back(
    manager: RunningManager, tmp_path: Path
):
    port = free_port()
    key = await manager.new_key()
    options = options_for(manager, key, f"http://127.0.0.1:{port}", hub_id="down-hub")
    async with connector_running(options):

        async def listed_unhealthy() -> bool:
            entry = await hub_entry(manager, "down-hub")
            return bool(entry and entry["isConnectionActive"] and not entry["healthy"])

        await eventually(listed_unhealthy, what="down-hub listed, connected, unhealthy")
        resp = await manager.client.get(hub_api(manager, "down-hub", "version"))
        assert resp.status_code == 502
        assert resp.json() == {"error": "Local Hub not reachable"}

        late = Host018.start(tmp_path / "late", port=port)  # the Hub starts after all
        try:
            await eventually(lambda: is_healthy(manager, "down-hub"), what="down-hub healthy")
            resp = await manager.client.get(hub_api(manager, "down-hub", "version"))
            assert resp.status_code == 200
        finally:
            late.stop()


async def test_cli_help_names_every_option():
    proc = await asyncio.create_subprocess_exec(
        str(BIN),
        "connect",
        "--help",
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await proc.communicate()
    text = out.decode()
    for option in (
        "--hub",
        "--platform-api",
        "--platform-space",
        "--platform-api-key",
        "--id",
        "--description",
        "--tags",
        "--ca-file",
        "--load-interval",
        "--poll-interval",
    ):
        assert option in text
