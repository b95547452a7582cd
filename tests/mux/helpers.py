"""Shared test tools for the mux: hex vectors, event normalisation, a wire-frame splitter that
is independent of ``manager.mux.reader``, the recorded STH capture and a two-mux pump."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from hypothesis import HealthCheck, settings

from manager.mux import DataReceived, Event, Mux
from manager.mux.frames import DATA, KEEP_ALIVE
from tests.capture import CAPTURE

# No example database: these tests must not write outside tests/mux, and the inputs they need
# are cheap to rediscover.
PROPERTY_SETTINGS = settings(
    database=None,
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def h(text: str) -> bytes:
    """Bytes from the spec's spaced hex notation."""
    return bytes.fromhex(text.replace(" ", ""))


def drain(mux: Mux) -> tuple[list[bytes], list[Event]]:
    return mux.data_to_send(), mux.events_received()


def normalise(events: Iterable[Event]) -> list[Event]:
    """Merge neighbouring DataReceived of one channel: consumers treat payload as a stream,
    so where a read happened to split a payload must not matter."""
    merged: list[Event] = []
    for event in events:
        last = merged[-1] if merged else None
        if (
            isinstance(event, DataReceived)
            and isinstance(last, DataReceived)
            and last.channel == event.channel
        ):
            merged[-1] = DataReceived(event.channel, last.data + event.data)
        else:
            merged.append(event)
    return merged


def received_by_channel(events: Iterable[Event]) -> dict[int, bytes]:
    chunks: dict[int, list[bytes]] = {}
    for event in events:
        if isinstance(event, DataReceived):
            chunks.setdefault(event.channel, []).append(event.data)
    return {channel: b"".join(parts) for channel, parts in chunks.items()}


@dataclass(frozen=True)
class WireFrame:
    """One message as seen on the wire; a DATA header carries its payload frame along."""

    raw: bytes
    kind: int
    chan: int
    words: tuple[int, ...]  # the u32 fields after chan (free, seq, ...)
    payload: bytes = b""


def split_wire(stream: bytes) -> list[WireFrame]:
    """A deliberately naive splitter (whole stream in memory) used as the test oracle."""
    frames: list[WireFrame] = []
    pos = 0
    while pos < len(stream):
        (size,) = struct.unpack_from(">I", stream, pos)
        body = stream[pos + 4 : pos + 4 + size]
        end = pos + 4 + size
        if body[0] == KEEP_ALIVE:
            frames.append(WireFrame(stream[pos:end], KEEP_ALIVE, -1, ()))
            pos = end
            continue
        chan = struct.unpack_from(">I", body, 1)[0]
        words = struct.unpack_from(">" + "I" * ((size - 5) // 4), body, 5)
        payload = b""
        if body[0] == DATA:
            (psize,) = struct.unpack_from(">I", stream, end)
            payload = stream[end + 4 : end + 4 + psize]
            end += 4 + psize
        frames.append(WireFrame(stream[pos:end], body[0], chan, words, payload))
        pos = end
    return frames


def load_capture() -> tuple[bytes, bytes]:
    """(hub->manager, manager->hub) BPMux streams of the recorded session, HTTP heads removed."""
    streams = {"hub->manager": bytearray(), "manager->hub": bytearray()}
    for line in CAPTURE.read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            streams[record["dir"]] += bytes.fromhex(record["hex"])
    hub, manager = bytes(streams["hub->manager"]), bytes(streams["manager->hub"])
    assert hub.startswith(b"CONNECT /api/v1/org-demo/org-demo-manager/ HTTP/1.1\r\n")
    assert manager.startswith(b"HTTP/1.1 200 OK\r\n\r\n")
    return hub[hub.index(b"\r\n\r\n") + 4 :], manager[len(b"HTTP/1.1 200 OK\r\n\r\n") :]


def pump(source: Mux, target: Mux) -> bool:
    """Move everything ``source`` wants to write into ``target``; True if anything moved."""
    frames = source.data_to_send()
    for frame in frames:
        target.receive_data(frame)
    return bool(frames)
