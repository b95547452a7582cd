"""Draining a replica before it stops (SIGTERM): let Hubs move elsewhere without a herd.

Why not just exit: every Hub of this replica would lose its tunnel at the same instant and
redial at once (a real STH retries every 2 s, in step), every proxied request in flight would
be cut, and a load balancer would keep sending clients here until its next probe. So:

1. `start`: /readyz turns 503 at once (the `draining` check) and the gate refuses new
   tunnels with a "try again" answer (CONNECT 503 + Retry-After, WebSocket 1013), so
   reconnecting Hubs land on another replica.
2. `run`: the tunnels are closed one by one, spread evenly over the drain window. At a
   Hub's turn no new request goes to it (503: it is reconnecting elsewhere), the ones in
   flight get up to the grace period to finish, then its tunnel closes (`Ending.DRAINING`).

The whole drain takes at most window + grace. What is not a tunnel (the listening socket,
idle keep-alive connections, uvicorn's exit) is the web layer's part (manager/web/server.py);
this module knows nothing of HTTP servers.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from manager.hubs.endings import Ending
from manager.hubs.gate import HubGate
from manager.hubs.registry import HubRegistry, LiveHub

log = logging.getLogger("manager.drain")

POLL_S = 0.05  # how often a Hub's turn looks at its requests in flight


def spread(count: int, window_s: float) -> list[float]:
    """When (seconds from the start) to close each of `count` tunnels: evenly over the
    window, the first at once, the last one step before its end."""
    if count <= 0:
        return []
    step = max(window_s, 0.0) / count
    return [i * step for i in range(count)]


@dataclass(frozen=True, slots=True)
class DrainReport:
    tunnels: int  # closed by the drain
    requests_cut: int  # still in flight when the grace period ended
    seconds: float


@dataclass(eq=False)
class Drain:
    registry: HubRegistry
    gate: HubGate
    grace_s: float
    window_s: float
    clock: Callable[[], float] = time.monotonic
    draining: bool = field(default=False, init=False)

    async def ready(self) -> bool:
        """The readiness check: not draining."""
        return not self.draining

    def start(self) -> None:
        """Not ready, and no new tunnels, from now on (idempotent)."""
        self.draining = True
        self.gate.draining = True

    async def run(self) -> DrainReport:
        """Close every tunnel, spread over the window; returns when the last one is closed."""
        self.start()
        began = self.clock()
        hubs = list(self.registry)
        in_flight = sum(h.in_flight for h in hubs)
        log.info(
            "drain started: %d tunnels, %d requests in flight; closing over %g s, "
            "requests get up to %g s",
            len(hubs),
            in_flight,
            self.window_s,
            self.grace_s,
        )
        offsets = spread(len(hubs), self.window_s)
        closes = (self._close(h, began + o) for h, o in zip(hubs, offsets, strict=True))
        cut = await asyncio.gather(*closes)
        # Tunnels admitted before the drain that settled their Hub id since then.
        seen = set(map(id, hubs))
        late = [h for h in self.registry if id(h) not in seen]
        cut += await asyncio.gather(*(self._close(h, self.clock()) for h in late))
        report = DrainReport(len(hubs) + len(late), sum(cut), self.clock() - began)
        log.info(
            "drain finished: %d tunnels closed, %d requests cut at the grace period, in %.1f s",
            report.tunnels,
            report.requests_cut,
            report.seconds,
        )
        return report

    async def _close(self, hub: LiveHub, at: float) -> int:
        """At `at`: refuse new requests to the Hub, give those in flight the grace period,
        close its tunnel. The number of requests cut short."""
        delay = at - self.clock()
        if delay > 0:
            await asyncio.sleep(delay)
        hub.client.close()
        deadline = self.clock() + self.grace_s
        while hub.in_flight and self.clock() < deadline:
            await asyncio.sleep(POLL_S)
        cut = hub.in_flight
        await hub.link.close(Ending.DRAINING)
        return cut
