"""Receiving: the rules of spec §3.4/§3.7/§3.8/§3.12, every fatal reason, the lenient cases
and the carrier ending."""

from __future__ import annotations

import pytest

from manager.mux import (
    ChannelClosed,
    ChannelEnded,
    ChannelOpened,
    ConnectionFailed,
    DataReceived,
    HandshakeCompleted,
    Mux,
    UsageError,
)
from manager.mux.frames import (
    encode_data_header,
    encode_end,
    encode_error_end,
    encode_handshake,
    encode_keep_alive,
    encode_payload,
    encode_pre_handshake,
    encode_status,
)
from tests.mux.helpers import drain, h


def established_peer_channel(chan: int = 5, *, window: int = 16384) -> Mux:
    """A mux on which the peer has opened ``chan``; queues already drained."""
    mux = Mux(window=window)
    mux.receive_data(encode_handshake(chan, 16384))
    drain(mux)
    return mux


def data(chan: int, seq: int, payload: bytes) -> bytes:
    return encode_data_header(chan, seq) + encode_payload(payload)


def assert_failed(mux: Mux, reason: str) -> None:
    events = mux.events_received()
    assert ConnectionFailed(reason) in events
    assert mux.failed == reason


# ---------------------------------------------------------------- framing


def test_any_split_byte_by_byte() -> None:
    stream = encode_handshake(0, 16384) + data(0, 5, b"hello") + encode_end(0)
    mux = Mux()
    for i in range(len(stream)):
        mux.receive_data(stream[i : i + 1])
    events = mux.events_received()
    assert b"".join(e.data for e in events if isinstance(e, DataReceived)) == b"hello"
    assert events[0] == ChannelOpened(0)
    assert events[-1] == ChannelEnded(0, False)
    assert mux.buffered(0) == 5


def test_payload_is_delivered_as_it_arrives() -> None:
    mux = established_peer_channel()
    frame = data(5, 1000, b"a" * 1000)
    mux.receive_data(frame[:600])
    assert mux.events_received() == [DataReceived(5, b"a" * (600 - 13 - 4))]
    mux.receive_data(frame[600:])
    assert mux.events_received() == [DataReceived(5, b"a" * (1000 - 583))]


def test_empty_header_frames_are_dropped() -> None:
    mux = established_peer_channel()
    mux.receive_data(h("00000000 00000000") + encode_status(5, 10, 0) + h("00000000"))
    assert drain(mux) == ([], [])
    assert mux.failed is None


def test_keep_alive_checked_before_anything_else() -> None:
    mux = Mux()
    mux.receive_data(encode_keep_alive() + h("00000003 07 ffff") + encode_keep_alive())
    assert drain(mux) == ([], [])
    assert mux.failed is None


# ---------------------------------------------------------------- opening


def test_peer_handshake_data_is_ignored_and_reply_is_empty() -> None:
    mux = Mux(window=1000)
    mux.receive_data(encode_handshake(9, 16384, b"some app data"))
    assert drain(mux) == ([encode_handshake(9, 1000)], [ChannelOpened(9)])
    assert mux.allowance(9) == 16384


def test_error_end_before_handshake() -> None:
    mux = Mux()
    mux.receive_data(encode_error_end(3))
    assert drain(mux) == ([], [])
    mux.receive_data(encode_handshake(3, 10))
    assert mux.events_received() == [ChannelOpened(3), ChannelEnded(3, True)]


def test_pre_handshake_opens_and_the_handshake_sets_the_window() -> None:
    mux = Mux()
    mux.receive_data(encode_pre_handshake(3, 50) + encode_pre_handshake(3, 70, 0))
    assert drain(mux) == ([], [])
    mux.receive_data(encode_handshake(3, 100))
    assert mux.events_received() == [ChannelOpened(3)]
    assert mux.allowance(3) == 100


def test_finished_status_before_our_channel_handshake_is_ignored() -> None:
    mux = Mux()
    chan = mux.open_channel()
    mux.receive_data(encode_status(chan, 1, 1, finished=True))
    mux.receive_data(encode_handshake(chan, 300))
    assert mux.events_received() == [HandshakeCompleted(chan)]
    assert mux.allowance(chan) == 300


