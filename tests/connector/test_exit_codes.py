"""README "Join a Hub through a WebSocket": `space-manager connect` exits with code 3, stopped
for good, when the manager closes with 4409 (id already connected) or 4413 (Hub limit).

Two ways: against the real manager (a second connector with the id of a live one; a Space at
its Hub limit), where the manager also sends ID_DROP / LIMIT_EXCEEDED on the control channel
before it closes; and against a stand-in manager that only closes the WebSocket with the
code, so the close code alone is what stops the connector (and 4429 must not)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from tests.conftest import eventually, free_port
from tests.connector.fakehub import FakeHub
from tests.connector.helpers import ConnectorProcess, hub_entry, is_healthy
from tests.running import RunningManager

EXIT_STOPPED = 3
SPACE = "org-0000exit0000-manager"


@pytest.fixture
async def fake_hub() -> AsyncIterator[FakeHub]:
    hub = await FakeHub().start()
    try:
        yield hub
    finally:
        await hub.stop()


async def test_a_connector_with_the_id_of_a_live_one_exits_3(
    manager: RunningManager, fake_hub: FakeHub, tmp_path: Path
):
    key = await manager.new_key()
    first = await ConnectorProcess.start(
        manager, key, fake_hub.url, tmp_path / "first.log", "--id", "twin"
    )
    second: ConnectorProcess | None = None
    try:
        await eventually(lambda: is_healthy(manager, "twin"), what="the first twin healthy")
        second = await ConnectorProcess.start(
            manager, key, fake_hub.url, tmp_path / "second.log", "--id", "twin"
        )
        assert await second.wait(20) == EXIT_STOPPED, second.text()
        text = second.text()
        assert "stopped (" in text and ("4409" in text or "id dropped" in text), text
        assert text.count("connecting to") == 1  # it never tried again
        # The live one is untouched.
        assert first.proc.returncode is None
        assert await is_healthy(manager, "twin")
    finally:
        if second is not None:
            await second.stop()
        await first.stop()


async def test_a_connector_over_the_hub_limit_exits_3(
    manager: RunningManager, fake_hub: FakeHub, tmp_path: Path
):
    gate = manager.svc.gate
    gate.settings = dataclasses.replace(gate.settings, hub_limit=1)
    key = await manager.new_key()
    first = await ConnectorProcess.start(
        manager, key, fake_hub.url, tmp_path / "first.log", "--id", "only"
    )
    extra: ConnectorProcess | None = None
    try:
        await eventually(lambda: is_healthy(manager, "only"), what="the first Hub healthy")
        extra = await ConnectorProcess.start(
            manager, key, fake_hub.url, tmp_path / "extra.log", "--id", "extra"
        )
        assert await extra.wait(20) == EXIT_STOPPED, extra.text()
        text = extra.text()
        assert "stopped (" in text and ("4413" in text or "limit" in text.lower()), text
        assert text.count("connecting to") == 1
        assert await hub_entry(manager, "extra") is None
        assert first.proc.returncode is None and await is_healthy(manager, "only")
    finally:
        if extra is not None:
            await extra.stop()
        await first.stop()


@dataclass
class _World:
    space_id: str


@dataclass
class ClosingManager:
    """Accepts every WebSocket and closes it at once with `code` (nothing else is said)."""

    url: str
    world: _World
    attempts: int = 0


@pytest.fixture
def closing_code() -> int:
    return 4409


@pytest.fixture
async def closing_manager(closing_code: int) -> AsyncIterator[ClosingManager]:
    port = free_port()
    stand_in = ClosingManager(f"http://127.0.0.1:{port}", _World(SPACE))

    async def handler(ws: ServerConnection) -> None:
        stand_in.attempts += 1
        await ws.close(closing_code, "closed by the test")

    async with serve(handler, "127.0.0.1", port):
        yield stand_in


@pytest.mark.parametrize("closing_code", [4409, 4413])
async def test_close_code_alone_makes_the_connector_exit_3(
    closing_manager: ClosingManager, closing_code: int, tmp_path: Path
):
    hub_url = f"http://127.0.0.1:{free_port()}"  # never reached: the tunnel closes first
    proc = await ConnectorProcess.start(
        closing_manager,  # type: ignore[arg-type]  # has what start() reads: url, world
        "SCP-ak-0123456789abcdef-not-checked",
        hub_url,
        tmp_path / "connect.log",
        "--id",
        "closed",
    )
    try:
        assert await proc.wait(20) == EXIT_STOPPED, proc.text()
    finally:
        await proc.stop()
    assert f"close code {closing_code}" in proc.text()
    assert closing_manager.attempts == 1


@pytest.mark.parametrize("closing_code", [4429])
async def test_close_4429_is_retried_not_an_exit(
    closing_manager: ClosingManager, closing_code: int, tmp_path: Path
):
    proc = await ConnectorProcess.start(
        closing_manager,  # type: ignore[arg-type]
        "SCP-ak-0123456789abcdef-not-checked",
        f"http://127.0.0.1:{free_port()}",
        tmp_path / "connect.log",
        "--id",
        "retry",
    )
    try:

        async def retried() -> bool:
            return closing_manager.attempts >= 2

        await eventually(retried, timeout=15, what="a second attempt after 4429")
        assert proc.proc.returncode is None
    finally:
        await proc.stop()
    assert f"close code {closing_code}" in proc.text()
