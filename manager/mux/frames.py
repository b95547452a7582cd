"""BPMux frames as bytes: message-type numbers, header layouts and pure encoders.

Owns the wire layout of spec §3.1-§3.2 (a 4-byte big-endian length, then the body; a DATA
header is followed by one payload frame) so that every byte the mux emits can be checked against
the spec's vectors one frame at a time. It must not keep state or know about channel lifecycles;
the encoders return complete frames, length prefix included, and trust their arguments to fit
in 32 bits (``struct`` refuses anything that does not).
"""

from __future__ import annotations

from struct import Struct
from typing import Final

from manager.mux.errors import UsageError

__all__ = [
    "DATA",
    "END",
    "ERROR_END",
    "FINISHED_STATUS",
    "HANDSHAKE",
    "KEEP_ALIVE",
    "MIN_BODY_LENGTH",
    "PRE_HANDSHAKE",
    "SEQ_MASK",
    "SEQ_MODULUS",
    "STATUS",
    "encode_data_header",
    "encode_end",
    "encode_error_end",
    "encode_handshake",
    "encode_keep_alive",
    "encode_payload",
    "encode_pre_handshake",
    "encode_status",
    "read_fields",
]

END: Final = 0
HANDSHAKE: Final = 1
STATUS: Final = 2
FINISHED_STATUS: Final = 3
DATA: Final = 4
PRE_HANDSHAKE: Final = 5
ERROR_END: Final = 6
KEEP_ALIVE: Final = 7

SEQ_MODULUS: Final = 1 << 32
SEQ_MASK: Final = SEQ_MODULUS - 1

# Shortest legal body per type (index = type), from the table in spec §3.2. PRE_HANDSHAKE may
# omit its seq, so 9 is its minimum.
MIN_BODY_LENGTH: Final[tuple[int, ...]] = (5, 9, 13, 13, 9, 9, 5, 1)

_LENGTH: Final = Struct(">I")
_CHAN_FRAME: Final = Struct(">IBI")  # END, ERROR_END
_TWO_WORD_FRAME: Final = Struct(">IBII")  # HANDSHAKE, DATA, PRE_HANDSHAKE without seq
_THREE_WORD_FRAME: Final = Struct(">IBIII")  # STATUS, FINISHED_STATUS, PRE_HANDSHAKE with seq
_KEEP_ALIVE_FRAME: Final = b"\x00\x00\x00\x01\x07"

# Readers for the u32 fields that follow the type byte (chan, then free/seq).
_ONE_FIELD: Final = Struct(">I")
_TWO_FIELDS: Final = Struct(">II")
_THREE_FIELDS: Final = Struct(">III")
_FIELD_READERS: Final = (_ONE_FIELD, _TWO_FIELDS, _THREE_FIELDS)


def read_fields(body: bytes, count: int) -> tuple[int, ...]:
    """The first ``count`` u32 fields after the type byte; the caller checked the length."""
    return _FIELD_READERS[count - 1].unpack_from(body, 1)


def encode_end(chan: int) -> bytes:
    return _CHAN_FRAME.pack(5, END, chan)


def encode_error_end(chan: int) -> bytes:
    return _CHAN_FRAME.pack(5, ERROR_END, chan)


def encode_handshake(chan: int, free: int, data: bytes = b"") -> bytes:
    return _TWO_WORD_FRAME.pack(9 + len(data), HANDSHAKE, chan, free) + data


def encode_pre_handshake(chan: int, free: int, seq: int | None = None) -> bytes:
    """The optional ``seq`` mirrors Node, which sends the 13-byte form once data has flowed."""
    if seq is None:
        return _TWO_WORD_FRAME.pack(9, PRE_HANDSHAKE, chan, free)
    return _THREE_WORD_FRAME.pack(13, PRE_HANDSHAKE, chan, free, seq)


def encode_status(chan: int, free: int, seq: int, finished: bool = False) -> bytes:
    kind = FINISHED_STATUS if finished else STATUS
    return _THREE_WORD_FRAME.pack(13, kind, chan, free, seq)


def encode_data_header(chan: int, seq: int) -> bytes:
    """``seq`` counts every byte sent on the channel including the payload that follows."""
    return _TWO_WORD_FRAME.pack(9, DATA, chan, seq)


def encode_payload(data: bytes | bytearray | memoryview) -> bytes:
    """The payload frame after a DATA header; refuses empty data, which would desync Node."""
    size = memoryview(data).nbytes
    if size == 0:
        raise UsageError("empty payload frame")
    return _LENGTH.pack(size) + data


def encode_keep_alive() -> bytes:
    return _KEEP_ALIVE_FRAME
