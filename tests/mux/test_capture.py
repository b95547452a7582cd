"""The recorded STH 1.0.1 session (tests/captures) through our Mux, from both ends.

The replay test re-enacts each side: for every frame that side wrote, it issues the Mux command
that should produce it, feeding the other side's frames only as far as causality requires. Our
Mux must then have written exactly the recorded bytes.
"""

from __future__ import annotations

from collections.abc import Callable

from manager.mux import (
    ChannelClosed,
    ChannelEnded,
    ChannelOpened,
    ConnectionFailed,
    DataReceived,
    Event,
    HandshakeCompleted,
    Mux,
)
from manager.mux.frames import (
    DATA,
    END,
    FINISHED_STATUS,
    HANDSHAKE,
    KEEP_ALIVE,
    SEQ_MASK,
    STATUS,
)
from tests.mux.helpers import WireFrame, load_capture, received_by_channel, split_wire

CONTROL = 0x80000000
REQUESTS = range(0x80000001, 0x80000006)


class Replay:
    """Drives ``mux`` as the author of ``own`` while feeding ``peer`` frames lazily."""

    def __init__(self, mux: Mux, peer: list[WireFrame]) -> None:
        self.mux = mux
        self.peer = iter(peer)
        self.events: list[Event] = []
        self.seq: dict[int, int] = {}  # bytes received per channel, mod 2**32
        self.written: list[bytes] = []

    def feed_one(self) -> bool:
        frame = next(self.peer, None)
        if frame is None:
            return False
        self.mux.receive_data(frame.raw)
        for event in self.mux.events_received():
            self.events.append(event)
            if isinstance(event, DataReceived):
                total = self.seq.get(event.channel, 0) + len(event.data)
                self.seq[event.channel] = total & SEQ_MASK
        return True

    def feed_until(self, ready: Callable[[], bool]) -> None:
        while not ready():
            assert self.feed_one(), "peer stream ran out before the condition held"

    def act(self, frame: WireFrame, we_open: bool) -> None:
        mux, chan = self.mux, frame.chan
        if frame.kind == HANDSHAKE and we_open:
            assert mux.open_channel() == chan
        elif frame.kind == HANDSHAKE:  # our reply is automatic once the peer's arrives
            self.feed_until(lambda: chan in mux.channels)
        elif frame.kind == DATA:
            self.feed_until(lambda: mux.allowance(chan) >= len(frame.payload))
            assert mux.send(chan, frame.payload) == len(frame.payload)
        elif frame.kind in (STATUS, FINISHED_STATUS):
            self.feed_until(lambda: self.seq.get(chan) == frame.words[1])
            mux.consumed(chan, mux.buffered(chan))
        elif frame.kind == END:
            mux.end(chan)
        else:
            assert frame.kind == KEEP_ALIVE
            mux.keep_alive()
        self.written.extend(mux.data_to_send())

    def run(self, own: list[WireFrame], we_open: Callable[[int], bool]) -> bytes:
        for frame in own:
            self.act(frame, we_open(frame.chan))
        while self.feed_one():
            pass
        self.written.extend(self.mux.data_to_send())
        return b"".join(self.written)


def test_capture_parses_completely() -> None:
    hub, manager = load_capture()
    assert b"".join(f.raw for f in split_wire(hub)) == hub
    assert b"".join(f.raw for f in split_wire(manager)) == manager


def test_manager_side_replay_is_byte_exact() -> None:
    hub, manager = load_capture()
    replay = Replay(Mux(), split_wire(hub))  # default window 256 KiB, high channels
    written = replay.run(split_wire(manager), we_open=lambda chan: chan >= 0x80000000)
    assert written == manager
    mux = replay.mux
    assert mux.failed is None
    assert mux.channels == frozenset({CONTROL})  # the manager never ended the control channel

    events = replay.events
    assert [e for e in events if isinstance(e, HandshakeCompleted)] == [
        HandshakeCompleted(c) for c in [CONTROL, *REQUESTS]
    ]
    assert not [e for e in events if isinstance(e, ChannelOpened | ConnectionFailed)]
    closed = [e.channel for e in events if isinstance(e, ChannelClosed)]
    assert sorted(closed) == list(REQUESTS)

    data = received_by_channel(events)
    control = data[CONTROL]
    assert control.startswith(b"HTTP/1.1 200 OK\r\n")
    for code in (b"[7001,", b"[7002,", b"[7004,", b"[7003,", b"[7006,", b"[7005,"):
        assert code in control
    assert b'"version":"1.0.1"' in data[0x80000001]
    assert data[0x80000001].endswith(b"0\r\n\r\n")
    assert data[0x80000005].startswith(b"HTTP/1.1 202 Accepted\r\n")
    assert b'"tick 3\\n"' in data[0x80000004]

    mux.receive_eof()
    assert mux.events_received() == [ChannelEnded(CONTROL, True), ChannelClosed(CONTROL)]


def test_hub_side_replay_is_byte_exact() -> None:
    hub, manager = load_capture()
    replay = Replay(Mux(window=16384, high_channels=False), split_wire(manager))
    written = replay.run(split_wire(hub), we_open=lambda chan: chan < 0x80000000)
    assert written == hub
    assert replay.mux.failed is None
    assert replay.mux.channels == frozenset({CONTROL})
    data = received_by_channel(replay.events)
    assert data[CONTROL].startswith(b"POST /api/v1/platform HTTP/1.1\r\n")
    assert b'[7000, {"id": "captured-hub"}]' in data[CONTROL]
    assert data[CONTROL].endswith(b"b\r\n[9001, {}]\n\r\n")


def test_hub_stream_fed_whole_to_a_manager() -> None:
    """Without re-enacting the manager: only the control channel is opened by us, so the
    request channels look peer-opened. The point is that nothing in the stream is fatal."""
    hub, _ = load_capture()
    mux = Mux()
    assert mux.open_channel() == CONTROL
    mux.receive_data(hub)
    events = mux.events_received()
    assert mux.failed is None
    assert events[0] == HandshakeCompleted(CONTROL)
    assert [e.channel for e in events if isinstance(e, ChannelOpened)] == list(REQUESTS)
    assert received_by_channel(events)[CONTROL].startswith(b"HTTP/1.1 200 OK")


def test_manager_stream_fed_whole_to_a_hub() -> None:
    _, manager = load_capture()
    mux = Mux(window=16384, high_channels=False)
    mux.receive_data(manager)
    events = mux.events_received()
    assert mux.failed is None
    assert [e.channel for e in events if isinstance(e, ChannelOpened)] == [CONTROL, *REQUESTS]
    ended = [e.channel for e in events if isinstance(e, ChannelEnded)]
    assert sorted(ended) == list(REQUESTS)
    data = received_by_channel(events)
    assert data[0x80000001] == (
        b"GET /api/v1/version HTTP/1.1\r\nHost: sth\r\nConnection: close\r\n\r\n"
    )
    assert data[0x80000002].startswith(b"POST /api/v1/sequence HTTP/1.1\r\n")
    assert b"/_kill HTTP/1.1\r\n" in data[0x80000005]
    # our replies: one HANDSHAKE per peer channel, nothing else (no data consumed yet)
    assert len(mux.data_to_send()) == 6
