"""A connected Hub's tunnel as the registry sees it: send a control message, or drop it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import httpcore

from manager.hubs.control import encode_message
from manager.tunnel.errors import TunnelError
from manager.tunnel.http import ControlStream
from manager.tunnel.pool import make_pool
from manager.tunnel.session import TunnelSession

log = logging.getLogger("manager.hubs")

FAREWELL_S = 0.3  # time for a last control message to leave before the socket closes


class TunnelLink:
    def __init__(
        self, session: TunnelSession, control: ControlStream, max_requests: int = 256
    ) -> None:
        self.session = session
        self.control = control
        self.max_requests = max_requests or session.max_channels
        self._pool: httpcore.AsyncConnectionPool | None = None

    @property
    def pool(self) -> httpcore.AsyncConnectionPool:
        """Keep-alive HTTP connections (channels) to the Hub, made on first use."""
        if self._pool is None:
            self._pool = make_pool(self.session, self.max_requests)
        return self._pool

    async def release(self) -> None:
        """Drop the pool with the tunnel: its channels are gone."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            with contextlib.suppress(Exception):
                await pool.aclose()

    async def send_control(self, code: int, payload: Any) -> None:
        with contextlib.suppress(TunnelError):
            await self.control.send_line(encode_message(code, payload))

    async def close(self, reason: str) -> None:
        self.session.close(reason)

    async def send_and_close(self, code: int, reason: str) -> None:
        """Tell the Hub to stop retrying (KEY_REVOKED, LIMIT_EXCEEDED, ID_DROP), then close."""
        try:
            await asyncio.wait_for(self.send_control(code, {}), FAREWELL_S * 3)
            await asyncio.sleep(FAREWELL_S)
        except TimeoutError:
            log.info("%s: could not deliver code %d before closing", self.session.name, code)
        self.session.close(reason)
