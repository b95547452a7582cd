"""Flow control (spec §3.5-§3.7): allowance and seq arithmetic on the sending side, STATUS
duty on the receiving side, the 2**32 wrap in both directions, and channel numbering."""

from __future__ import annotations

import struct

import pytest

from manager.mux import (
    MAX_DATA_PIECE,
    ChannelClosed,
    ChannelEnded,
    DataReceived,
    HandshakeCompleted,
    Mux,
    UsageError,
    WindowUpdated,
)
from manager.mux.channel import CHANNEL_SPACE, ChannelNumbers
from manager.mux.frames import (
    DATA,
    SEQ_MASK,
    encode_data_header,
    encode_end,
    encode_handshake,
    encode_payload,
    encode_status,
)
from tests.mux.helpers import drain, split_wire

WRAP = 1 << 32


def opened(free: int, *, window: int = 16384) -> tuple[Mux, int]:
    """A mux with one channel of ours whose peer advertised ``free``; queues drained."""
    mux = Mux(window=window)
    chan = mux.open_channel()
    mux.receive_data(encode_handshake(chan, free))
    drain(mux)
    return mux, chan


def data_seqs(frames: list[bytes]) -> list[tuple[int, int]]:
    """(seq, payload length) of every DATA in ``frames``."""
    return [(f.words[0], len(f.payload)) for f in split_wire(b"".join(frames)) if f.kind == DATA]


# ---------------------------------------------------------------- sending


def test_send_is_refused_before_handshake_after_end_and_on_unknown_channels() -> None:
    mux = Mux()
    chan = mux.open_channel()
    with pytest.raises(UsageError, match="handshake not completed"):
        mux.send(chan, b"x")
    with pytest.raises(UsageError, match="unknown channel"):
        mux.send(chan + 1, b"x")
    mux.receive_data(encode_handshake(chan, 10))
    mux.end(chan)
    with pytest.raises(UsageError, match="already ended"):
        mux.send(chan, b"x")
    assert mux.allowance(chan) == 0


def test_send_after_peer_end_is_half_close() -> None:
    mux, chan = opened(100)
    mux.receive_data(encode_end(chan))
    assert mux.events_received() == [ChannelEnded(chan, False)]
    assert mux.send(chan, b"still fine") == 10


def test_send_respects_allowance_and_resumes_after_status() -> None:
    mux, chan = opened(10)
    assert mux.send(chan, b"0123456789abcdef") == 10
    assert mux.allowance(chan) == 0
    assert mux.send(chan, b"abcdef") == 0
    assert data_seqs(mux.data_to_send()) == [(10, 10)]

    mux.receive_data(encode_status(chan, 4, 10))  # peer consumed, but only 4 bytes of room
    assert mux.events_received() == [WindowUpdated(chan, 4)]
    assert mux.send(chan, b"abcdef") == 4
    assert data_seqs(mux.data_to_send()) == [(14, 4)]

    mux.receive_data(encode_status(chan, 4, 10))  # stale duplicate: no increase, no event
    assert mux.events_received() == []
    mux.receive_data(encode_status(chan, 20, 14))
    assert mux.events_received() == [WindowUpdated(chan, 20)]


def test_in_flight_bytes_count_against_the_new_window() -> None:
    mux, chan = opened(100)
    assert mux.send(chan, b"x" * 100) == 100
    mux.receive_data(encode_status(chan, 100, 60))  # 40 bytes still in flight
    assert mux.events_received() == [WindowUpdated(chan, 60)]
    assert mux.allowance(chan) == 60


def test_shrinking_window_can_go_negative() -> None:
    mux, chan = opened(100)
    mux.send(chan, b"x" * 80)
    mux.receive_data(encode_status(chan, 10, 0))  # nothing acked, room only for 10
    assert mux.allowance(chan) == 0
    assert mux.send(chan, b"y") == 0
    mux.receive_data(encode_status(chan, 100, 80))
    assert mux.events_received() == [WindowUpdated(chan, 100)]


def test_empty_send_queues_nothing() -> None:
    mux, chan = opened(100)
    assert mux.send(chan, b"") == 0
    assert mux.send(chan, memoryview(b"abc")[3:]) == 0
    assert mux.data_to_send() == []


def test_large_send_is_split_into_64k_pieces_with_adjacent_headers() -> None:
    mux, chan = opened(300_000)
    body = bytes(range(256)) * 1000  # 256 000 bytes
    assert mux.send(chan, body) == len(body)
    frames = mux.data_to_send()
    assert len(frames) == 8
    assert data_seqs(frames) == [
        (MAX_DATA_PIECE, MAX_DATA_PIECE),
        (2 * MAX_DATA_PIECE, MAX_DATA_PIECE),
        (3 * MAX_DATA_PIECE, MAX_DATA_PIECE),
        (len(body), len(body) - 3 * MAX_DATA_PIECE),
    ]
    assert b"".join(f.payload for f in split_wire(b"".join(frames))) == body
    assert mux.allowance(chan) == 300_000 - len(body)


