"""Two Muxes wired back to back: a manager (high channels) and a hub-like peer (low channels)
each move 1 MiB to the other through 16 KiB windows, on a channel each of them opened."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

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

MIB = 1024 * 1024


@dataclass
class Endpoint:
    """A toy application on one Mux: writes ``outgoing[chan]`` when allowed, ends when done,
    reads everything but consumes lazily (half now, the rest on the next step)."""

    mux: Mux
    rng: random.Random
    outgoing: dict[int, memoryview] = field(default_factory=dict)
    received: dict[int, bytearray] = field(default_factory=dict)
    unconsumed: dict[int, int] = field(default_factory=dict)
    closed: list[int] = field(default_factory=list)
    ready: set[int] = field(default_factory=set)

    def handle(self, events: list[Event]) -> None:
        for event in events:
            assert not isinstance(event, ConnectionFailed), event
            if isinstance(event, HandshakeCompleted | ChannelOpened):
                self.ready.add(event.channel)
            elif isinstance(event, DataReceived):
                self.received.setdefault(event.channel, bytearray()).extend(event.data)
                self.unconsumed[event.channel] = self.unconsumed.get(event.channel, 0) + len(
                    event.data
                )
            elif isinstance(event, ChannelEnded):
                assert not event.error
            elif isinstance(event, ChannelClosed):
                self.closed.append(event.channel)
            else:
                assert isinstance(event, WindowUpdated)

    def idle(self) -> bool:
        return not (self.outgoing or any(self.unconsumed.values()))

    def step(self) -> None:
        self.handle(self.mux.events_received())
        for chan, n in list(self.unconsumed.items()):
            take = n if self.rng.random() < 0.5 else n // 2
            if chan in self.mux.channels:
                self.mux.consumed(chan, take)
            self.unconsumed[chan] = n - take
        for chan in self.ready & self.outgoing.keys():
            left = self.outgoing[chan]
            if left:
                sent = self.mux.send(chan, left[: self.rng.randint(1, 40_000)])
                self.outgoing[chan] = left[sent:]
            if not self.outgoing[chan]:
                self.mux.end(chan)
                del self.outgoing[chan]


def carry(source: Mux, target: Mux, rng: random.Random) -> bool:
    """Move ``source``'s frames to ``target`` re-cut at random boundaries, as TCP might."""
    wire = b"".join(source.data_to_send())
    pos = 0
    while pos < len(wire):
        size = rng.randint(1, 70_000)
        target.receive_data(wire[pos : pos + size])
        pos += size
    return bool(wire)


def test_one_mib_each_way_through_16k_windows() -> None:
    rng = random.Random(20261122)
    manager = Endpoint(Mux(window=16384), rng)
    hub = Endpoint(Mux(window=16384, high_channels=False), rng)
    payloads = {name: rng.randbytes(MIB) for name in ("m_on_m", "h_on_m", "m_on_h", "h_on_h")}

    ours = manager.mux.open_channel()  # manager's channel: 0x80000000
    theirs = hub.mux.open_channel()  # hub's channel: 0, no collision
    assert (ours, theirs) == (0x80000000, 0)
    manager.outgoing = {
        ours: memoryview(payloads["m_on_m"]),
        theirs: memoryview(payloads["m_on_h"]),
    }
    hub.outgoing = {ours: memoryview(payloads["h_on_m"]), theirs: memoryview(payloads["h_on_h"])}

    for _ in range(10_000):
        manager.step()
        hub.step()
        moved = carry(manager.mux, hub.mux, rng) | carry(hub.mux, manager.mux, rng)
        if not moved and manager.idle() and hub.idle():
            break
    else:
        raise AssertionError("transfer did not finish")

    assert hub.received[ours] == payloads["m_on_m"]
    assert manager.received[ours] == payloads["h_on_m"]
    assert hub.received[theirs] == payloads["m_on_h"]
    assert manager.received[theirs] == payloads["h_on_h"]
    assert sorted(manager.closed) == sorted(hub.closed) == [theirs, ours]
    assert manager.mux.channels == hub.mux.channels == frozenset()
    assert manager.mux.failed is None and hub.mux.failed is None
