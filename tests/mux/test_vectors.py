"""Spec §3.13 vectors V1-V5 and the §3.6 40 000-byte transfer, replayed byte-exact.

Each test drives one Mux as one of the two Node peers of the recording: the peer's lines are
fed in, and what our Mux queues must be exactly the other side's lines, write by write.
"""

from __future__ import annotations

from manager.mux import (
    ChannelClosed,
    ChannelEnded,
    ChannelOpened,
    DataReceived,
    HandshakeCompleted,
    Mux,
    WindowUpdated,
)
from tests.mux.helpers import drain, h


def node_peer(*, high_channels: bool = False) -> Mux:
    """A Mux that behaves like the Node side of the vectors (16 KiB window)."""
    return Mux(window=16384, high_channels=high_channels)


# ---------------------------------------------------------------- V1 / V2


def test_v1_manager_opens_writes_hello_and_ends() -> None:
    mux = node_peer()
    assert mux.open_channel() == 0
    assert drain(mux) == ([h("00000009 01 00000000 00004000")], [])

    mux.receive_data(h("00000009 01 00000000 00004000"))
    assert drain(mux) == ([], [HandshakeCompleted(0)])

    assert mux.send(0, b"hello") == 5
    mux.end(0)
    assert mux.data_to_send() == [
        h("00000009 04 00000000 00000005"),
        h("00000005 68656c6c6f"),
        h("00000005 00 00000000"),
    ]

    mux.receive_data(h("0000000d 02 00000000 00004000 00000005"))
    mux.receive_data(h("00000005 00 00000000"))
    assert drain(mux) == ([], [ChannelEnded(0, False), ChannelClosed(0)])
    assert mux.channels == frozenset()


def test_v1_as_responder_from_per_direction_stream() -> None:
    mux = node_peer()
    mux.receive_data(
        h(
            "00000009010000000000004000 00000009040000000000000005 "
            "0000000568656c6c6f 000000050000000000"
        )
    )
    assert mux.events_received() == [
        ChannelOpened(0),
        DataReceived(0, b"hello"),
        ChannelEnded(0, False),
    ]
    mux.consumed(0, 5)
    mux.end(0)
    assert b"".join(mux.data_to_send()) == h(
        "00000009010000000000004000 0000000d02000000000000400000000005 000000050000000000"
    )
    assert mux.events_received() == [ChannelClosed(0)]


def test_v2_high_channel() -> None:
    mux = Mux(window=16384)  # high_channels is the default
    chan = mux.open_channel()
    assert chan == 0x80000000
    mux.receive_data(h("00000009 01 80000000 00004000"))
    assert mux.send(chan, b"hello") == 5
    mux.end(chan)
    assert mux.data_to_send() == [
        h("00000009 01 80000000 00004000"),
        h("00000009 04 80000000 00000005"),
        h("00000005 68656c6c6f"),
        h("00000005 00 80000000"),
    ]
    mux.receive_data(h("0000000d 02 80000000 00004000 00000005"))
    mux.receive_data(h("00000005 00 80000000"))
    assert mux.events_received() == [
        HandshakeCompleted(chan),
        ChannelEnded(chan, False),
        ChannelClosed(chan),
    ]


# ---------------------------------------------------------------- V3


def test_v3_keep_alive_sent_and_ignored() -> None:
    mux = node_peer()
    mux.keep_alive()
    assert mux.data_to_send() == [h("00000001 07")]
    mux.receive_data(h("00000001 07") * 3)
    assert drain(mux) == ([], [])
    assert mux.failed is None


# ---------------------------------------------------------------- V4


def test_v4_end_before_handshake_as_responder() -> None:
    mux = node_peer()
    mux.receive_data(h("00000005 00 00000000"))
    assert drain(mux) == ([], [])  # pending: nothing to announce before the HANDSHAKE
    assert mux.channels == frozenset()

    mux.receive_data(h("0000000b 01 00000000 00004000 6869"))
    frames, events = drain(mux)
    assert frames == [h("00000009 01 00000000 00004000")]
    assert events == [ChannelOpened(0), ChannelEnded(0, False)]

    mux.end(0)
    assert drain(mux) == ([h("00000005 00 00000000")], [ChannelClosed(0)])


# ---------------------------------------------------------------- V5

V5_S_OPEN = [h("00000009 01 00000000 00004000"), h("00000009 01 00000001 00004000")]
V5_M_REPLY = [h("00000009 01 00000000 00004000"), h("00000009 01 00000001 00004000")]
V5_S_DATA_END = [
    h("00000009 04 00000000 00000003"),
    h("00000003 474554"),
    h("00000009 04 00000001 00000001"),
    h("00000001 58"),
    h("00000005 00 00000000"),
    h("00000005 00 00000001"),
]
V5_M_ANSWER = [
    h("0000000d 02 00000000 00004000 00000003"),
    h("0000000d 02 00000001 00004000 00000001"),
    h("00000009 04 00000000 00000002"),
    h("00000002 6f6b"),
    h("00000009 04 00000001 00000002"),
    h("00000002 6f6b"),
    h("00000005 00 00000000"),
    h("00000005 00 00000001"),
]
V5_S_LATE_STATUS = [
    h("0000000d 03 00000000 00004000 00000002"),
    h("0000000d 03 00000001 00004000 00000002"),
]


