"""Property tests: how carrier bytes are cut must never matter, and no input can make
``receive_data`` raise, hold more than one header's worth of bytes, or break event order."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from manager.mux import (
    ChannelClosed,
    ChannelEnded,
    ChannelOpened,
    ConnectionFailed,
    DataReceived,
    Event,
    HandshakeCompleted,
    Mux,
    WindowUpdated,
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
from tests.mux.helpers import PROPERTY_SETTINGS, load_capture, normalise, received_by_channel

WINDOW = 16384
OURS = 0x80000000
U32 = st.integers(0, 2**32 - 1)


def cut(stream: bytes, points: Sequence[int]) -> list[bytes]:
    bounds = sorted({p % (len(stream) + 1) for p in points} | {0, len(stream)})
    return [stream[a:b] for a, b in pairwise(bounds)]


def run(chunks: Sequence[bytes], *, ours: int = 0) -> tuple[list[Event], bytes]:
    mux = Mux(window=WINDOW)
    for _ in range(ours):
        mux.open_channel()
    for chunk in chunks:
        mux.receive_data(chunk)
    return mux.events_received(), b"".join(mux.data_to_send())


# ---------------------------------------------------------------- valid peer streams


@dataclass(frozen=True)
class Script:
    stream: bytes
    ours: int  # how many channels our Mux must open first (0x80000000, ...)
    sent: dict[int, bytes]  # what the peer wrote on each channel


@st.composite
def channel_frames(draw: st.DrawFn, chan: int, peer_opens: bool) -> tuple[list[bytes], bytes]:
    """One channel's frames in the order the peer writes them, and its payload bytes."""
    frames: list[bytes] = []
    early_end = peer_opens and draw(st.sampled_from([None, encode_end, encode_error_end]))
    if peer_opens and draw(st.booleans()):
        frames.append(encode_pre_handshake(chan, draw(U32)))
    if early_end:
        frames.append(early_end(chan))
    frames.append(encode_handshake(chan, draw(U32), draw(st.binary(max_size=20))))
    seq, sent = 0, bytearray()
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["data", "status", "finished", "keep_alive"]))
        if kind == "data" and not early_end and len(sent) < WINDOW:
            payload = draw(st.binary(min_size=1, max_size=min(2000, WINDOW - len(sent))))
            seq = (seq + len(payload)) % 2**32
            frames.append(encode_data_header(chan, seq) + encode_payload(payload))
            sent += payload
        elif kind in ("status", "finished"):
            frames.append(encode_status(chan, draw(U32), draw(U32), kind == "finished"))
        elif kind == "keep_alive":
            frames.append(encode_keep_alive())
    if not early_end and draw(st.booleans()):
        frames.append(draw(st.sampled_from([encode_end, encode_error_end]))(chan))
    return frames, bytes(sent)


@st.composite
def noise_frames(draw: st.DrawFn) -> list[bytes]:
    """Frames a lenient receiver must shrug off: stale traffic for forgotten channels."""
    return draw(
        st.lists(
            st.one_of(
                st.builds(encode_status, st.integers(5000, 5999), U32, U32, st.booleans()),
                st.builds(
                    lambda c, p: encode_data_header(c, len(p)) + encode_payload(p),
                    st.integers(5000, 5999),
                    st.binary(min_size=1, max_size=50),
                ),
                st.builds(encode_end, st.integers(7000, 7999)),  # opens a pending channel
                st.just(b"\x00\x00\x00\x00"),  # an empty frame
                st.just(encode_keep_alive()),
            ),
            max_size=4,
        )
    )


@st.composite
def scripts(draw: st.DrawFn) -> Script:
    ours = draw(st.integers(0, 2))
    peer = draw(st.integers(0, 3))
    lanes: list[list[bytes]] = []
    sent: dict[int, bytes] = {}
    for chan, peer_opens in [(OURS + i, False) for i in range(ours)] + [
        (i, True) for i in range(peer)
    ]:
        frames, sent[chan] = draw(channel_frames(chan, peer_opens))
        lanes.append(frames)
    lanes.append(draw(noise_frames()))
    stream = bytearray()
    while any(lanes):  # interleave the lanes, keeping each lane's order
        live = [lane for lane in lanes if lane]
        stream += draw(st.sampled_from(live)).pop(0)
    return Script(bytes(stream), ours, sent)


@PROPERTY_SETTINGS
@given(script=scripts(), points=st.lists(st.integers(0, 2**20), max_size=40))
def test_valid_streams_split_anywhere_give_the_same_events(
    script: Script, points: list[int]
) -> None:
    whole_events, whole_out = run([script.stream], ours=script.ours)
    assert not [e for e in whole_events if isinstance(e, ConnectionFailed)]
    received = received_by_channel(whole_events)
    assert {c: d for c, d in script.sent.items() if d} == received
    check_event_order(whole_events, ours={OURS + i for i in range(script.ours)})

    split_events, split_out = run(cut(script.stream, points), ours=script.ours)
    assert normalise(split_events) == normalise(whole_events)
    assert split_out == whole_out


