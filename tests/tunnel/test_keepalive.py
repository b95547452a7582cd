"""One keep-alive clock per loop instead of a timer per tunnel (manager/tunnel/keepalive.py):
every session still hears from us each interval, a closed one no more, and one failing
session does not silence the rest."""

from __future__ import annotations

import asyncio

import pytest

from manager.tunnel import keepalive, session
from manager.tunnel.keepalive import KeepAliveClock
from tests.conftest import eventually
from tests.tunnel.pair import FakeCarrier, session_pair

INTERVAL = 0.2


class Counted:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[float] = []
        self.fail = fail

    def keep_alive(self) -> None:
        self.calls.append(asyncio.get_running_loop().time())
        if self.fail:
            raise OSError("carrier gone")


async def test_each_session_is_kept_alive_every_interval_until_discarded():
    loop = asyncio.get_running_loop()
    clock = KeepAliveClock(loop, INTERVAL)
    first, broken, later = Counted(), Counted(fail=True), Counted()
    clock.add(first)
    clock.add(broken)
    await asyncio.sleep(INTERVAL / 2)
    clock.add(later)
    await asyncio.sleep(INTERVAL * 5.2)
    assert 4 <= len(first.calls) <= 6 and 4 <= len(broken.calls) <= 6
    assert len(later.calls) >= 4  # served after the one that raised, every time
    gaps = [b - a for a, b in zip(first.calls, first.calls[1:], strict=False)]
    assert all(INTERVAL * 0.9 <= gap <= INTERVAL * 1.6 for gap in gaps), gaps
    clock.discard(first)
    clock.discard(first)  # twice is fine
    before = len(first.calls)
    await asyncio.sleep(INTERVAL * 2.5)
    assert len(first.calls) == before and len(later.calls) >= 6
    clock.discard(broken)
    clock.discard(later)
    await asyncio.sleep(INTERVAL * 1.5)
    assert len(clock) == 0 and clock._timer is None  # no sessions, no timer


async def test_a_quiet_tunnel_still_sends_keep_alives_and_a_closed_one_stops(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setattr(session, "KEEP_ALIVE_S", INTERVAL)
    async with session_pair() as (manager, hub):
        carrier = manager.carrier
        assert isinstance(carrier, FakeCarrier)
        start = carrier.written
        await eventually(lambda: carrier.written >= start + 3 * 5, "three keep-alives", 3)
        heard = hub.last_frame_at
        await eventually(lambda: hub.last_frame_at > heard, "the Hub hears them", 3)
        clock = keepalive.clock_for(asyncio.get_running_loop(), INTERVAL)
        assert len(clock) == 2  # both ends of the pair
        manager.close("done")
        assert len(clock) == 1
        written = carrier.written
        await asyncio.sleep(INTERVAL * 2.5)
        assert carrier.written == written
