"""Every tunnel's keep-alive from one timer per event loop.

Why not a timer per session: each `call_later` is a TimerHandle, a bound method and a
context copy that live the whole interval (30 s), so they outlive the young garbage
collections and are promoted to the oldest generation: at 10,000 Hubs ~1,000 objects a
second (seen among the survivors of generation-1 collections under `bench.scale`), each
counted towards the next full collection, which walks every Hub's objects with the event
loop stopped.

All sessions share the interval, so the order in which they come due is the order they
were added (or last served): an ordered dict is the whole schedule, with O(1) adding,
removing and taking the first; a tick once a second serves the ones due.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import OrderedDict
from typing import Protocol

log = logging.getLogger("manager.tunnel")

TICK_S = 1.0


class KeepsAlive(Protocol):
    def keep_alive(self) -> None: ...


class KeepAliveClock:
    """Calls `keep_alive()` on each added session every `interval` s (give or take a tick)
    until it is discarded."""

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.loop = loop
        self.interval = interval
        self.tick = min(TICK_S, interval)
        self._due: OrderedDict[KeepsAlive, float] = OrderedDict()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, session: KeepsAlive) -> None:
        self._due[session] = self.loop.time() + self.interval
        if self._timer is None:
            self._timer = self.loop.call_later(self.tick, self._run)

    def discard(self, session: KeepsAlive) -> None:
        self._due.pop(session, None)

    def __len__(self) -> int:
        return len(self._due)

    def _run(self) -> None:
        self._timer = None
        now = self.loop.time()
        due = self._due
        while due:
            session, at = next(iter(due.items()))
            if at > now:
                break
            due.move_to_end(session)
            due[session] = now + self.interval
            try:
                session.keep_alive()
            except Exception:  # one broken carrier must not stop every other keep-alive
                log.exception("keep-alive failed")
        if due:
            self._timer = self.loop.call_later(self.tick, self._run)


_clocks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, KeepAliveClock] = (
    weakref.WeakKeyDictionary()
)


def clock_for(loop: asyncio.AbstractEventLoop, interval: float) -> KeepAliveClock:
    """The loop's clock (one per loop: the tests run many loops in one process)."""
    found = _clocks.get(loop)
    if found is None:
        found = _clocks[loop] = KeepAliveClock(loop, interval)
    return found
