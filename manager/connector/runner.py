"""The connector's life: connect, serve the tunnel, come back after failures, stop when told.

One `Connector` per local Hub. Each attempt opens the WebSocket (TLS and proxy per the
options), wraps it in a `Tunnel` and routes each channel by its request head: the control
channel is answered here, everything else is forwarded to the Hub. Between attempts it waits
as `Backoff` says; the manager's refusals (close codes, KEY_REVOKED and friends) end it for
good, like a real Hub. It logs one line per change of state and never the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus, WebSocketException

from manager import __version__
from manager.connector.control import ControlChannel, HubWatch
from manager.connector.errors import BadRequestHead
from manager.connector.feed import ControlFeed
from manager.connector.forward import forward
from manager.connector.head import HeadSniffer, simple_response
from manager.connector.hubapi import LocalHub
from manager.connector.options import ConnectorOptions, choose_proxy, redact_url, tunnel_headers
from manager.connector.policy import Backoff, close_verdict
from manager.connector.tunnel import ChannelPort, Tunnel
from manager.hubs.keys import make_proof

__all__ = ["Connector"]

log = logging.getLogger("manager.connector")

MAX_INCOMING: Final = 8 * 1024 * 1024  # the manager sends messages of up to 4 MiB
PING_S: Final = 10.0  # our own pings: a dead manager is noticed within 20 s
OPEN_TIMEOUT_S: Final = 15.0
FAREWELL_S: Final = 2.0  # after a stop message, how long the manager gets to close first


@dataclass(frozen=True, slots=True)
class Attempt:
    """How one connection attempt ended."""

    reason: str
    connected_for: float | None  # None: the WebSocket never opened


class Connector:
    def __init__(
        self,
        options: ConnectorOptions,
        *,
        backoff: Backoff | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.options = options
        self.backoff = backoff or Backoff()
        self.feed = ControlFeed(options.hub_id)
        self.watch = HubWatch(options.hub.url)
        self.proxy = choose_proxy(options.url, os.environ if environ is None else environ)
        self.ssl = options.ssl_context()
        self.connected = asyncio.Event()  # set while a control channel runs (for callers)
        self.stop_reason: str | None = None
        self._tunnel: Tunnel | None = None
        self._proof: str | None = None
        self._hub: LocalHub | None = None
        self._farewell: asyncio.Future[None] | None = None

    @property
    def hub_id(self) -> str:
        return self.feed.hub_id

    async def run(self) -> str:
        """Serve and reconnect until stopped for good; returns why."""
        # Like a Hub, prove the key once per process (scrypt is slow on purpose).
        self._proof = await asyncio.to_thread(make_proof, self.options.key)
        self._hub = LocalHub(self.options.hub)
        try:
            while True:
                attempt = await self._attempt()
                self.connected.clear()
                if self.stop_reason is not None:
                    log.error("stopped (%s)", self.stop_reason)
                    return self.stop_reason
                delay = self.backoff.next_delay(attempt.connected_for)
                log.warning("disconnected (%s)", attempt.reason)
                log.info("retrying in %.1fs", delay)
                await asyncio.sleep(delay)
        finally:
            if self._farewell is not None:
                self._farewell.cancel()
            await self._hub.aclose()

    # SessionEvents, called by the control channel

    def identified(self, hub_id: str) -> None:
        self.connected.set()
        log.info("connected as %s", hub_id)

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        tunnel = self._tunnel
        if tunnel is not None and self._farewell is None:
            self._farewell = asyncio.ensure_future(self._close_later(tunnel))

    async def _close_later(self, tunnel: Tunnel) -> None:
        """The manager closes with its own code right after a stop message; if it does not,
        we close after a grace period rather than sit on a tunnel we must not use."""
        await asyncio.sleep(FAREWELL_S)
        await tunnel.close(1000, "stopping")

    # one attempt

    async def _attempt(self) -> Attempt:
        url = self.options.url
        via = f" via proxy {redact_url(self.proxy)}" if self.proxy else ""
        log.info("connecting to %s as %s%s", url, self.hub_id or "(an id the manager assigns)", via)
        assert self._proof is not None
        headers = tunnel_headers(self.options, self.hub_id, self._proof)
        opened: float | None = None
        try:
            async with connect(
                url,
                additional_headers=headers,
                ssl=self.ssl,
                proxy=self.proxy,
                compression=None,  # BPMux payloads are mostly already compressed or binary
                max_size=MAX_INCOMING,
                ping_interval=PING_S,
                ping_timeout=PING_S,
                open_timeout=OPEN_TIMEOUT_S,
                user_agent_header=f"space-manager-connect/{__version__}",
            ) as ws:
                opened = time.monotonic()
                tunnel = Tunnel(ws, self._serve_channel, name=f"tunnel to {url}")
                self._tunnel = tunnel
                try:
                    await tunnel.run()
                finally:
                    self._tunnel = None
            stop, words = close_verdict(ws.close_code, ws.close_reason)
            if tunnel.failure is not None:
                words = tunnel.failure
        except InvalidStatus as exc:
            stop, words = False, f"could not connect: HTTP {exc.response.status_code}"
        except (OSError, TimeoutError, WebSocketException) as exc:
            stop, words = False, f"could not connect: {str(exc) or type(exc).__name__}"
        if stop and self.stop_reason is None:
            self.stop_reason = words
        lived = None if opened is None else time.monotonic() - opened
        return Attempt(words, lived)

    async def _serve_channel(self, port: ChannelPort) -> None:
        """Route one manager-opened channel by its request head."""
        sniffer = HeadSniffer()
        head = None
        while head is None:
            data = await port.read()
            try:
                head = sniffer.feed(data)
            except BadRequestHead as exc:
                if sniffer.seen:
                    log.warning("channel %d: not an HTTP request (%s)", port.number, exc)
                port.consumed(sniffer.seen)
                with contextlib.suppress(Exception):
                    await port.write(simple_response(sniffer.conn, 400, "Bad Request"))
                port.end()
                return
        if not head.is_control:
            await forward(port, head, sniffer, self.options.hub)
            return
        assert self._hub is not None
        await ControlChannel(
            port,
            sniffer,
            feed=self.feed,
            hub=self._hub,
            watch=self.watch,
            events=self,
            load_interval=self.options.load_interval,
            poll_interval=self.options.poll_interval,
        ).run()