def test_end_on_our_channel_before_its_handshake() -> None:
    mux = Mux()
    chan = mux.open_channel()
    mux.receive_data(encode_end(chan) + encode_handshake(chan, 300))
    assert mux.events_received() == [HandshakeCompleted(chan), ChannelEnded(chan, False)]


# ---------------------------------------------------------------- lenient cases


def test_finished_status_for_unknown_channel_is_ignored() -> None:
    mux = Mux()
    mux.receive_data(encode_status(77, 16384, 2, finished=True))
    assert drain(mux) == ([], [])
    assert mux.channels == frozenset()


def test_status_for_unknown_channel_is_ignored() -> None:
    mux = Mux()
    mux.receive_data(encode_status(77, 16384, 2))
    assert drain(mux) == ([], [])
    assert mux.failed is None


def test_data_for_unknown_channel_is_skipped_with_its_payload() -> None:
    # The payload looks like a HANDSHAKE for channel 8: parsing it as a header would open one.
    mux = Mux()
    mux.receive_data(data(77, 17, encode_handshake(8, 1)) + encode_handshake(9, 1))
    assert drain(mux) == ([encode_handshake(9, 256 * 1024)], [ChannelOpened(9)])


def test_data_after_peer_end_is_dropped() -> None:
    mux = established_peer_channel()
    mux.receive_data(encode_end(5) + data(5, 3, b"abc") + encode_end(5))
    assert mux.events_received() == [ChannelEnded(5, False)]
    assert mux.buffered(5) == 0


def test_error_end_on_established_channel() -> None:
    mux = established_peer_channel()
    mux.receive_data(encode_error_end(5))
    assert mux.events_received() == [ChannelEnded(5, True)]


def test_end_after_close_leaves_no_visible_channel() -> None:
    """A late END for a forgotten number is a (pending) new channel in Node's eyes: it
    must not surface until a HANDSHAKE makes it real."""
    mux = established_peer_channel()
    mux.end(5)
    mux.receive_data(encode_end(5))
    assert drain(mux) == ([encode_end(5)], [ChannelEnded(5, False), ChannelClosed(5)])
    mux.receive_data(encode_end(5))
    assert drain(mux) == ([], [])
    assert mux.channels == frozenset()


# ---------------------------------------------------------------- fatal: every reason


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (h("80000000"), "frame too large: 2147483648 bytes"),
        (h("00000001 09"), "unknown message type: 9"),
        (h("00000001 ff"), "unknown message type: 255"),
        (h("00000004 00 000000"), "short frame for type 0"),
        (h("00000008 01 00000000 000040"), "short frame for type 1"),
        (h("0000000c 02 00000005 00000000 000000"), "short frame for type 2"),
        (h("0000000c 03 00000005 00000000 000000"), "short frame for type 3"),
        (h("00000008 04 00000005 000000"), "short frame for type 4"),
        (h("00000008 05 00000005 000000"), "short frame for type 5"),
        (h("00000004 06 000000"), "short frame for type 6"),
        (encode_end(5) + encode_status(5, 1, 1), "expected handshake, got: 2"),
        (encode_end(5) + encode_data_header(5, 1), "expected handshake, got: 4"),
        (encode_handshake(5, 1) * 2, "repeated handshake on channel 5"),
        (encode_handshake(5, 1) + encode_data_header(5, 1) + h("00000000"), "empty payload frame"),
        (
            encode_handshake(5, 1) + data(5, 4, b"abc"),
            "bad data seq on channel 5: got 4, expected 3",
        ),
    ],
)
def test_fatal_reasons(stream: bytes, reason: str) -> None:
    mux = Mux(window=16384)
    mux.receive_data(stream)
    assert_failed(mux, reason)


def test_data_before_handshake_on_our_own_channel() -> None:
    mux = Mux()
    chan = mux.open_channel()
    mux.receive_data(encode_data_header(chan, 1))
    assert_failed(mux, "expected handshake, got: 4")


def test_data_beyond_window_fails_as_soon_as_the_length_is_known() -> None:
    mux = established_peer_channel(window=16384)
    mux.receive_data(data(5, 16000, b"x" * 16000))
    drain(mux)
    mux.receive_data(encode_data_header(5, 16385) + h("00000181"))  # 385 > 384 left
    assert_failed(mux, "data beyond window on channel 5")


