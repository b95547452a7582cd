"""Shared pieces of the connector tests: the real 0.18.7 Hub, the connector in-process or as
a `space-manager connect` process, and polling helpers that never block the event loop (the
manager under test runs in the same loop)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from manager.connector import Connector, ConnectorOptions, HubAddress
from manager.connector.policy import Backoff
from tests.conftest import need_service
from tests.running import RunningManager

HOST018 = Path(__file__).resolve().parents[1] / "interop" / "host018"
BIN = Path(sys.executable).parent / "space-manager"


def need_host018() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is needed for the 0.18.7 Hub tests")
    if not (HOST018 / "node_modules" / "@scramjet" / "host").exists():
        # `make test` installs them: a skip here, a failure in CI
        need_service(
            "tests/interop/host018/node_modules is missing: run `make node` "
            "(or `npm ci` in tests/interop/host018)"
        )
    return node


class Host018:
    """`node start-host.js`: the real @scramjet/host 0.18.7, process adapter, no platform."""

    def __init__(self, proc: subprocess.Popen[bytes], info: dict[str, Any]) -> None:
        self.proc = proc
        self.port = int(info["port"])
        self.url = f"http://127.0.0.1:{self.port}"

    @classmethod
    def start(cls, root: Path, port: int = 0) -> Host018:
        node = need_host018()
        root.mkdir(parents=True, exist_ok=True)
        with (root / "host.log").open("ab") as log:
            proc = subprocess.Popen(
                [
                    node,
                    "start-host.js",
                    "--port",
                    str(port),
                    "--sequences-root",
                    str(root / "seqs"),
                ],
                cwd=HOST018,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"host018 did not start: {(root / 'host.log').read_text()[-2000:]}")
        return cls(proc, json.loads(line))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def pack_hello(out: Path) -> Path:
    """hello-seq packed by host018's own pack-seq.js."""
    node = need_host018()
    subprocess.run(
        [node, "pack-seq.js", "hello-seq", str(out)], cwd=HOST018, check=True, capture_output=True
    )
    return out


def options_for(
    manager: RunningManager, key: str, hub_url: str, **overrides: Any
) -> ConnectorOptions:
    """Options joining `hub_url` to the test manager's Space, polling fast."""
    return options_at(manager.url, manager.world.space_id, key, hub_url, **overrides)


def options_at(url: str, space: str, key: str, hub_url: str, **overrides: Any) -> ConnectorOptions:
    values: dict[str, Any] = {
        "hub": HubAddress.parse(hub_url),
        "platform_api": url,
        "org": space.rsplit("-", 1)[0],
        "space": space,
        "key": key,
        "load_interval": 1.0,
        "poll_interval": 0.5,
    }
    values.update(overrides)
    return ConnectorOptions(**values)


class RunningConnector(Connector):
    """A connector with its `run()` task (which returns the stop reason, if it stops)."""

    task: asyncio.Task[str]


@contextlib.asynccontextmanager
async def connector_running(
    options: ConnectorOptions, environ: dict[str, str] | None = None
) -> AsyncIterator[RunningConnector]:
    """The connector in this event loop, with quick retries; cancelled on the way out."""
    connector = RunningConnector(options, backoff=Backoff(base=0.2, cap=1), environ=environ or {})
    connector.task = asyncio.ensure_future(connector.run())
    try:
        yield connector
    finally:
        connector.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await connector.task


class ConnectorProcess:
    """`space-manager connect ...` as a child process (for SIGKILL and exit codes)."""

    def __init__(self, proc: asyncio.subprocess.Process, log: Path) -> None:
        self.proc = proc
        self.log = log

    @classmethod
    async def start(
        cls, manager: RunningManager, key: str, hub_url: str, log: Path, *args: str
    ) -> ConnectorProcess:
        space = manager.world.space_id
        argv = [
            str(BIN),
            "connect",
            "--hub",
            hub_url,
            "--platform-api",
            manager.url,
            "--platform-space",
            f"{space.rsplit('-', 1)[0]}:{space}",
            "--load-interval",
            "1",
            "--poll-interval",
            "0.5",
            *args,
        ]
        env = {**os.environ, "PLATFORM_API_KEY": key, "PYTHONUNBUFFERED": "1"}
        with log.open("ab") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdout=err, stderr=err, stdin=asyncio.subprocess.DEVNULL, env=env
            )
        return cls(proc, log)

    def text(self) -> str:
        return self.log.read_text() if self.log.exists() else ""

    async def wait(self, timeout: float) -> int:
        return await asyncio.wait_for(self.proc.wait(), timeout)

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


async def hub_entry(manager: RunningManager, hub_id: str) -> dict[str, Any] | None:
    return next((h for h in await manager.hubs() if h["id"] == hub_id), None)


async def is_healthy(manager: RunningManager, hub_id: str) -> bool:
    entry = await hub_entry(manager, hub_id)
    return bool(entry and entry["healthy"] and entry["isConnectionActive"])


async def is_gone(manager: RunningManager, hub_id: str) -> bool:
    entry = await hub_entry(manager, hub_id)
    return entry is None or not entry["isConnectionActive"]