# ---------------------------------------------------------------- the real capture


@PROPERTY_SETTINGS
@given(points=st.lists(st.integers(0, 2**20), max_size=60))
def test_capture_split_anywhere_gives_the_same_events(points: list[int]) -> None:
    hub, _ = load_capture()
    whole_events, whole_out = run([hub], ours=1)
    split_events, split_out = run(cut(hub, points), ours=1)
    assert normalise(split_events) == normalise(whole_events)
    assert split_out == whole_out
    assert not [e for e in split_events if isinstance(e, ConnectionFailed)]


@PROPERTY_SETTINGS
@given(points=st.lists(st.integers(0, 2**20), max_size=60))
def test_capture_with_extra_frames_merged_in_and_split(points: list[int]) -> None:
    """Keep-alives and empty frames glued onto the capture, then cut anywhere: no effect."""
    hub, _ = load_capture()
    stream = encode_keep_alive() + hub + b"\x00\x00\x00\x00" + encode_keep_alive()
    base_events, _ = run([hub], ours=1)
    events, _ = run(cut(stream, points), ours=1)
    assert normalise(events) == normalise(base_events)


# ---------------------------------------------------------------- hostile input

MAX_HANDSHAKE_DATA = 32
HEADER_BOUND = MAX_HANDSHAKE_DATA + 9  # the most a Mux may hold back: one header frame


def feed_checked(chunks: Sequence[bytes], *, ours: int = 0) -> list[Event]:
    mux = Mux(window=4096, max_handshake_data=MAX_HANDSHAKE_DATA)
    for _ in range(ours):
        mux.open_channel()
    for chunk in chunks:
        mux.receive_data(chunk)  # must never raise
        assert mux.pending_input <= HEADER_BOUND
    mux.receive_eof()
    events = mux.events_received()
    failures = [e for e in events if isinstance(e, ConnectionFailed)]
    assert len(failures) <= 1
    assert (mux.failed is None) == (not failures)
    check_event_order(events, ours={OURS + i for i in range(ours)})
    assert mux.channels == frozenset()
    return events


@PROPERTY_SETTINGS
@given(chunks=st.lists(st.binary(max_size=300), max_size=20))
def test_random_bytes_never_raise(chunks: list[bytes]) -> None:
    feed_checked(chunks, ours=1)


@PROPERTY_SETTINGS
@given(
    chunks=st.lists(
        st.one_of(
            st.binary(max_size=40),
            st.builds(
                lambda kind, rest: bytes([0, 0, 0, len(rest) + 1, kind]) + rest,
                st.integers(0, 9),
                st.binary(max_size=14),
            ),
        ),
        max_size=30,
    )
)
def test_frame_shaped_garbage_never_raises(chunks: list[bytes]) -> None:
    feed_checked(chunks, ours=1)


@PROPERTY_SETTINGS
@given(
    script=scripts(),
    edits=st.lists(st.tuples(st.integers(0, 2**20), st.integers(-1, 255)), min_size=1),
    points=st.lists(st.integers(0, 2**20), max_size=20),
)
def test_mutated_valid_streams_never_raise(
    script: Script, edits: list[tuple[int, int]], points: list[int]
) -> None:
    stream = bytearray(script.stream)
    for pos, value in edits:
        if not stream:
            break
        pos %= len(stream)
        if value < 0:
            del stream[pos]
        else:
            stream[pos] = value
    feed_checked(cut(bytes(stream), points), ours=script.ours)


# ---------------------------------------------------------------- event grammar


def check_event_order(events: Sequence[Event], *, ours: set[int]) -> None:
    """Per channel: opened (or ours) → data/window* → ended? → closed, never out of turn."""
    live = set(ours)
    ended: set[int] = set()
    failed = False
    for event in events:
        if isinstance(event, ConnectionFailed):
            assert not failed
            failed = True
            continue
        chan = event.channel
        if isinstance(event, ChannelOpened):
            assert chan not in live and not failed
            live.add(chan)
        elif isinstance(event, HandshakeCompleted):
            assert chan in ours and chan in live
        elif isinstance(event, DataReceived):
            assert chan in live and chan not in ended and event.data
        elif isinstance(event, WindowUpdated):
            assert chan in live and event.allowance > 0
        elif isinstance(event, ChannelEnded):
            assert chan in live and chan not in ended
            ended.add(chan)
        else:
            assert isinstance(event, ChannelClosed)
            assert chan in live
            live.discard(chan)
            ended.discard(chan)
