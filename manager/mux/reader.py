"""Cutting the carrier byte stream into BPMux frames (spec §3.1).

Owns reassembly across arbitrary TCP splits and the positional rule that the frame right after
a DATA header is a payload. Payloads are streamed out in pieces as they arrive instead of being
collected, so a transfer is never held twice in memory; only an unfinished length prefix or
header is kept, and a header longer than ``max_header`` is refused as soon as its length is
read, so a hostile peer cannot make us buffer more than that. Whether a payload is acceptable
(window, seq) is the connection's decision; this module must not know about channels.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from enum import Enum, auto
from struct import Struct
from typing import Final

from manager.mux.errors import ProtocolError
from manager.mux.frames import DATA

__all__ = ["FrameReader", "PayloadPiece", "PayloadStart", "ReaderItem"]

_LENGTH: Final = Struct(">I")
_PREFIX_SIZE: Final = 4


@dataclass(frozen=True, slots=True)
class PayloadStart:
    """A payload frame of ``length`` bytes begins; sent before any of its bytes so the
    connection can reject an oversized one without waiting for it."""

    length: int


@dataclass(frozen=True, slots=True)
class PayloadPiece:
    """Some bytes of the current payload frame; ``last`` closes it."""

    data: bytes
    last: bool


# A complete header frame body is yielded as plain ``bytes``.
ReaderItem = bytes | PayloadStart | PayloadPiece


class _Want(Enum):
    LENGTH = auto()
    HEADER = auto()
    PAYLOAD = auto()


class FrameReader:
    """Incremental frame splitter; ``feed`` yields what the new bytes completed."""

    __slots__ = ("_max_header", "_max_payload", "_need", "_partial", "_payload_next", "_want")

    def __init__(self, *, max_header: int, max_payload: int) -> None:
        self._max_header = max_header
        self._max_payload = max_payload
        self._want = _Want.LENGTH
        self._need = _PREFIX_SIZE  # bytes still missing from the current prefix/header/payload
        self._partial = bytearray()  # an unfinished prefix or header, never payload bytes
        self._payload_next = False

    @property
    def buffered(self) -> int:
        """Bytes held back because the prefix or header they belong to is incomplete."""
        return len(self._partial)

    def feed(self, data: bytes | bytearray | memoryview) -> Generator[ReaderItem, None, None]:
        """Raises ProtocolError (from inside the iteration) on an impossible frame length."""
        view = memoryview(data).cast("B")
        whole = data if type(data) is bytes else None
        pos, end = 0, len(view)
        while pos < end:
            if self._want is _Want.PAYLOAD:
                take = min(self._need, end - pos)
                if whole is not None and take == end:
                    piece = whole  # the read is exactly payload: hand it on without a copy
                else:
                    piece = view[pos : pos + take].tobytes()
                pos += take
                self._need -= take
                last = self._need == 0
                if last:
                    self._expect_length()
                yield PayloadPiece(piece, last)
                continue
            chunk, pos = self._collect(view, pos, end)
            if chunk is None:
                return
            if self._want is _Want.LENGTH:
                start = self._on_length(_LENGTH.unpack_from(chunk)[0])
                if start is not None:
                    yield start
            else:
                self._expect_length()
                self._payload_next = chunk[0] == DATA
                yield bytes(chunk)

    def _collect(self, view: memoryview, pos: int, end: int) -> tuple[memoryview | None, int]:
        """The complete prefix/header starting at ``pos`` (or None if it is still partial)."""
        if not self._partial and end - pos >= self._need:
            return view[pos : pos + self._need], pos + self._need
        take = min(self._need - len(self._partial), end - pos)
        self._partial += view[pos : pos + take]
        pos += take
        if len(self._partial) < self._need:
            return None, pos
        chunk = memoryview(bytes(self._partial))
        self._partial.clear()
        return chunk, pos

    def _on_length(self, length: int) -> PayloadStart | None:
        if self._payload_next:
            if length == 0:
                raise ProtocolError("empty payload frame")
            if length > self._max_payload:
                raise ProtocolError(f"frame too large: {length} bytes")
            self._payload_next = False
            self._want, self._need = _Want.PAYLOAD, length
            return PayloadStart(length)
        if length > self._max_header:
            raise ProtocolError(f"frame too large: {length} bytes")
        if length:  # an empty header frame is dropped, as Node's decoder does
            self._want, self._need = _Want.HEADER, length
        return None

    def _expect_length(self) -> None:
        self._want, self._need = _Want.LENGTH, _PREFIX_SIZE
