"""`si` 0.26.1 pointed at the manager exactly as the README says: Spaces and Hubs."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from tests.interop.peer import HubPeer
from tests.interop.si import Si
from tests.running import RunningManager


async def test_si_space_ls_and_hub_ls(manager: RunningManager, tmp_path: Path):
    si = await asyncio.to_thread(Si, tmp_path, manager.url, manager.world.admin.token)
    spaces = await asyncio.to_thread(si.json, "space", "ls")
    assert spaces[0]["id"] == manager.world.space_id
    empty = await asyncio.to_thread(si.run, "hub", "ls")
    assert empty.stdout.strip() in ("", "[]")  # si 0.26 prints nothing for an empty list

    key = await manager.new_key()
    peer = await HubPeer.start(
        manager.url, manager.world.space_id, key, "--id", "si-hub", "--load-interval", "500"
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            out = (await asyncio.to_thread(si.run, "hub", "ls")).stdout
            hubs = json.loads(out) if out.strip() else []
            if hubs and hubs[0]["healthy"]:
                break
            assert time.monotonic() < deadline, hubs
            await asyncio.sleep(0.3)
        assert hubs[0]["id"] == "si-hub" and hubs[0]["selfHosted"] is True
    finally:
        await peer.stop()


async def test_si_with_a_wrong_token_fails_cleanly(manager: RunningManager, tmp_path: Path):
    si = await asyncio.to_thread(Si, tmp_path, manager.url, "aaa.bbb.ccc")
    proc = await asyncio.to_thread(si.run, "space", "ls", check=False)
    assert proc.returncode == 1
    assert "403" in proc.stdout + proc.stderr
    assert "Forbidden" in proc.stdout + proc.stderr
