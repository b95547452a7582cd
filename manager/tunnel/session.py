"""Pumps one carrier through a Mux and hands out Channels.

The carrier (a CONNECT socket or a WebSocket) pushes bytes in with `feed`; frames go out
through `Carrier.write` in the order the Mux queued them. Peer-opened channels are given to
`on_channel` in their own task. Either end of a tunnel can be run: the manager's (channels
from the high range, as by default) or a Hub's (`high_channels=False`, usually with
`explicit_consume` so window goes back only as the Hub takes the bytes). Knows nothing of
Spaces, keys or HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from manager.mux import (
    ChannelClosed,
    ChannelEnded,
    ChannelOpened,
    ConnectionFailed,
    DataReceived,
    HandshakeCompleted,
    Mux,
    UsageError,
    WindowUpdated,
)
from manager.tunnel.channel import Channel
from manager.tunnel.errors import ChannelOpenTimeout, ChannelReset, TooManyChannels, TunnelClosed
from manager.tunnel.keepalive import clock_for

log = logging.getLogger("manager.tunnel")

DEFAULT_WINDOW = 256 * 1024
KEEP_ALIVE_S = 30.0
MAX_CHANNELS = 1024


class Carrier(Protocol):
    """The byte pipe under a session."""

    def write(self, chunks: list[bytes]) -> None: ...

    def close(self) -> None: ...


ChannelHandler = Callable[[Channel], Awaitable[None]]


class TunnelSession:
    def __init__(
        self,
        carrier: Carrier,
        *,
        name: str = "tunnel",
        window: int = DEFAULT_WINDOW,
        max_channels: int = MAX_CHANNELS,
        on_channel: ChannelHandler | None = None,
        high_channels: bool = True,
        explicit_consume: bool = False,
    ) -> None:
        self.carrier = carrier
        self.name = name
        self.window = window
        self.max_channels = max_channels
        self.on_channel = on_channel
        # Whether `Channel.read` counts as consumed or the reader calls `Channel.consumed`.
        self.explicit_consume = explicit_consume
        # The manager opens high-numbered channels, a Hub low ones (hub-protocol.md).
        self.mux = Mux(window=window, high_channels=high_channels)
        self.channels: dict[int, Channel] = {}
        self.last_frame_at = time.monotonic()
        self.close_reason: str | None = None
        self.closed = asyncio.Event()
        self._carrier_ready = asyncio.Event()
        self._carrier_ready.set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._loop = asyncio.get_running_loop()
        self._flush_scheduled = False
        self._keepalive = clock_for(self._loop, KEEP_ALIVE_S)
        self._keepalive.add(self)

    @property
    def is_closed(self) -> bool:
        return self.closed.is_set()

    # carrier side

    def feed(self, data: bytes) -> None:
        if self.is_closed:
            return
        self.last_frame_at = time.monotonic()
        self.mux.receive_data(data)
        self._dispatch()
        self.flush()

    def feed_eof(self, reason: str = "carrier closed") -> None:
        self.close(reason)

    def pause_writing(self) -> None:
        self._carrier_ready.clear()

    def resume_writing(self) -> None:
        self._carrier_ready.set()

    def flush(self) -> None:
        """Write pending frames at the end of this loop iteration, so the frames produced
        by one burst of work (a request head, STATUS reports, ENDs) leave in one syscall."""
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush_now)

    def _flush_now(self) -> None:
        self._flush_scheduled = False
        chunks = self.mux.data_to_send()
        if chunks and not self.is_closed:
            self.carrier.write(chunks)

    # channel side

    async def open_channel(self, timeout: float = 10.0) -> Channel:
        if self.is_closed:
            raise TunnelClosed(self.close_reason or "tunnel closed")
        if len(self.channels) >= self.max_channels:
            raise TooManyChannels(f"{self.name}: {self.max_channels} channels open")
        number = self.mux.open_channel()
        channel = Channel(self, number, ours=True)
        self.channels[number] = channel
        self.flush()
        try:
            await asyncio.wait_for(channel.opened.wait(), timeout)
        except TimeoutError:
            channel.abort()
            raise ChannelOpenTimeout(f"{self.name}: no answer to channel {number}") from None
        if self.is_closed:
            raise TunnelClosed(self.close_reason or "tunnel closed")
        return channel

    async def writable(self) -> None:
        await self._carrier_ready.wait()

    def allowance(self, number: int) -> int:
        return self.mux.allowance(number)

    def send(self, number: int, data: memoryview) -> int:
        try:
            sent = self.mux.send(number, data)
        except UsageError as exc:
            raise TunnelClosed(str(exc)) from None
        if sent:
            self.flush()
        return sent

    def end(self, number: int, *, error: bool = False) -> None:
        self.mux.end(number, error=error)
        self._dispatch()
        self.flush()

    def consumed(self, number: int, n: int) -> None:
        with contextlib.suppress(UsageError):
            self.mux.consumed(number, n)
        self.flush()

    def close(self, reason: str) -> None:
        """Drop the carrier and every channel on it."""
        if self.is_closed:
            return
        self.mux.receive_eof()
        self._dispatch()
        self._finish(reason)

    # internals

    def _dispatch(self) -> None:
        for event in self.mux.events_received():
            if isinstance(event, DataReceived):
                ch = self.channels.get(event.channel)
                if ch is not None:
                    ch.on_data(event.data)
            elif isinstance(event, WindowUpdated):
                ch = self.channels.get(event.channel)
                if ch is not None:
                    ch.on_window()
            elif isinstance(event, ChannelOpened):
                self._peer_opened(event.channel)
            elif isinstance(event, HandshakeCompleted):
                ch = self.channels.get(event.channel)
                if ch is not None:
                    ch.on_handshake()
            elif isinstance(event, ChannelEnded):
                ch = self.channels.get(event.channel)
                if ch is not None:
                    ch.on_end(event.error)
            elif isinstance(event, ChannelClosed):
                ch = self.channels.pop(event.channel, None)
                if ch is not None:
                    ch.on_closed()
            elif isinstance(event, ConnectionFailed):
                log.warning("%s: closing tunnel: %s", self.name, event.reason)
                self._finish(f"protocol error: {event.reason}")
                return

    def _peer_opened(self, number: int) -> None:
        channel = Channel(self, number, ours=False)
        self.channels[number] = channel
        if self.on_channel is None or len(self.channels) > self.max_channels:
            if self.on_channel is not None:
                log.warning(
                    "%s: refused channel %d: %d channels open is the limit",
                    self.name,
                    number,
                    self.max_channels,
                )
            channel.abort()
            return
        task = asyncio.get_running_loop().create_task(self._serve(channel))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _serve(self, channel: Channel) -> None:
        assert self.on_channel is not None
        try:
            await self.on_channel(channel)
        except (TunnelClosed, ChannelReset) as exc:  # it went away under the handler
            log.debug("%s: channel %d gone: %r", self.name, channel.number, exc)
        except Exception as exc:  # one bad request must not take the tunnel down
            log.warning("%s: channel %d handler failed: %r", self.name, channel.number, exc)
        finally:
            channel.abort()

    def keep_alive(self) -> None:
        """Called every KEEP_ALIVE_S by the loop's clock (manager.tunnel.keepalive)."""
        self.mux.keep_alive()
        self.flush()

    def _finish(self, reason: str) -> None:
        if self.is_closed:
            return
        self.close_reason = reason
        self._keepalive.discard(self)
        for ch in list(self.channels.values()):
            ch.on_closed(error=True)
        self.channels.clear()
        self.closed.set()
        self._carrier_ready.set()
        for task in list(self._tasks):
            task.cancel()
        if self._flush_scheduled and (chunks := self.mux.data_to_send()):
            self.carrier.write(chunks)  # last words (an END, a control line) go out first
        self.carrier.close()
