"""Per-channel bookkeeping: lifecycle flags, send allowance, receive window, seq arithmetic.

Owns the numbers of spec §3.6 for one channel: how much the peer lets us send (derived from its
last STATUS with the mod-2**32 correction), which seq our next DATA carries, how much received
data the application still holds, and which STATUS (if any) would tell the peer something new.
It must not queue frames or emit events; the connection decides what is said and when.
"""

from __future__ import annotations

from collections.abc import Container
from dataclasses import dataclass
from typing import Final

from manager.mux.errors import UsageError
from manager.mux.frames import SEQ_MASK, SEQ_MODULUS

__all__ = ["CHANNEL_SPACE", "ChannelNumbers", "ChannelState"]

CHANNEL_SPACE: Final = 1 << 31  # each end allocates from one half of the u32 number space


@dataclass(slots=True)
class ChannelState:
    """One channel as the mux sees it; created by ``open_channel`` or by the peer's first
    message, dropped once both ENDs have passed."""

    number: int
    ours: bool  # we sent the opening HANDSHAKE
    handshake_received: bool = False
    end_pending: bool = False  # END arrived before the peer's HANDSHAKE (spec §3.4)
    error_end_pending: bool = False
    peer_ended: bool = False
    we_ended: bool = False
    # sending
    send_seq: int = 0
    allowance: int = 0  # may go negative when the peer shrinks its window
    # receiving
    recv_seq: int = 0  # seq of the last DATA accepted, echoed in our STATUS
    data_seq: int = 0  # seq announced by the DATA header whose payload comes next
    got_data: bool = False
    receiving: bool = False  # a payload frame for this channel is only partly delivered
    buffered: int = 0
    last_status: tuple[int, int] | None = None
    status_owed: bool = False  # a STATUS was held back mid-payload; send it at the payload's end

    @property
    def announced(self) -> bool:
        """Whether the application knows this channel (a peer's must have handshaken)."""
        return self.ours or self.handshake_received

    @property
    def closed(self) -> bool:
        return self.we_ended and self.peer_ended

    def apply_window(self, free: int, seq: int) -> None:
        """Recompute the allowance from a STATUS: the peer has ``free`` bytes of room beyond
        ``seq``. ``seq`` is never ahead of ours unless our counter wrapped past 2**32, hence the
        correction (spec §3.6)."""
        allowance = seq + free - self.send_seq
        if self.send_seq < seq:
            allowance -= SEQ_MODULUS
        self.allowance = allowance

    def advance_send(self, size: int) -> int:
        """Account for ``size`` bytes about to be sent; returns the seq their DATA carries."""
        self.send_seq = (self.send_seq + size) & SEQ_MASK
        self.allowance -= size
        return self.send_seq

    def expected_seq(self, size: int) -> int:
        """The seq a correct peer puts on a DATA header whose payload is ``size`` bytes."""
        return (self.recv_seq + size) & SEQ_MASK

    def next_status(self, window: int) -> tuple[int, int] | None:
        """``(free, seq)`` for a STATUS worth sending now, remembered as sent; None if the
        peer would learn nothing new. Like Node, say nothing before the first DATA or while
        a payload is half delivered (its seq would already claim the missing bytes)."""
        if not self.got_data:
            return None
        if self.receiving:
            self.status_owed = True
            return None
        self.status_owed = False
        status = (window - self.buffered, self.recv_seq)
        if status == self.last_status:
            return None
        self.last_status = status
        return status


class ChannelNumbers:
    """Numbers for channels we open: counting up through our half of the space (the high half
    by default, away from the STH's 0, 1, 2... spec §3.3), skipping numbers in use and
    wrapping within the half, so a number is only reused after 2**31 others."""

    __slots__ = ("_base", "_next")

    def __init__(self, *, high: bool, start: int = 0) -> None:
        self._base = CHANNEL_SPACE if high else 0
        self._next = start % CHANNEL_SPACE

    def allocate(self, in_use: Container[int], in_use_count: int) -> int:
        # Among in_use_count + 1 consecutive candidates at least one is free.
        for _ in range(min(in_use_count + 1, CHANNEL_SPACE)):
            number = self._base + self._next
            self._next = (self._next + 1) % CHANNEL_SPACE
            if number not in in_use:
                return number
        raise UsageError("no free channel numbers")
