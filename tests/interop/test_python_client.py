"""PyPI `scramjet-api-client` 1.1.1 through the manager: the quick start of its README
(send a .tar.gz, start it, read the Instance's info) against a Hub behind a tunnel."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator

import pytest

from tests.interop.packages import hello_package
from tests.interop.peer import HubPeer, join_hub
from tests.running import RunningManager


@pytest.fixture
async def hub(manager: RunningManager) -> AsyncIterator[HubPeer]:
    peer = await join_hub(manager, "sth-0")
    yield peer
    await peer.stop()


async def test_python_quick_start(manager: RunningManager, hub: HubPeer):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from client.host_client import HostClient
        from client_utils.base_client import BaseClient

    api_base = f"{manager.url}/api/v1"
    space_id = manager.world.space_id
    BaseClient.setDefaultHeaders({"Authorization": f"Bearer {manager.world.admin.token}"})
    try:
        host = HostClient(f"{api_base}/space/{space_id}/api/v1/sth/sth-0/api/v1")
        version = await host.get_version()
        assert version["service"] == "@scramjet/host"

        sequence = await host.send_sequence(hello_package())
        assert len(sequence.id) == 36
        instance = await sequence.start()
        info = await instance.get_info()
        assert info["id"] == instance.id
        assert info["sequence"]["id"] == sequence.id

        listed = await host.list_sequences()
        assert any(s["id"] == sequence.id for s in listed)
        space = await manager.client.get(f"/api/v1/space/{space_id}/api/v1/instances")
        assert any(i["id"] == instance.id and i["location"] == "sth-0" for i in space.json())
    finally:
        BaseClient.setDefaultHeaders({})
