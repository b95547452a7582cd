"""What the mux tells its owner after reading carrier bytes.

Owns the vocabulary of past-tense facts ``Mux.events_received()`` returns. Events are plain
frozen values so a test can compare them with ``==`` and a session can ``match`` on them. This
module must not hold behaviour: deciding *when* an event happens is the connection's job.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ChannelClosed",
    "ChannelEnded",
    "ChannelOpened",
    "ConnectionFailed",
    "DataReceived",
    "Event",
    "HandshakeCompleted",
    "WindowUpdated",
]


@dataclass(frozen=True, slots=True)
class ChannelOpened:
    """The peer opened ``channel``; our HANDSHAKE reply is already queued, so we may send."""

    channel: int


@dataclass(frozen=True, slots=True)
class HandshakeCompleted:
    """The peer answered a channel we opened; only from now on may we send on it."""

    channel: int


@dataclass(frozen=True, slots=True)
class DataReceived:
    """Payload bytes, possibly a fragment of one DATA frame: treat them as a byte stream.

    Fragments are delivered as they arrive so a large payload is never held twice in memory.
    Call ``Mux.consumed`` once the application has taken them, or the peer will stall.
    """

    channel: int
    data: bytes


@dataclass(frozen=True, slots=True)
class ChannelEnded:
    """The peer will write no more on ``channel`` (END, or ERROR_END when ``error``)."""

    channel: int
    error: bool


@dataclass(frozen=True, slots=True)
class WindowUpdated:
    """The peer freed room: ``allowance`` bytes may now be sent on ``channel``."""

    channel: int
    allowance: int


@dataclass(frozen=True, slots=True)
class ChannelClosed:
    """Both directions of ``channel`` are over and the mux has forgotten its number."""

    channel: int


@dataclass(frozen=True, slots=True)
class ConnectionFailed:
    """The peer broke the protocol; the mux reads nothing more and the carrier should close."""

    reason: str


Event = (
    ChannelOpened
    | HandshakeCompleted
    | DataReceived
    | ChannelEnded
    | WindowUpdated
    | ChannelClosed
    | ConnectionFailed
)
