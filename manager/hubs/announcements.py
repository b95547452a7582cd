"""Waiting for a Hub to announce, on its control channel, that it provides a topic.

Why: STH 1.0.1 answers `POST /api/v1/topic/<name>` (without a `cpm` header) only after it
has written `TOPIC {provides: name}` to its control channel *and then* seen the request end;
it starts listening for the end only once that write is done. A request whose end reaches
the Hub first (as it does through a tunnel, where the head, body and end arrive together)
is never answered. The proxy therefore holds back the end of such a request until the
announcement has arrived here (or a timeout passed), which the Hub writes before it starts
listening.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class TopicAnnouncements:
    """Who is waiting for which topic's `provides` announcement from one Hub."""

    def __init__(self) -> None:
        self._waiting: dict[str, set[asyncio.Future[None]]] = {}

    def expect(self, name: str) -> Expected:
        """Start listening before the request goes out, so no announcement is missed."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(name, set()).add(future)
        return Expected(self, name, future)

    def received(self, payload: Any) -> None:
        """Fold in one TOPIC message's payload."""
        if not isinstance(payload, dict) or payload.get("status") == "remove":
            return
        name = payload.get("provides")
        if not isinstance(name, str):
            return
        for future in self._waiting.pop(name, ()):
            if not future.done():
                future.set_result(None)

    def _forget(self, name: str, future: asyncio.Future[None]) -> None:
        waiting = self._waiting.get(name)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[name]

    def __len__(self) -> int:
        return sum(len(w) for w in self._waiting.values())


class Expected:
    """One request's wait for one announcement; `cancel` when the request ends early."""

    def __init__(self, owner: TopicAnnouncements, name: str, future: asyncio.Future[None]):
        self.owner = owner
        self.name = name
        self.future = future

    async def wait(self, timeout: float) -> bool:
        """True once announced, False after `timeout`; either way no longer registered."""
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.future), timeout)
            return self.future.done()
        finally:
            self.cancel()

    def cancel(self) -> None:
        self.owner._forget(self.name, self.future)
        self.future.cancel()
