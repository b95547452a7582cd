"""One BPMux channel as an async byte stream with back-pressure both ways.

Reading gives window back to the peer (STATUS) only as the application consumes, so a
slow reader pauses the Hub instead of growing a buffer; writing waits for the peer's
window and for the carrier to drain. Owns no protocol logic: the Mux decides the frames.
"""

from __future__ import annotations

import asyncio
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
        self._eof = False
        self._error = False
        self._ended = False
        self._discard = False
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
        self._inbox += data
        self._readable.set()

    def on_end(self, error: bool) -> None:
        self._eof = True
        self._error = self._error or error
        self._readable.set()
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

    # reading

    @property
    def has_data(self) -> bool:
        return bool(self._inbox)

    @property
    def at_eof(self) -> bool:
        return self._eof and not self._inbox

    async def read(self, max_bytes: int = 65536) -> bytes:
        """Up to `max_bytes`; b"" once the peer has ended its side."""
        while not self._inbox:
            if self._eof:
                if self._error:
                    raise ChannelReset(f"channel {self.number} reset")
                return b""
            self._readable.clear()
            await self._readable.wait()
        take = min(max_bytes, len(self._inbox))
        data = bytes(self._inbox[:take])
        del self._inbox[:take]
        self._consumed(take)
        return data

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

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        while view:
            await self.opened.wait()
            if self._ended or self.session.is_closed:
                raise TunnelClosed(f"channel {self.number} is closed")
            if self._error:
                # The peer reset the channel: nobody will read what we write.
                raise ChannelReset(f"channel {self.number} reset")
            await self.session.writable()
            self._writable.clear()
            sent = self.session.send(self.number, view)
            if sent:
                view = view[sent:]
            else:
                await self._writable.wait()

    async def end(self) -> None:
        """Half-close our direction (like a TCP FIN); reading goes on."""
        self.session.end(self.number)

    def abort(self) -> None:
        """Give up on the channel: reset our side and drop what we did not read.

        A clean, fully read exchange ends with END; anything else with ERROR_END, so the
        Hub stops producing instead of streaming into a channel nobody reads."""
        self._discard = True
        dropped = len(self._inbox) + self._unreported
        self._inbox.clear()
        self._unreported = 0
        if dropped:
            self.session.consumed(self.number, dropped)
        self.session.end(self.number, error=not self._eof)
        # Whoever still reads or writes here (another task of the same exchange) stops now
        # instead of waiting for the peer to answer the reset.
        self._eof = self._error = True
        self._readable.set()
        self._writable.set()
