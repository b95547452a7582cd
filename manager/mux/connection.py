"""The BPMux connection state machine (spec §3), sans-I/O.

Owns everything one end of a BPMux carrier must decide: which channels exist and who opened
them, the handshake rules, END/close bookkeeping, flow control in both directions, and turning
a peer's protocol violation into one ``ConnectionFailed`` event. Bytes come in through
``receive_data``/``receive_eof``, facts come out of ``events_received``, frames to write come
out of ``data_to_send``. It must not do I/O, import asyncio or sockets, keep timers (the owner
calls ``keep_alive`` when it wants) or know what the channels carry.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from manager.mux.channel import ChannelNumbers, ChannelState
from manager.mux.errors import ProtocolError, UsageError
from manager.mux.events import (
    ChannelClosed,
    ChannelEnded,
    ChannelOpened,
    ConnectionFailed,
    DataReceived,
    Event,
    HandshakeCompleted,
    WindowUpdated,
)
from manager.mux.frames import (
    DATA,
    END,
    ERROR_END,
    FINISHED_STATUS,
    HANDSHAKE,
    KEEP_ALIVE,
    MIN_BODY_LENGTH,
    PRE_HANDSHAKE,
    SEQ_MASK,
    STATUS,
    encode_data_header,
    encode_end,
    encode_error_end,
    encode_handshake,
    encode_keep_alive,
    encode_payload,
    encode_status,
    read_fields,
)
from manager.mux.reader import FrameReader, PayloadPiece, PayloadStart

__all__ = ["DEFAULT_MAX_HANDSHAKE_DATA", "DEFAULT_WINDOW", "MAX_DATA_PIECE", "Mux"]

DEFAULT_WINDOW: Final = 256 * 1024
DEFAULT_MAX_HANDSHAKE_DATA: Final = 64 * 1024
MAX_DATA_PIECE: Final = 64 * 1024  # largest payload we put behind one DATA header

_Handler = Callable[["Mux", ChannelState, bytes], None]


class Mux:
    """One end of a BPMux carrier. Not thread-safe; drive it from one task."""

    def __init__(
        self,
        *,
        window: int = DEFAULT_WINDOW,
        high_channels: bool = True,
        max_handshake_data: int = DEFAULT_MAX_HANDSHAKE_DATA,
    ) -> None:
        if not 0 < window <= SEQ_MASK:
            raise UsageError(f"window must be in [1, 2**32): {window}")
        if max_handshake_data < 0:
            raise UsageError(f"max_handshake_data must not be negative: {max_handshake_data}")
        self._window = window
        self._numbers = ChannelNumbers(high=high_channels)
        header_limit = max(max_handshake_data + MIN_BODY_LENGTH[HANDSHAKE], max(MIN_BODY_LENGTH))
        self._reader = FrameReader(max_header=header_limit, max_payload=max(window, header_limit))
        self._channels: dict[int, ChannelState] = {}
        self._payload_channel: ChannelState | None = None  # owner of the payload being read
        self._events: list[Event] = []
        self._outgoing: list[bytes] = []
        self._closed = False
        self._failed: str | None = None

    # ------------------------------------------------------------------ inspection

    @property
    def channels(self) -> frozenset[int]:
        """Channels the application knows about (a peer's counts once it has handshaken)."""
        return frozenset(n for n, state in self._channels.items() if state.announced)

    @property
    def failed(self) -> str | None:
        return self._failed

    @property
    def pending_input(self) -> int:
        """Bytes of an unfinished frame prefix or header held back; payloads are never held."""
        return self._reader.buffered

    def allowance(self, channel: int) -> int:
        state = self._channels.get(channel)
        if state is None or not state.handshake_received or state.we_ended:
            return 0
        return max(state.allowance, 0)

    def buffered(self, channel: int) -> int:
        state = self._channels.get(channel)
        return 0 if state is None else state.buffered

    # ------------------------------------------------------------------ I/O boundary

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Feed carrier bytes, split anywhere. Never raises for bad peer bytes."""
        if self._closed:
            return
        items = self._reader.feed(data)
        try:
            for item in items:
                if isinstance(item, PayloadPiece):
                    self._on_payload_piece(item)
                elif isinstance(item, PayloadStart):
                    self._on_payload_start(item.length)
                else:
                    self._on_header(item)
        except ProtocolError as exc:
            self._fail(str(exc))
        finally:
            items.close()  # release the view on ``data`` now, not at garbage collection

    def receive_eof(self) -> None:
        """The carrier ended: no END can arrive any more, so every channel the peer had not
        ended ends in error and all are closed, which wakes up anyone waiting on them."""
        self._shut_down()

    def events_received(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def data_to_send(self) -> list[bytes]:
        """Frames to write, in order; keep them in order (a DATA header and its payload are
        neighbours and must stay adjacent on the carrier)."""
        frames, self._outgoing = self._outgoing, []
        return frames

    # ------------------------------------------------------------------ commands

    def open_channel(self) -> int:
        """Allocate a number and queue our HANDSHAKE; wait for HandshakeCompleted to send."""
        if self._closed:
            raise UsageError("connection is closed")
        number = self._numbers.allocate(self._channels, len(self._channels))
        self._channels[number] = ChannelState(number, ours=True)
        self._outgoing.append(encode_handshake(number, self._window))
        return number

    def send(self, channel: int, data: bytes | bytearray | memoryview) -> int:
        """Queue as much of ``data`` as the peer's window allows; returns the bytes taken."""
        state = self._sendable(channel)
        view = memoryview(data).cast("B")
        total = min(len(view), state.allowance)
        if total <= 0:
            return 0
        for start in range(0, total, MAX_DATA_PIECE):
            piece = view[start : min(start + MAX_DATA_PIECE, total)]
            seq = state.advance_send(len(piece))
            self._outgoing.append(encode_data_header(channel, seq))
            self._outgoing.append(encode_payload(piece))
        return total

    def end(self, channel: int, *, error: bool = False) -> None:
        """Half-close our direction. Idempotent, and a no-op for channels already gone.

        With ``error`` the peer gets ERROR_END: a Node peer then destroys its side, which is
        the only way to stop a response it would otherwise keep streaming into a half-open
        channel (the Hub's HTTP server allows half-open connections)."""
        state = self._channels.get(channel)
        if state is None or not state.announced or state.we_ended or self._closed:
            return
        state.we_ended = True
        self._outgoing.append(encode_error_end(channel) if error else encode_end(channel))
        if state.peer_ended:
            self._forget(state)

    def consumed(self, channel: int, n: int) -> None:
        """The application took ``n`` received bytes: give the peer that room back."""
        state = self._channels.get(channel)
        if state is None or not state.announced:
            return
        if not 0 <= n <= state.buffered:
            raise UsageError(f"channel {channel}: consumed {n} of {state.buffered} buffered")
        state.buffered -= n
        self._queue_status(state)

    def _queue_status(self, state: ChannelState) -> None:
        status = state.next_status(self._window)
        if status is not None:
            free, seq = status
            self._outgoing.append(encode_status(state.number, free, seq, finished=state.we_ended))

    def keep_alive(self) -> None:
        if not self._closed:
            self._outgoing.append(encode_keep_alive())

    # ------------------------------------------------------------------ receiving

    def _on_header(self, body: bytes) -> None:
        kind = body[0]
        if kind == KEEP_ALIVE:
            return
        if kind > KEEP_ALIVE:
            raise ProtocolError(f"unknown message type: {kind}")
        if len(body) < MIN_BODY_LENGTH[kind]:
            raise ProtocolError(f"short frame for type {kind}")
        if kind == DATA:
            self._payload_channel = None  # until the DATA is accepted, its payload is skipped
        (number,) = read_fields(body, 1)
        state = self._channels.get(number)
        if state is None:
            state = self._adopt(kind, number)
            if state is None:
                return
        table = _ESTABLISHED if state.handshake_received else _BEFORE_HANDSHAKE
        table[kind](self, state, body)

    def _adopt(self, kind: int, number: int) -> ChannelState | None:
        """A message for a channel we do not know: the peer may be opening one (§3.4)."""
        if kind in (HANDSHAKE, PRE_HANDSHAKE, END, ERROR_END):
            state = ChannelState(number, ours=False)
            self._channels[number] = state
            return state
        return None  # stale STATUS/FINISHED_STATUS/DATA of a forgotten channel: ignore

    def _on_handshake(self, state: ChannelState, body: bytes) -> None:
        _, free = read_fields(body, 2)
        state.handshake_received = True
        if state.send_seq == 0:
            state.allowance = free
        if state.ours:
            self._events.append(HandshakeCompleted(state.number))
        else:  # handshake data (body[9:]) is accepted and ignored, as the STH does
            self._outgoing.append(encode_handshake(state.number, self._window - state.buffered))
            self._events.append(ChannelOpened(state.number))
        if state.error_end_pending or state.end_pending:
            self._on_peer_end(state, state.error_end_pending)

    def _on_early_end(self, state: ChannelState, body: bytes) -> None:
        if body[0] == ERROR_END:
            state.error_end_pending = True
        else:
            state.end_pending = True

    def _on_end(self, state: ChannelState, body: bytes) -> None:
        if not state.peer_ended:
            self._on_peer_end(state, body[0] == ERROR_END)

    def _on_peer_end(self, state: ChannelState, error: bool) -> None:
        state.peer_ended = True
        self._events.append(ChannelEnded(state.number, error))
        if state.we_ended:
            self._forget(state)

    def _on_status(self, state: ChannelState, body: bytes) -> None:
        fields = read_fields(body, 3 if len(body) >= MIN_BODY_LENGTH[STATUS] else 2)
        seq = fields[2] if len(fields) == 3 else 0  # a 9-byte PRE_HANDSHAKE has no seq
        before = state.allowance
        state.apply_window(fields[1], seq)
        if state.handshake_received and not state.we_ended and state.allowance > max(before, 0):
            self._events.append(WindowUpdated(state.number, state.allowance))

    def _on_data(self, state: ChannelState, body: bytes) -> None:
        if state.peer_ended:
            return  # data after END: Node drops it, so do we (payload skipped)
        state.receiving = True
        _, state.data_seq = read_fields(body, 2)
        self._payload_channel = state

    def _on_payload_start(self, length: int) -> None:
        state = self._payload_channel
        if state is None:
            return
        if state.buffered + length > self._window:
            raise ProtocolError(f"data beyond window on channel {state.number}")
        expected = state.expected_seq(length)
        if state.data_seq != expected:
            raise ProtocolError(
                f"bad data seq on channel {state.number}: got {state.data_seq}, expected {expected}"
            )
        state.recv_seq = expected
        state.got_data = True

    def _on_payload_piece(self, piece: PayloadPiece) -> None:
        state = self._payload_channel
        if state is None:
            return
        state.buffered += len(piece.data)
        if piece.last:
            state.receiving = False
            self._payload_channel = None
            if state.status_owed:
                # The application freed room while this payload was arriving; the peer may
                # be waiting for exactly that room (it is told nothing else until more is read).
                self._queue_status(state)
        self._events.append(DataReceived(state.number, piece.data))

    def _reject_before_handshake(self, state: ChannelState, body: bytes) -> None:
        raise ProtocolError(f"expected handshake, got: {body[0]}")

    def _reject_handshake(self, state: ChannelState, body: bytes) -> None:
        raise ProtocolError(f"repeated handshake on channel {state.number}")

    def _ignore(self, state: ChannelState, body: bytes) -> None:
        return None

    # ------------------------------------------------------------------ bookkeeping

    def _sendable(self, channel: int) -> ChannelState:
        if self._closed:
            raise UsageError("connection is closed")
        state = self._channels.get(channel)
        if state is None or not state.announced:
            raise UsageError(f"unknown channel {channel}")
        if not state.handshake_received:
            raise UsageError(f"channel {channel}: handshake not completed")
        if state.we_ended:
            raise UsageError(f"channel {channel}: already ended")
        return state

    def _forget(self, state: ChannelState) -> None:
        del self._channels[state.number]
        self._events.append(ChannelClosed(state.number))

    def _fail(self, reason: str) -> None:
        self._failed = reason
        self._events.append(ConnectionFailed(reason))
        self._shut_down()

    def _shut_down(self) -> None:
        """Stop reading and close every channel the application knows, in error if the peer
        had not ended it, so nobody waits for bytes that will never come."""
        if self._closed:
            return
        self._closed = True
        self._payload_channel = None
        for state in self._channels.values():
            if not state.announced:
                continue
            if not state.peer_ended:
                self._events.append(ChannelEnded(state.number, True))
            self._events.append(ChannelClosed(state.number))
        self._channels.clear()


# What each message type means, before and after the channel's handshake (spec §3.4, §3.12).
_BEFORE_HANDSHAKE: Final[dict[int, _Handler]] = {
    END: Mux._on_early_end,
    HANDSHAKE: Mux._on_handshake,
    STATUS: Mux._reject_before_handshake,
    FINISHED_STATUS: Mux._ignore,
    DATA: Mux._reject_before_handshake,
    PRE_HANDSHAKE: Mux._on_status,
    ERROR_END: Mux._on_early_end,
}
_ESTABLISHED: Final[dict[int, _Handler]] = {
    END: Mux._on_end,
    HANDSHAKE: Mux._reject_handshake,
    STATUS: Mux._on_status,
    FINISHED_STATUS: Mux._on_status,
    DATA: Mux._on_data,
    PRE_HANDSHAKE: Mux._on_status,
    ERROR_END: Mux._on_end,
}