def test_send_accepts_bytearray_and_typed_memoryview() -> None:
    mux, chan = opened(100)
    assert mux.send(chan, bytearray(b"ab")) == 2
    assert mux.send(chan, memoryview(struct.pack(">2H", 1, 2)).cast("H")) == 4
    assert b"".join(f.payload for f in split_wire(b"".join(mux.data_to_send()))) == (
        b"ab\x00\x01\x00\x02"
    )


@pytest.mark.parametrize(
    ("my_seq", "status_seq", "free", "expected"),
    [
        (100, 100, 50, 50),
        (100, 60, 50, 10),  # 40 in flight
        (5, WRAP - 10, 100, 85),  # our counter wrapped past 2**32, their ack has not yet
        (WRAP - 1, WRAP - 1, 7, 7),
        (0, WRAP - 100, 100, 0),  # exactly 100 in flight across the wrap
    ],
)
def test_allowance_formula_across_the_wrap(
    my_seq: int, status_seq: int, free: int, expected: int
) -> None:
    from manager.mux.channel import ChannelState

    state = ChannelState(1, ours=True, send_seq=my_seq)
    state.apply_window(free, status_seq)
    assert state.allowance == expected


def test_peer_status_near_the_wrap_while_our_counter_is_small() -> None:
    # Fed through the Mux: our seq is 5 (wrapped), the peer acknowledges 2**32 - 10.
    mux, chan = opened(100)
    mux.send(chan, b"x" * 5)
    mux.receive_data(encode_status(chan, 100, WRAP - 10))
    assert mux.allowance(chan) == 85


def test_sending_across_the_seq_wrap() -> None:
    """Push 2**32 + 1 MB through one channel: every DATA seq must continue mod 2**32."""
    mux, chan = opened(SEQ_MASK)
    block = memoryview(bytes(16 * 1024 * 1024))
    sizes = [100_000] + [len(block)] * 256 + [900_000]
    seq = 0
    crossings = []
    for size in sizes:
        assert mux.send(chan, block[:size]) == size
        frames = mux.data_to_send()
        for header, payload in zip(frames[0::2], frames[1::2], strict=True):
            kind, _, got = struct.unpack(">xxxxBII", header)
            expected = (seq + len(payload) - 4) & SEQ_MASK
            assert (kind, got) == (DATA, expected)
            if expected < seq:
                crossings.append((seq, expected))
            seq = expected
        # ack everything: the allowance must come back to the full window, wrap or not
        mux.receive_data(encode_status(chan, SEQ_MASK, seq))
        assert mux.allowance(chan) == SEQ_MASK
    assert crossings == [
        (WRAP - MAX_DATA_PIECE + 100_000 % MAX_DATA_PIECE, 100_000 % MAX_DATA_PIECE)
    ]
    assert mux.failed is None


# ---------------------------------------------------------------- receiving


def test_status_after_consumption_and_dedup() -> None:
    mux = Mux(window=1000)
    mux.receive_data(encode_handshake(3, 10))
    drain(mux)
    mux.consumed(3, 0)  # nothing before the first DATA, as Node
    assert mux.data_to_send() == []

    mux.receive_data(encode_data_header(3, 300) + encode_payload(b"a" * 300))
    assert mux.buffered(3) == 300
    mux.consumed(3, 100)
    assert mux.data_to_send() == [encode_status(3, 800, 300)]
    mux.consumed(3, 0)  # identical status: skipped
    assert mux.data_to_send() == []
    mux.consumed(3, 200)
    assert mux.data_to_send() == [encode_status(3, 1000, 300)]
    assert mux.buffered(3) == 0
    with pytest.raises(UsageError):
        mux.consumed(3, 1)
    with pytest.raises(UsageError):
        mux.consumed(3, -1)


def test_finished_status_after_our_end() -> None:
    mux = Mux(window=1000)
    mux.receive_data(encode_handshake(3, 10) + encode_data_header(3, 5) + encode_payload(b"hello"))
    mux.end(3)
    drain(mux)
    mux.consumed(3, 5)
    assert mux.data_to_send() == [encode_status(3, 1000, 5, finished=True)]


def test_no_status_while_a_payload_is_half_delivered() -> None:
    mux = Mux(window=1000)
    mux.receive_data(encode_handshake(3, 10))
    drain(mux)
    frame = encode_data_header(3, 400) + encode_payload(b"z" * 400)
    mux.receive_data(frame[:100])
    (event,) = mux.events_received()
    assert isinstance(event, DataReceived)
    first = len(event.data)
    mux.consumed(3, first)  # header seq already says 400: would over-grant
    assert mux.data_to_send() == []
    mux.receive_data(frame[100:])
    # The room freed mid-payload is owed: told as soon as the payload is whole (the peer may
    # be waiting for it), then the rest once read.
    assert mux.data_to_send() == [encode_status(3, 1000 - (400 - first), 400)]
    (event,) = mux.events_received()
    assert isinstance(event, DataReceived)
    mux.consumed(3, len(event.data))
    assert mux.data_to_send() == [encode_status(3, 1000, 400)]


