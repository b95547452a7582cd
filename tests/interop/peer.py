"""Drives `tests/interop/node/hub-peer.js` (real `bpmux` + `@scramjet/utility`) from pytest."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
PEER = NODE_DIR / "hub-peer.js"


def require_node() -> str:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "bpmux").exists():
        pytest.fail("node and tests/interop/node/node_modules are needed (make node)")
    return node


class HubPeer:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._new = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._req = 0

    @classmethod
    async def start(
        cls,
        api: str,
        space: str,
        key: str | None,
        *args: str,
    ) -> HubPeer:
        org = space.rsplit("-", 1)[0]
        argv = [
            require_node(),
            str(PEER),
            "--platform-api",
            api,
            "--platform-space",
            f"{org}:{space}",
        ]
        if key is not None:
            argv += ["--platform-api-key", key]
        proc = await asyncio.create_subprocess_exec(
            *argv,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            limit=64 * 1024 * 1024,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            with contextlib.suppress(ValueError):
                self.events.append(json.loads(line))
                self._new.set()

    async def wait_for(self, timeout: float = 15.0, **match: Any) -> dict[str, Any]:
        """The first event (old or new) whose fields equal `match`."""

        async def scan() -> dict[str, Any]:
            seen = 0
            while True:
                for ev in self.events[seen:]:
                    if all(ev.get(k) == v for k, v in match.items()):
                        return ev
                seen = len(self.events)
                self._new.clear()
                await self._new.wait()

        return await asyncio.wait_for(scan(), timeout)

    def count(self, **match: Any) -> int:
        return sum(all(ev.get(k) == v for k, v in match.items()) for ev in self.events)

    async def command(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd).encode() + b"\n")
        await self.proc.stdin.drain()

    async def request(
        self, method: str, path: str, timeout: float = 30.0, **extra: Any
    ) -> dict[str, Any]:
        self._req += 1
        req = self._req
        await self.command(
            {"cmd": "request", "req": req, "peer": 0, "method": method, "path": path, **extra}
        )
        return await self.wait_for(timeout, event="response", req=req)

    async def upload(self, path: str, size: int, timeout: float = 60.0) -> dict[str, Any]:
        self._req += 1
        req = self._req
        await self.command({"cmd": "upload", "req": req, "peer": 0, "path": path, "bytes": size})
        return await self.wait_for(timeout, event="response", req=req)

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()

    async def stop(self) -> None:
        if self.proc.returncode is None:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                await self.command({"cmd": "exit"})
            try:
                await asyncio.wait_for(self.proc.wait(), 5)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        self._reader.cancel()


async def join_hub(
    manager: Any, hub_id: str, *args: str, key: str | None = None, healthy: bool = False
) -> HubPeer:
    """Start a Hub peer in `manager`'s default Space and wait until /list shows it active
    (and, with `healthy`, healthy). The Hub's control channel opens just before the manager
    registers it, so `control_opened` alone is too early."""
    key = key or await manager.new_key()
    peer = await HubPeer.start(
        manager.url, manager.world.space_id, key, "--id", hub_id, "--load-interval", "300", *args
    )
    await peer.wait_for(event="control_opened")
    deadline = asyncio.get_running_loop().time() + 10

    def listed(hubs: list[dict[str, Any]]) -> bool:
        return any(
            h["id"] == hub_id and h["isConnectionActive"] and (h["healthy"] or not healthy)
            for h in hubs
        )

    while not listed(await manager.hubs()):
        assert asyncio.get_running_loop().time() < deadline, f"{hub_id} did not join"
        await asyncio.sleep(0.05)
    return peer
