"""The real `@scramjet/api-client` 0.26.1 family through the manager: Space discovery,
HostClient through the Space URL, Sequence upload and start, live output, kill."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.interop.packages import write_hello_package
from tests.interop.peer import NODE_DIR, HubPeer, join_hub, require_node
from tests.running import RunningManager


@pytest.fixture
async def hub(manager: RunningManager) -> AsyncIterator[HubPeer]:
    peer = await join_hub(manager, "js-hub", "--tick-ms", "100")
    yield peer
    await peer.stop()


async def test_api_client_flow(manager: RunningManager, hub: HubPeer, tmp_path: Path):
    package = write_hello_package(tmp_path / "hello.tar.gz")
    proc = await asyncio.create_subprocess_exec(
        require_node(),
        str(NODE_DIR / "api-client-flow.js"),
        "--api",
        f"{manager.url}/api/v1",
        "--token",
        manager.world.admin.token,
        "--hub",
        "js-hub",
        "--package",
        str(package),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    result = json.loads(out)
    assert result["spaces"][0]["id"] == manager.world.space_id
    assert result["managerVersion"]["service"] == "@scramjet/manager"
    assert [h["id"] for h in result["hubs"]] == ["js-hub"]
    assert result["hubVersion"]["service"] == "@scramjet/host"
    assert result["instanceInfo"]["sequence"]["id"] == result["sequenceId"]
    assert len(result["outputLines"]) == 2
    assert any(i["id"] == result["instanceId"] for i in result["spaceInstances"])
    assert result["kill"]["status"] == "killing"
