"""When to come back and when to give up: reconnect back-off and the manager's stop signals.

Sans-I/O so the rules are tested with a fake random source. A real Hub retries every 2 s
forever; a fleet of connectors behind one NAT doing that after a manager restart is a
thundering herd, so we use exponential back-off with *full* jitter (the delay is uniform in
[0, min(cap, base·2^n)]) and forget the failures once a connection has proved itself by
living longer than `reset_after`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

from manager.hubs.state import ID_DROP, KEY_REVOKED, LIMIT_EXCEEDED

__all__ = ["STOP_CLOSE_CODES", "STOP_MESSAGES", "Backoff", "close_verdict"]

# Close codes of the manager's WebSocket endpoint that mean "do not come back"
# (manager/web/tunnel_routes.py); everything else is worth another try.
STOP_CLOSE_CODES: Final = {
    4403: "access key refused",
    4401: "access key revoked",
    4409: "id already connected",
    4413: "Hub limit reached",
}
RETRY_LATER: Final = {
    4429: "too many failed attempts",
    1012: "the manager replica is draining",
    1013: "the manager replica is draining or busy admitting others",
}
# Control messages that make a real Hub abandon the platform (hub-protocol.md §5.6).
STOP_MESSAGES: Final = {
    KEY_REVOKED: "access key revoked",
    LIMIT_EXCEEDED: "Hub limit reached",
    ID_DROP: "id dropped by the manager (already connected?)",
}


def close_verdict(code: int | None, reason: str | None) -> tuple[bool, str]:
    """(stop for good?, words for the log) for a WebSocket close."""
    if code in STOP_CLOSE_CODES:
        return True, f"{STOP_CLOSE_CODES[code]} (close code {code})"
    if code in RETRY_LATER:
        return False, f"{RETRY_LATER[code]} (close code {code})"
    if code is None:
        return False, "connection lost"
    text = f"close code {code}"
    return False, f"{text}: {reason}" if reason else text


class Backoff:
    """Delays between connection attempts: exponential, capped, fully jittered."""

    def __init__(
        self,
        base: float = 1.0,
        cap: float = 60.0,
        reset_after: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.base = base
        self.cap = cap
        self.reset_after = reset_after
        self.failures = 0
        self._rand = rand

    def ceiling(self) -> float:
        """The largest delay the next failure can draw."""
        if self.base <= 0:
            return 0.0
        exponent = min(self.failures, 62)  # 2**62 · base is far past any cap
        return float(min(self.cap, self.base * (2**exponent)))

    def next_delay(self, connected_for: float | None = None) -> float:
        """The wait before the next attempt. `connected_for` is how long the last tunnel
        lived (None if it never opened); a long-lived one resets the count first."""
        if connected_for is not None and connected_for > self.reset_after:
            self.failures = 0
        delay = self._rand() * self.ceiling()
        self.failures += 1
        return delay
