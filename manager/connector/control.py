"""The control channel, answered by the connector in the local Hub's name (spec §5).

The manager's `POST /api/v1/platform` gets `200` + chunked NDJSON: the opening snapshot,
then LOAD every `load_interval` and the events `ControlFeed` derives from polling the Hub
every `poll_interval`. The manager's own messages arrive in the request body: STH_ID renames
us, KEY_REVOKED / LIMIT_EXCEEDED / ID_DROP stop us. Writes wait for the manager's window, so a
manager that stops reading pauses our polling instead of growing a queue; its lines are
read with a capped buffer. When the Hub is down LOAD is skipped (the manager then shows the
Hub unhealthy) and polling goes on, so the Hub reappears by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import Any, Final, Protocol, TypeVar

import h11

from manager.connector.errors import LocalHubError
from manager.connector.feed import ControlFeed, Message
from manager.connector.head import HeadSniffer
from manager.connector.hubapi import LocalHub
from manager.connector.netinfo import network_info
from manager.connector.policy import STOP_MESSAGES
from manager.hubs.control import ControlDecoder, ControlMessage, encode_message
from manager.hubs.state import STH_ID
from manager.tunnel.channel import Channel
from manager.tunnel.errors import ChannelReset, TunnelClosed

__all__ = ["ControlChannel", "HubWatch", "SessionEvents"]

log = logging.getLogger("manager.connector")

MAX_LINE: Final = 1024 * 1024  # the manager's messages are tiny; never buffer more
ID_WAIT_S: Final = 3.0  # how long the snapshot waits for an id the manager is assigning
T = TypeVar("T")
_GONE = (ChannelReset, TunnelClosed)  # the channel or the tunnel went away


class SessionEvents(Protocol):
    """What the control channel tells the reconnect loop."""

    def identified(self, hub_id: str) -> None: ...

    def stop(self, reason: str) -> None: ...


class HubWatch:
    """Remembers whether the local Hub answered last time, to log changes only."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.up: bool | None = None

    async def ask(self, call: Awaitable[T]) -> T | None:
        try:
            value = await call
        except LocalHubError as exc:
            if self.up is not False:
                log.warning("local Hub %s not usable: %s (LOAD paused, retrying)", self.url, exc)
            self.up = False
            return None
        if self.up is False:
            log.info("local Hub %s answers again", self.url)
        self.up = True
        return value


class ControlChannel:
    def __init__(
        self,
        channel: Channel,
        sniffer: HeadSniffer,
        *,
        feed: ControlFeed,
        hub: LocalHub,
        watch: HubWatch,
        events: SessionEvents,
        load_interval: float,
        poll_interval: float,
    ) -> None:
        self.channel = channel
        self.sniffer = sniffer
        self.conn = sniffer.conn
        self.feed = feed
        self.hub = hub
        self.watch = watch
        self.events = events
        self.load_interval = load_interval
        self.poll_interval = poll_interval
        self.decoder = ControlDecoder(max_line=MAX_LINE)
        self.identified = asyncio.Event()
        if feed.hub_id:
            self.identified.set()
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Serve until the manager ends the request or the tunnel goes; a control channel
        that ends takes the tunnel with it (a Hub only resynchronises on a new tunnel)."""
        head = h11.Response(status_code=200, headers=[("Transfer-Encoding", "chunked")])
        await self.channel.write(self.conn.send(head) or b"")
        self._take_events()
        self.channel.consumed(self.sniffer.seen)
        if self.feed.hub_id:
            self.events.identified(self.feed.hub_id)
        reader = asyncio.ensure_future(self._read_manager())
        writer = asyncio.ensure_future(self._write_hub_state())
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            reader.cancel()
            writer.cancel()
            outcomes = await asyncio.gather(reader, writer, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception) and not isinstance(outcome, _GONE):
                log.warning("control channel failed: %r", outcome)
        self.channel.session.close("control channel ended")

    async def send(self, messages: list[Message]) -> None:
        async with self._lock:
            for code, payload in messages:
                data = self.conn.send(h11.Data(data=encode_message(code, payload)))
                if data:
                    await self.channel.write(data)

    # the manager's side

    async def _read_manager(self) -> None:
        while True:
            data = await self.channel.read()
            if not data:
                log.info("the manager ended the control channel")
                return
            self.conn.receive_data(data)
            ended = self._take_events()
            self.channel.consumed(len(data))
            if ended:
                return

    def _take_events(self) -> bool:
        """Fold in every complete message h11 has; True once the request body ended."""
        while True:
            try:
                event = self.conn.next_event()
            except h11.RemoteProtocolError as exc:
                log.warning("control channel: bad HTTP from the manager: %s", exc)
                return True
            if not isinstance(event, h11.Data):
                # NEED_DATA: wait for more; EndOfMessage or anything else: the request is over
                return event is not h11.NEED_DATA
            for message in self.decoder.feed(bytes(event.data)):
                self._on_message(message)

    def _on_message(self, message: ControlMessage) -> None:
        payload: Any = message.payload
        if message.code == STH_ID:
            new_id = payload.get("id") if isinstance(payload, dict) else None
            if isinstance(new_id, str) and new_id and new_id != self.feed.hub_id:
                self.feed.hub_id = new_id
                self.events.identified(new_id)
            self.identified.set()
        elif message.code in STOP_MESSAGES:
            self.events.stop(f"{STOP_MESSAGES[message.code]} (code {message.code})")

    # the Hub's side

    async def _write_hub_state(self) -> None:
        """The opening snapshot in a Hub's order, then LOAD and poll events for ever."""
        self.feed.reset()
        load = await self.watch.ask(self._load())
        if load is not None:
            await self.send([load])
        if not self.identified.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.identified.wait(), ID_WAIT_S)
        interfaces = await asyncio.to_thread(network_info)
        opening = [self.feed.network_info(interfaces)]
        snapshot = await self.watch.ask(self.hub.snapshot())
        if snapshot is not None:
            opening += self.feed.update(snapshot)
        await self.send(opening)
        try:
            async with asyncio.TaskGroup() as loops:  # one failing stops the other
                loops.create_task(self._load_loop())
                loops.create_task(self._poll_loop())
        except* _GONE:
            pass  # the channel went away: nothing left to say

    async def _load(self) -> Message:
        return self.feed.load(await self.hub.load_check())

    async def _load_loop(self) -> None:
        while True:
            await asyncio.sleep(self.load_interval)
            load = await self.watch.ask(self._load())
            if load is not None:
                await self.send([load])

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            snapshot = await self.watch.ask(self.hub.snapshot())
            if snapshot is not None:
                messages = self.feed.update(snapshot)
                if messages:
                    await self.send(messages)