def test_consumed_is_a_no_op_for_unknown_and_forgotten_channels() -> None:
    mux = Mux()
    mux.consumed(42, 10)
    mux.receive_data(encode_handshake(3, 10) + encode_data_header(3, 2) + encode_payload(b"ok"))
    mux.receive_data(encode_end(3))
    mux.end(3)
    drain(mux)
    assert mux.channels == frozenset()
    mux.consumed(3, 2)
    assert mux.data_to_send() == []


def test_receiving_across_the_seq_wrap() -> None:
    """A peer that has sent more than 2**32 bytes: its DATA seq wraps and must still check."""
    window = 1 << 26
    mux = Mux(window=window)
    mux.receive_data(encode_handshake(3, 10))
    drain(mux)
    payload = bytes(16 * 1024 * 1024)
    sizes = [12345] + [len(payload)] * 256 + [777]
    seq = 0
    total = 0
    for size in sizes:
        seq = (seq + size) & SEQ_MASK
        piece = payload[:size] if size != len(payload) else payload
        mux.receive_data(encode_data_header(3, seq) + struct.pack(">I", size))
        mux.receive_data(piece)
        (event,) = mux.events_received()
        assert isinstance(event, DataReceived)
        assert len(event.data) == size
        total += size
        mux.consumed(3, size)
        assert mux.data_to_send() == [encode_status(3, window, seq)]
    assert total > 1 << 32
    assert seq == (12345 + 777) & SEQ_MASK  # 256 * 16 MiB is exactly 2**32
    assert mux.failed is None


# ---------------------------------------------------------------- closing


def test_end_is_idempotent_and_close_needs_both_ends() -> None:
    mux, chan = opened(10)
    mux.end(chan)
    mux.end(chan)
    assert mux.data_to_send() == [encode_end(chan)]
    assert chan in mux.channels
    mux.receive_data(encode_end(chan))
    assert mux.events_received() == [ChannelEnded(chan, False), ChannelClosed(chan)]
    assert mux.channels == frozenset()
    mux.end(chan)
    assert mux.data_to_send() == []


def test_end_before_the_peer_handshake() -> None:
    mux = Mux()
    chan = mux.open_channel()
    mux.end(chan)
    assert len(mux.data_to_send()) == 2  # HANDSHAKE then END, never the other way round
    mux.receive_data(encode_handshake(chan, 5) + encode_end(chan))
    assert mux.events_received() == [
        HandshakeCompleted(chan),
        ChannelEnded(chan, False),
        ChannelClosed(chan),
    ]


# ---------------------------------------------------------------- channel numbers


def test_high_channels_skip_numbers_in_use() -> None:
    mux = Mux()
    mux.receive_data(encode_handshake(0x80000001, 10))  # a peer squatting in our range
    assert [mux.open_channel() for _ in range(3)] == [0x80000000, 0x80000002, 0x80000003]
    assert Mux(high_channels=False).open_channel() == 0


def test_numbers_are_not_reused_before_the_counter_wraps() -> None:
    mux, chan = opened(10)
    mux.end(chan)
    mux.receive_data(encode_end(chan))
    assert mux.open_channel() == chan + 1


def test_allocator_wraps_within_its_half() -> None:
    numbers = ChannelNumbers(high=True, start=CHANNEL_SPACE - 2)
    in_use = {WRAP - 1, CHANNEL_SPACE}
    assert numbers.allocate(in_use, len(in_use)) == WRAP - 2
    assert numbers.allocate(in_use, len(in_use)) == CHANNEL_SPACE + 1  # wrapped, skipped
    low = ChannelNumbers(high=False, start=CHANNEL_SPACE - 1)
    assert [low.allocate(set(), 0), low.allocate(set(), 0)] == [CHANNEL_SPACE - 1, 0]


def test_allocator_reports_exhaustion() -> None:
    class Everything:
        def __contains__(self, item: object) -> bool:
            return True

    with pytest.raises(UsageError):
        ChannelNumbers(high=True).allocate(Everything(), 5)


def test_bad_constructor_arguments() -> None:
    with pytest.raises(UsageError):
        Mux(window=0)
    with pytest.raises(UsageError):
        Mux(window=WRAP)
    with pytest.raises(UsageError):
        Mux(max_handshake_data=-1)


def test_end_with_error_sends_error_end_once() -> None:
    mux, chan = opened(16384)
    mux.end(chan, error=True)
    assert mux.data_to_send() == [struct.pack(">IBI", 5, 6, chan)]
    mux.end(chan)
    mux.end(chan, error=True)
    assert mux.data_to_send() == []
    mux.receive_data(encode_end(chan))
    assert any(isinstance(e, ChannelClosed) for e in mux.events_received())
