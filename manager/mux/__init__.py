"""BPMux, the channel multiplexer a Scramjet Transform Hub speaks over its tunnel (spec §3).

Sans-I/O in the style of h11 and websockets: ``Mux`` turns carrier bytes into events and
commands into frames, and never touches a socket, a clock or an event loop. The tunnel layer
owns the I/O. Public names are re-exported here; the submodules stay importable for tests.
"""

from manager.mux.connection import DEFAULT_MAX_HANDSHAKE_DATA, DEFAULT_WINDOW, MAX_DATA_PIECE, Mux
from manager.mux.errors import MuxError, ProtocolError, UsageError
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

__all__ = [
    "DEFAULT_MAX_HANDSHAKE_DATA",
    "DEFAULT_WINDOW",
    "MAX_DATA_PIECE",
    "ChannelClosed",
    "ChannelEnded",
    "ChannelOpened",
    "ConnectionFailed",
    "DataReceived",
    "Event",
    "HandshakeCompleted",
    "Mux",
    "MuxError",
    "ProtocolError",
    "UsageError",
    "WindowUpdated",
]
