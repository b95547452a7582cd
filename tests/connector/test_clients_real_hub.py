"""The JS (`@scramjet/api-client` 0.26.1) and Python (`scramjet-api-client` 1.1.1) clients
against REAL Hub code (`@scramjet/host` 0.18.7 behind `space-manager connect`)."""

from __future__ import annotations

import asyncio
import json
import warnings
from pathlib import Path

from tests.conftest import eventually
from tests.connector.helpers import Host018, connector_running, is_healthy, options_for, pack_hello
from tests.interop.peer import NODE_DIR, require_node
from tests.running import RunningManager


async def test_js_api_client_on_the_real_hub(
    manager: RunningManager, host018: Host018, tmp_path: Path
):
    key = await manager.new_key()
    async with connector_running(options_for(manager, key, host018.url, hub_id="real-js")):
        await eventually(lambda: is_healthy(manager, "real-js"), what="real-js healthy")
        package = pack_hello(tmp_path / "hello.tar.gz")
        proc = await asyncio.create_subprocess_exec(
            require_node(),
            str(NODE_DIR / "api-client-flow.js"),
            "--api",
            f"{manager.url}/api/v1",
            "--token",
            manager.world.admin.token,
            "--hub",
            "real-js",
            "--package",
            str(package),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 90)
        assert proc.returncode == 0, err.decode()
        result = json.loads(out)
        assert result["hubVersion"] == {"version": "0.18.7"}
        assert result["instanceInfo"]["id"] == result["instanceId"]
        assert len(result["outputLines"]) == 2
        assert any(i["id"] == result["instanceId"] for i in result["spaceInstances"])


async def test_python_quick_start_on_the_real_hub(
    manager: RunningManager, host018: Host018, tmp_path: Path
):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from client.host_client import HostClient
        from client_utils.base_client import BaseClient

    key = await manager.new_key()
    async with connector_running(options_for(manager, key, host018.url, hub_id="real-py")):
        await eventually(lambda: is_healthy(manager, "real-py"), what="real-py healthy")
        BaseClient.setDefaultHeaders({"Authorization": f"Bearer {manager.world.admin.token}"})
        try:
            space = manager.world.space_id
            host = HostClient(f"{manager.url}/api/v1/space/{space}/api/v1/sth/real-py/api/v1")
            sequence = await host.send_sequence(pack_hello(tmp_path / "hello.tar.gz").read_bytes())
            instance = await sequence.start()
            info = await instance.get_info()
            assert info["id"] == instance.id
            seq = info["sequence"]
            assert (seq if isinstance(seq, str) else seq["id"]) == sequence.id
        finally:
            BaseClient.setDefaultHeaders({})
