"""A WebSocket tunnel whose path goes silent (no FIN, no RST) is dropped within 15 s: the
manager pings every 5 s and gives a pong 10 s (the LOAD health check backs it up)."""

from __future__ import annotations

from tests.connector.helpers import (
    Host018,
    connector_running,
    eventually,
    is_gone,
    is_healthy,
    options_at,
)
from tests.interop.test_blackhole import BlackholeRelay
from tests.running import RunningManager


async def test_silent_websocket_peer_is_dropped_within_15s(
    manager: RunningManager, host018: Host018
):
    relay = BlackholeRelay(manager.svc.settings.port)
    await relay.start()
    key = await manager.new_key()
    options = options_at(
        f"http://127.0.0.1:{relay.port}",
        manager.world.space_id,
        key,
        host018.url,
        hub_id="quiet-ws",
    )
    try:
        async with connector_running(options):
            await eventually(lambda: is_healthy(manager, "quiet-ws"), what="quiet-ws healthy")
            relay.swallow()
            took = await eventually(
                lambda: is_gone(manager, "quiet-ws"), timeout=20, what="silent tunnel dropped"
            )
            assert took <= 16.0, took
    finally:
        await relay.close()