def test_oversized_header_rejected_without_buffering() -> None:
    mux = Mux()
    mux.receive_data(h("7fffffff"))  # just the length of a 2 GiB frame
    assert mux.events_received() == [ConnectionFailed("frame too large: 2147483647 bytes")]
    assert mux.pending_input <= 4


def test_oversized_handshake_data() -> None:
    mux = Mux(max_handshake_data=4)
    mux.receive_data(encode_handshake(1, 1, b"1234"))
    assert mux.failed is None
    mux.receive_data(encode_handshake(2, 1, b"12345"))
    assert_failed(mux, "frame too large: 14 bytes")


def test_oversized_payload_of_skipped_data() -> None:
    mux = Mux(window=16384, max_handshake_data=100)
    mux.receive_data(encode_data_header(77, 1) + h("00004001"))
    assert_failed(mux, "frame too large: 16385 bytes")


def test_failure_closes_everything_and_ignores_later_input() -> None:
    mux = Mux()
    ours = mux.open_channel()
    mux.receive_data(encode_handshake(ours, 100) + encode_handshake(3, 100) + encode_end(3))
    drain(mux)
    mux.receive_data(h("00000001 09") + encode_handshake(4, 1))
    assert mux.events_received() == [
        ConnectionFailed("unknown message type: 9"),
        ChannelEnded(ours, True),
        ChannelClosed(ours),
        ChannelClosed(3),
    ]
    assert mux.channels == frozenset()
    mux.receive_data(encode_handshake(6, 1))
    mux.receive_eof()
    assert drain(mux) == ([], [])
    with pytest.raises(UsageError):
        mux.open_channel()
    with pytest.raises(UsageError):
        mux.send(ours, b"x")


def test_events_before_the_failure_are_kept() -> None:
    mux = Mux()
    mux.receive_data(encode_handshake(3, 10) + data(3, 2, b"ok") + h("00000001 08"))
    assert mux.events_received() == [
        ChannelOpened(3),
        DataReceived(3, b"ok"),
        ConnectionFailed("unknown message type: 8"),
        ChannelEnded(3, True),
        ChannelClosed(3),
    ]
    assert mux.data_to_send() == [encode_handshake(3, 256 * 1024)]


# ---------------------------------------------------------------- carrier end


def test_receive_eof_wakes_every_known_channel() -> None:
    mux = Mux()
    waiting = mux.open_channel()  # no handshake yet
    open_ = mux.open_channel()
    mux.receive_data(
        encode_handshake(open_, 10)
        + encode_handshake(3, 10)
        + encode_end(3)  # peer finished cleanly, we have not
        + encode_end(9)  # pending, never announced
    )
    drain(mux)
    mux.receive_data(h("0000"))  # half a length prefix: irrelevant once the carrier ends
    mux.receive_eof()
    assert mux.events_received() == [
        ChannelEnded(waiting, True),
        ChannelClosed(waiting),
        ChannelEnded(open_, True),
        ChannelClosed(open_),
        ChannelClosed(3),
    ]
    assert mux.failed is None
    assert mux.channels == frozenset()
    mux.receive_data(encode_handshake(4, 1))
    mux.receive_eof()
    assert drain(mux) == ([], [])
    mux.end(open_)  # cleanup calls after the end are harmless no-ops
    mux.consumed(open_, 0)
    assert mux.data_to_send() == []


def test_caller_buffers_are_not_held_after_receive_data() -> None:
    """A bytearray the carrier reuses must be resizable again once receive_data returns."""
    mux = Mux()
    buf = bytearray(encode_handshake(3, 1) + encode_data_header(3, 2)[:7])
    mux.receive_data(buf)
    buf.clear()  # BufferError if the mux still held a view on it
    buf += encode_data_header(3, 2)[7:] + encode_payload(b"ok") + h("00000001 09")
    mux.receive_data(buf)
    buf.clear()
    assert mux.events_received() == [
        ChannelOpened(3),
        DataReceived(3, b"ok"),
        ConnectionFailed("unknown message type: 9"),
        ChannelEnded(3, True),
        ChannelClosed(3),
    ]
