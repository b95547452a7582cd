"""README "Connect a Hub": too many failed key proofs from one address get `429` for a
minute (WebSocket: close 4429), whatever key comes next; other addresses are not affected.

The minute is the gate's `FailureLimiter` window (10 failures within 60 s). Its clock is
`time.monotonic` as `manager.hubs.keys` sees it, so the tests swap that module's `time` for a
clock they move by hand instead of waiting a minute (the event loop keeps the real one).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from manager.hubs import keys
from manager.services.context import Services
from tests.conftest import SQLITE_ONLY, World
from tests.running import RunningManager, manager

__all__ = ["manager"]

pytestmark = SQLITE_ONLY  # the limiter keeps no state in the database

MAX_FAILURES = 10  # README says "too many"; the gate's FailureLimiter default is 10
WINDOW_S = 60.0  # "for a minute"


class Clock:
    """Stands in for the `time` module inside `manager.hubs.keys` only."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(keys, "time", fake)
    return fake


def _target(space_id: str) -> str:
    return f"/api/v1/{space_id.rsplit('-', 1)[0]}/{space_id}/"


async def _proof_header(key: str) -> str:
    """A Hub's key proof (scrypt: run off the event loop the manager shares)."""
    return f'Digest cnonce="{await asyncio.to_thread(keys.make_proof, key)}"'


def _foreign_key() -> str:
    """A well-formed key this manager never issued (another manager's secret)."""
    return keys.derive_key(b"another manager's secret", keys.new_prefix())


async def _new_key(svc: Services, space_id: str) -> str:
    async with svc.sessions() as s, s.begin():
        return (await svc.keys.create(s, space_id, "limiter test")).key


async def _answer(svc: Services, space_id: str, key: str, peer: str) -> int:
    """The gate's answer for a tunnel from `peer` with a proof of `key`: 200 or a refusal."""
    hello = await svc.gate.check(
        _target(space_id), {"authorization": await _proof_header(key), "x-sth-id": "h"}, peer
    )
    if isinstance(hello, int):
        return hello
    hello.slot.release()
    return 200


async def test_failed_proofs_block_the_address_for_a_minute(
    svc: Services, world: World, clock: Clock
):
    key = await _new_key(svc, world.space_id)
    bad = _foreign_key()
    for _ in range(MAX_FAILURES - 1):
        assert await _answer(svc, world.space_id, bad, "10.9.0.1") == 403
    # Nine failures: the right key still gets in.
    assert await _answer(svc, world.space_id, key, "10.9.0.1") == 200
    assert await _answer(svc, world.space_id, bad, "10.9.0.1") == 403  # the tenth
    scrypt_runs = svc.gate.proofs.scrypt_runs

    # From now on the address gets 429, even with the right key, and costs no scrypt run.
    assert await _answer(svc, world.space_id, key, "10.9.0.1") == 429
    assert await _answer(svc, world.space_id, bad, "10.9.0.1") == 429
    assert svc.gate.proofs.scrypt_runs == scrypt_runs
    assert svc.gate.refused.get("failed_proofs") == 2
    # Only that address: another one is admitted meanwhile.
    assert await _answer(svc, world.space_id, key, "10.9.0.2") == 200

    clock.now += WINDOW_S - 0.5
    assert await _answer(svc, world.space_id, key, "10.9.0.1") == 429  # still inside the minute
    clock.now += 0.5
    assert await _answer(svc, world.space_id, key, "10.9.0.1") == 200  # the minute is over
    # The slate is clean: one more failure does not block it again.
    assert await _answer(svc, world.space_id, bad, "10.9.0.1") == 403
    assert await _answer(svc, world.space_id, key, "10.9.0.1") == 200


async def _connect_status(
    manager: RunningManager, authorization: str, source: str = "127.0.0.1"
) -> int:
    """Status of a Hub's `CONNECT` from `source` (a loopback address); the socket is closed."""
    space = manager.world.space_id
    head = (
        f"CONNECT {_target(space)} HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: {authorization}\r\n"
        f"x-sth-id: limiter-hub\r\nx-sth-description: limiter\r\n\r\n"
    ).encode()
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", manager.svc.settings.port, local_addr=(source, 0)
    )
    try:
        writer.write(head)
        await writer.drain()
        status_line = await asyncio.wait_for(reader.readuntil(b"\r\n"), 15)
        return int(status_line.split(b" ", 2)[1])
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()


@contextlib.asynccontextmanager
async def _websocket(manager: RunningManager, key: str) -> AsyncIterator[Any]:
    space = manager.world.space_id
    url = f"ws://127.0.0.1:{manager.svc.settings.port}{_target(space)}"
    async with ws_connect(url, additional_headers={"Authorization": f"Bearer {key}"}) as ws:
        yield ws


async def _ws_close_code(manager: RunningManager, key: str) -> int | None:
    async with _websocket(manager, key) as ws:
        with contextlib.suppress(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), 10)
        return ws.close_code


async def test_connect_and_websocket_get_429_until_the_minute_is_over(
    manager: RunningManager, clock: Clock
):
    key = await manager.new_key("limited")
    bad = _foreign_key()
    for _ in range(MAX_FAILURES):
        assert await _connect_status(manager, await _proof_header(bad)) == 403
    # The address is blocked: the right key gets 429 on CONNECT and 4429 on a WebSocket.
    assert await _connect_status(manager, await _proof_header(key)) == 429
    assert await _ws_close_code(manager, key) == 4429
    # Another address is not: 127.0.0.2 is admitted with the same key meanwhile.
    assert await _connect_status(manager, await _proof_header(key), source="127.0.0.2") == 200

    clock.now += WINDOW_S - 1
    assert await _connect_status(manager, await _proof_header(key)) == 429
    clock.now += 1
    assert await _connect_status(manager, await _proof_header(key)) == 200
    metrics = (await manager.client.get("/api/v1/metrics")).text
    assert 'manager_tunnels_refused_total{reason="failed_proofs"} 3' in metrics, metrics
