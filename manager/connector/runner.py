"""The connector's life: connect, serve the tunnel, come back after failures, stop when told.

One `Connector` per local Hub. Each attempt opens the WebSocket (TLS and proxy per the
options), runs the Hub's end of a `TunnelSession` over it (low channel numbers, window given
back only as handlers consume, so a slow local Hub slows the manager down instead of filling
our memory) and routes each channel by its request head: the control channel is answered
here, everything else is forwarded to the Hub. Between attempts it waits
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
from manager.hubs.keys import make_proof
from manager.tunnel.channel import Channel
from manager.tunnel.session import ChannelHandler, TunnelSession
from manager.tunnel.websocket import ClientSocket, MessageSocket, WebSocketCarrier, close_code_for

__all__ = ["Connector", "hub_end"]

log = logging.getLogger("manager.connector")

MAX_INCOMING: Final = 8 * 1024 * 1024  # the manager sends messages of up to 4 MiB
PING_S: Final = 10.0  # our own pings: a dead manager is noticed within 20 s
OPEN_TIMEOUT_S: Final = 15.0
FAREWELL_S: Final = 2.0  # after a stop message, how long the manager gets to close first
WINDOW: Final = 512 * 1024  # what the manager may send per channel before we consume it
MAX_MESSAGE: Final = 1024 * 1024  # the manager refuses messages over 4 MiB
HIGH_WATER: Final = 2 * 1024 * 1024  # queued for the WebSocket before writers pause
LOW_WATER: Final = 512 * 1024


def hub_end(
    socket: MessageSocket, on_channel: ChannelHandler, *, name: str
) -> tuple[TunnelSession, WebSocketCarrier]:
    """A Hub's end of a tunnel over `socket`; run it with `carrier.carry(session)`."""
    carrier = WebSocketCarrier(
        socket, max_message=MAX_MESSAGE, high_water=HIGH_WATER, low_water=LOW_WATER
    )
    session = TunnelSession(
        carrier,
        name=name,
        window=WINDOW,
        on_channel=on_channel,
        high_channels=False,
        explicit_consume=True,
    )
    return session, carrier


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
        self._tunnel: TunnelSession | None = None
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

    async def _close_later(self, tunnel: TunnelSession) -> None:
        """The manager closes with its own code right after a stop message; if it does not,
        we close after a grace period rather than sit on a tunnel we must not use."""
        await asyncio.sleep(FAREWELL_S)
        tunnel.close("stopping")

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
                tunnel, carrier = hub_end(
                    ClientSocket(ws), self._serve_channel, name=f"tunnel to {url}"
                )
                self._tunnel = tunnel
                try:
                    await carrier.carry(tunnel)
                finally:
                    self._tunnel = None
            stop, words = close_verdict(ws.close_code, ws.close_reason)
            ours = tunnel.close_reason or ""
            if close_code_for(ours)[0] != 1000:  # we hung up: the manager broke the protocol
                words = ours
        except InvalidStatus as exc:
            stop, words = False, f"could not connect: HTTP {exc.response.status_code}"
        except (OSError, TimeoutError, WebSocketException) as exc:
            stop, words = False, f"could not connect: {str(exc) or type(exc).__name__}"
        if stop and self.stop_reason is None:
            self.stop_reason = words
        lived = None if opened is None else time.monotonic() - opened
        return Attempt(words, lived)

    async def _serve_channel(self, channel: Channel) -> None:
        """Route one manager-opened channel by its request head."""
        sniffer = HeadSniffer()
        head = None
        while head is None:
            data = await channel.read()
            try:
                head = sniffer.feed(data)
            except BadRequestHead as exc:
                if sniffer.seen:
                    log.warning("channel %d: not an HTTP request (%s)", channel.number, exc)
                channel.consumed(sniffer.seen)
                with contextlib.suppress(Exception):
                    await channel.write(simple_response(sniffer.conn, 400, "Bad Request"))
                await channel.end()
                return
        if not head.is_control:
            await forward(channel, head, sniffer, self.options.hub)
            return
        assert self._hub is not None
        await ControlChannel(
            channel,
            sniffer,
            feed=self.feed,
            hub=self._hub,
            watch=self.watch,
            events=self,
            load_interval=self.options.load_interval,
            poll_interval=self.options.poll_interval,
        ).run()