def test_v5_manager_answers_two_sth_channels() -> None:
    mux = node_peer(high_channels=True)
    for frame in V5_S_OPEN:
        mux.receive_data(frame)
    assert drain(mux) == (V5_M_REPLY, [ChannelOpened(0), ChannelOpened(1)])

    for frame in V5_S_DATA_END:
        mux.receive_data(frame)
    assert mux.events_received() == [
        DataReceived(0, b"GET"),
        DataReceived(1, b"X"),
        ChannelEnded(0, False),
        ChannelEnded(1, False),
    ]
    mux.consumed(0, 3)
    mux.consumed(1, 1)
    assert mux.send(0, b"ok") == 2
    assert mux.send(1, b"ok") == 2
    mux.end(0)
    mux.end(1)
    assert drain(mux) == (V5_M_ANSWER, [ChannelClosed(0), ChannelClosed(1)])

    for frame in V5_S_LATE_STATUS:  # FINISHED_STATUS for forgotten channels: ignored
        mux.receive_data(frame)
    assert drain(mux) == ([], [])
    assert mux.failed is None
    assert mux.channels == frozenset()


def test_v5_as_the_sth_side() -> None:
    mux = node_peer()
    assert (mux.open_channel(), mux.open_channel()) == (0, 1)
    assert mux.data_to_send() == V5_S_OPEN
    for frame in V5_M_REPLY:
        mux.receive_data(frame)
    assert mux.events_received() == [HandshakeCompleted(0), HandshakeCompleted(1)]
    assert mux.send(0, b"GET") == 3
    assert mux.send(1, b"X") == 1
    mux.end(0)
    mux.end(1)
    assert mux.data_to_send() == V5_S_DATA_END
    for frame in V5_M_ANSWER:
        mux.receive_data(frame)
    assert mux.events_received() == [
        DataReceived(0, b"ok"),
        DataReceived(1, b"ok"),
        ChannelEnded(0, False),
        ChannelClosed(0),
        ChannelEnded(1, False),
        ChannelClosed(1),
    ]
    # Node sends V5_S_LATE_STATUS here; we have forgotten both channels, so consumed() is
    # a no-op and nothing is sent (the peer no longer writes, it needs no window).
    mux.consumed(0, 2)
    assert mux.data_to_send() == []


# ---------------------------------------------------------------- §3.6 40 000 bytes

XFER_M_OPEN = h("00000009 01 00000000 00004000")
XFER_S_REPLY = h("00000009 01 00000000 00004000")
XFER_STATUS = [
    h("0000000d 02 00000000 00004000 00004000"),
    h("0000000d 02 00000000 00004000 00008000"),
    h("0000000d 02 00000000 00004000 00009c40"),
]
XFER_S_END = h("00000005 00 00000000")
XFER_M_END = h("00000005 00 00000000")


def xfer_data_frames() -> list[list[bytes]]:
    return [
        [h("00000009 04 00000000 00004000"), h("00004000") + b"x" * 16384],
        [h("00000009 04 00000000 00008000"), h("00004000") + b"x" * 16384],
        [h("00000009 04 00000000 00009c40"), h("00001c40") + b"x" * 7232],
    ]


def test_40000_byte_transfer_as_sender() -> None:
    mux = node_peer()
    body = memoryview(b"x" * 40000)
    assert mux.open_channel() == 0
    assert mux.data_to_send() == [XFER_M_OPEN]
    mux.receive_data(XFER_S_REPLY)
    assert mux.events_received() == [HandshakeCompleted(0)]

    data = xfer_data_frames()
    assert mux.send(0, body) == 16384
    assert mux.allowance(0) == 0
    assert mux.send(0, body[16384:]) == 0  # window exhausted: nothing queued
    assert mux.data_to_send() == data[0]

    mux.receive_data(XFER_STATUS[0])
    assert mux.events_received() == [WindowUpdated(0, 16384)]
    assert mux.send(0, body[16384:]) == 16384
    assert mux.data_to_send() == data[1]

    mux.receive_data(XFER_STATUS[1])
    assert mux.events_received() == [WindowUpdated(0, 16384)]
    assert mux.send(0, body[32768:]) == 7232
    mux.end(0)
    assert mux.data_to_send() == [*data[2], XFER_M_END]

    mux.receive_data(XFER_STATUS[2])  # after our END: no WindowUpdated, we cannot send
    mux.receive_data(XFER_S_END)
    assert mux.events_received() == [ChannelEnded(0, False), ChannelClosed(0)]


def test_40000_byte_transfer_as_receiver() -> None:
    mux = node_peer()
    mux.receive_data(XFER_M_OPEN)
    assert drain(mux) == ([XFER_S_REPLY], [ChannelOpened(0)])
    received = b""
    for (header, payload), status in zip(xfer_data_frames(), XFER_STATUS, strict=True):
        mux.receive_data(header + payload)
        (event,) = mux.events_received()
        assert isinstance(event, DataReceived)
        received += event.data
        mux.consumed(0, len(event.data))
        assert mux.data_to_send() == [status]
    assert received == b"x" * 40000
    mux.receive_data(XFER_M_END)
    assert mux.events_received() == [ChannelEnded(0, False)]
    mux.end(0)
    assert drain(mux) == ([XFER_S_END], [ChannelClosed(0)])
