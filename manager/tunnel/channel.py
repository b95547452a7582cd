"""One BPMux channel as an async byte stream with back-pressure both ways.

Reading gives window back to the peer (STATUS) only as the application consumes, so a
slow reader pauses the Hub instead of growing a buffer; writing waits for the peer's
window and for the carrier to drain. By default what `read` returns counts as consumed; in
a session with `explicit_consume` the reader says so itself (`consumed`) once the bytes are
where they were going, so a slow destination behind the reader holds the peer back too.
Owns no protocol logic: the Mux decides the frames.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from manager.tunnel.errors import ChannelReset, TunnelClosed

if TYPE_CHECKING:
    from manager.tunnel.session import TunnelSession


class Channel:
    def __init__(self, session: TunnelSession, number: int, *, ours: bool) -> None:
        self.session = session
        self.number = number
        self.ours = ours
        self._inbox = bytearray()
        self._unreported = 0  # bytes consumed but not yet reported with STATUS
        self._held = 0  # explicit_consume: bytes read but not yet `consumed`
        self._eof = False
        self._error = False
        self._ended = False
        self._half_closed = False  # we sent END (or ERROR_END)
        self._discard = False
        self._sink: Callable[[bytes], None] | None = None
        self._sink_ended = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self.opened = asyncio.Event()
        self.closed = asyncio.Event()
        if not ours:
            self.opened.set()
            self._writable.set()

    # events from the session

    def on_handshake(self) -> None:
        self.opened.set()
        self._writable.set()

    def on_data(self, data: bytes) -> None:
        if self._discard:
            self.session.consumed(self.number, len(data))
            return
        if self._sink is not None:
            self._consumed(len(data))
            self._sink(data)
            return
        self._inbox += data
        self._readable.set()

    def on_end(self, error: bool) -> None:
        self._eof = True
        self._error = self._error or error
        self._readable.set()
        self._sink_eof()
        if error:
            self._writable.set()  # a writer waiting for window learns of the reset

    def on_window(self) -> None:
        self._writable.set()

    def on_closed(self, error: bool = False) -> None:
        self._eof = True
        self._ended = True
        self._error = self._error or error
        self._readable.set()
        self._writable.set()
        self.opened.set()
        self.closed.set()
        self._sink_eof()

    # reading

    def sink(self, receiver: Callable[[bytes], None]) -> None:
        """Push instead of pull: from now on every byte that arrives goes to `receiver` as
        it arrives (counted as consumed at once), and b"" once the peer ended its side
        (`reset` says whether cleanly). For a channel read for the tunnel's whole life: an
        awaited `read` parks a coroutine chain and a future until the next bytes, made anew
        for each, and those outlive the young garbage collections (see ControlStream)."""
        self._sink = receiver
        if self._inbox:
            data = bytes(self._inbox)
            self._inbox.clear()
            self._consumed(len(data))
            receiver(data)
        if self._eof:
            self._sink_eof()

    def _sink_eof(self) -> None:
        if self._sink is not None and self._eof and not self._sink_ended:
            self._sink_ended = True
            self._sink(b"")

    @property
    def reset(self) -> bool:
        """The peer (or our abort) ended the channel with an error."""
        return self._error

    @property
    def has_data(self) -> bool:
        return bool(self._inbox)

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._inbox

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to `max_bytes`; b"" once the peer has ended its side. With `explicit_consume`
        the caller owes a `consumed` for what it got."""
        while not self._inbox:
            if self._eof:
                if self._error:
                    raise ChannelReset(f"channel {self.number} reset")
                return b""
            self._readable.clear()
            await self._readable.wait()
        take = min(max_bytes, len(self._inbox))
        if take == len(self._inbox):  # the common case: one copy, nothing to shift
            data = bytes(self._inbox)
            self._inbox.clear()
        else:
            data = bytes(self._inbox[:take])
            del self._inbox[:take]
        if self.session.explicit_consume:
            self._held += take
        else:
            self._consumed(take)
        return data

    def consumed(self, n: int) -> None:
        """`n` of the bytes `read` returned are used up: the peer may send that much more.
        Only meaningful with `explicit_consume` (otherwise `read` did it already)."""
        n = min(n, self._held)
        if n > 0:
            self._held -= n
            self._consumed(n)

    def _consumed(self, n: int) -> None:
        self._unreported += n
        # Report once a quarter of the window came free. The peer can only be blocked when
        # the whole window is outstanding; once we have read it all, that quarter is reached,
        # so waiting never stalls it. Reporting every time the inbox ran dry instead cost a
        # STATUS frame (and a syscall) per small proxied response.
        if self._unreported >= self.session.window // 4:
            self.session.consumed(self.number, self._unreported)
            self._unreported = 0

    # writing

    async def sendable(self) -> int:
        """Wait until the peer's window and the carrier have room; returns how many bytes
        may be sent now. A caller that reads its source only that far (and writes at once)
        holds nothing back in memory: back-pressure reaches the source."""
        while True:
            await self.opened.wait()
            await self.session.writable()
            if self._ended or self.session.is_closed:
                raise TunnelClosed(f"channel {self.number} is closed")
            if self._error:
                # The peer reset the channel: nobody will read what we write.
                raise ChannelReset(f"channel {self.number} reset")
            if self._half_closed:
                raise TunnelClosed(f"channel {self.number}: already ended")
            self._writable.clear()
            room = self.session.allowance(self.number)
            if room > 0:
                return room
            await self._writable.wait()

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            await self.sendable()
            view = view[self.session.send(self.number, view) :]

    async def end(self) -> None:
        """Half-close our direction (like a TCP FIN); reading goes on."""
        self._half_closed = True
        self.session.end(self.number)

    def abort(self) -> None:
        """Give up on the channel: reset our side and drop what we did not read.

        A clean, fully read exchange ends with END; anything else with ERROR_END, so the
        Hub stops producing instead of streaming into a channel nobody reads."""
        self._discard = True
        dropped = len(self._inbox) + self._unreported + self._held
        self._inbox.clear()
        self._unreported = self._held = 0
        if dropped:
            self.session.consumed(self.number, dropped)
        self._half_closed = True
        self.session.end(self.number, error=not self._eof)
        # Whoever still reads or writes here (another task of the same exchange) stops now
        # instead of waiting for the peer to answer the reset.
        self._eof = self._error = True
        self._readable.set()
        self._writable.set()
